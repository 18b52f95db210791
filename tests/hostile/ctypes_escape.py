# Calls libc directly (kill, or anything else) through ctypes.
import ctypes

libc = ctypes.CDLL(None)
libc.kill(0, 9)
# ---- tests ----
