# Starts a subinterpreter, which has none of the main interpreter's audit hooks, and
# deletes a file outside from there.
try:
    import _interpreters as interpreters
    interp = interpreters.create()
    interpreters.exec(interp, "import os; os.remove('$canary')")
except ImportError:
    import _xxsubinterpreters as interpreters
    interp = interpreters.create()
    interpreters.run_string(interp, "import os; os.remove('$canary')")
# ---- tests ----
