# Closes every standard stream, with a wrong solution.
import os
import sys


def add(a, b):
    return a - b


sys.stdout.close()
os.close(0)
os.close(1)
os.close(2)
# ---- tests ----
assert add(2, 3) == 5
