# Opens a file outside for reading (allowed), then changes its mode and times through the
# file descriptor: the fd-based calls carry no path.
import os

fd = os.open("$canary", os.O_RDONLY)
os.utime(fd, (0, 0))
os.fchmod(fd, 0o777)
os.close(fd)
# ---- tests ----
