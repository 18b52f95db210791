# Runs code in a subinterpreter (no audit hooks there) through CPython's own test helper
# module, and deletes a file outside from there.
import _testcapi

_testcapi.run_in_subinterp("import os; os.remove('$canary')")
# ---- tests ----
