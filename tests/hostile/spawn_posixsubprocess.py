# Starts a process through the C helper behind subprocess, which raises no audit event,
# and has it delete a file outside.
import _posixsubprocess
import os

r, w = os.pipe()
pid = _posixsubprocess.fork_exec(
    [b"/bin/rm", b"-f", b"$canary"], [b"/bin/rm"], True, (w,), None, None,
    -1, -1, -1, -1, -1, -1, r, w, False, False, -1, None, None, -1, -1, None, False)
os.waitpid(pid, 0)
# ---- tests ----
