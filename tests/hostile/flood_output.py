# Floods stdout and stderr.
import sys

line = "x" * 65536
while True:
    sys.stdout.write(line)
    sys.stderr.write(line)
# ---- tests ----
