# Installs a fast timer whose handler would run at arbitrary points, harness included.
import signal


def peek(signum, frame):
    while frame is not None:
        frame = frame.f_back


signal.signal(signal.SIGALRM, peek)
signal.setitimer(signal.ITIMER_REAL, 1e-5, 1e-5)
# ---- tests ----
