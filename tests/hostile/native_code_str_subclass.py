# Copies a native module of the standard library into its own directory and loads the copy
# by hand, naming its path with a str subclass so that an exact-type check skips it.
import _imp
import _struct
import os


class Path(str):
    pass


class Spec:
    name = "_struct"
    origin = Path(os.path.abspath("copy.so"))


with open(_struct.__file__, "rb") as src, open("copy.so", "wb") as dst:
    dst.write(src.read())
module = _imp.create_dynamic(Spec())
print("loaded", module)
# ---- tests ----
