# Overwrites a file outside its directory.
with open("$canary", "w") as f:
    f.write("overwritten")
# ---- tests ----
