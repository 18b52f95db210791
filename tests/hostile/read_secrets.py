# Looks for credentials: environment, ~/.ssh, and the host's home by absolute path.
import os

print("ENV", dict(os.environ), flush=True)
for path in (os.path.expanduser("~/.ssh/id_rsa"), "$secret_path"):
    try:
        with open(path) as f:
            print("READ", path, f.read())
    except OSError as exc:
        print("NOPE", path, type(exc).__name__)
print("LIST", os.listdir("$secret_dir"))
# ---- tests ----
