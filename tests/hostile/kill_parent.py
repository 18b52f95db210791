# Kills the process that started it, then the host's process group.
import os

os.kill(os.getppid(), 9)
os.kill($host_pid, 9)
# ---- tests ----
