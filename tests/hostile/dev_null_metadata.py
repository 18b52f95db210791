# Changes the times of /dev/null, the one path outside that open() may write to: with the
# same rules, removing or chmod-ing it would break the host.
import os

os.utime("/dev/null", None)
# ---- tests ----
