# Raises the harness's own "pass" audit event from the program.
import sys

sys.audit("slm.sandbox.pass")
# ---- tests ----
assert False
