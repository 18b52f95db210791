# Ignores the catchable signals and spins: only SIGKILL of the process group ends it.
import signal
for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGXCPU):
    signal.signal(s, signal.SIG_IGN)
x = 0
while True:
    x += 1
# ---- tests ----
