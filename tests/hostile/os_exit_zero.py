# Wrong solution that hard-exits with status 0 before the tests run.
import os


def add(a, b):
    return a - b


os._exit(0)
# ---- tests ----
assert add(2, 3) == 5
