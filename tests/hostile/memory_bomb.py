# Allocates until something gives (calloc'd blocks: the address-space limit, not page
# faults, is what stops it).
hog = []
while True:
    hog.append(bytes(50_000_000))
# ---- tests ----
