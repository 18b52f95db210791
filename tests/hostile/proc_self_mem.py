# Reads its own memory through procfs.
with open("/proc/self/mem", "rb") as f:
    f.read(1)
# ---- tests ----
