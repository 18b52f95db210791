# Walks out of its directory with a relative path, then deletes.
import os

os.chdir("..")
os.remove(os.path.relpath("$canary"))
# ---- tests ----
