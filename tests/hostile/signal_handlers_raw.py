# Installs a signal handler through the C module directly.
import _signal

_signal.signal(_signal.SIGALRM, lambda *a: None)
# ---- tests ----
