# Re-imports a fresh copy of the C signal module to get its handler installer back.
import sys

del sys.modules["_signal"]
import _signal  # noqa: E402

_signal.signal(_signal.SIGALRM, lambda *a: None)
# ---- tests ----
