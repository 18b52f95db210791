# Deletes a file and a directory outside its directory.
import os
import shutil

try:
    os.remove("$canary")
finally:
    shutil.rmtree("$outside_dir")
# ---- tests ----
