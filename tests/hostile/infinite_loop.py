# Never returns: the wall-clock timeout must kill it.
def add(a, b):
    while True:
        pass
# ---- tests ----
assert add(2, 3) == 5
