# Empties the harness module's own tables (file-changing events, blocked prefixes), then
# deletes a file outside its directory.
import os
import sys

harness = sys.modules["__main__"]
harness._WRITE_EVENTS.clear()
harness._BLOCKED_PREFIXES = ()
harness._READ_EVENTS = frozenset()
os.remove("$canary")
# ---- tests ----
