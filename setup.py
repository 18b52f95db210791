"""Adds slm_suite.pth to the wheel (and to editable installs): lm-eval 0.4.13 reads no plugin
entry points, so a tiny import hook (slm_tasks/activation.py) is how `lm_eval --tasks
slm_suite` and `--model slm-llamacpp` find us. The .pth only appends a meta-path finder; see
activation.py."""

import os

from setuptools import setup
from setuptools.command.build_py import build_py

PTH = "slm_suite.pth"
PTH_SRC = os.path.join(os.path.dirname(os.path.abspath(__file__)), "slm_tasks", PTH)


class build_py_with_pth(build_py):
    def run(self):
        super().run()
        if not getattr(self, "editable_mode", False):
            self.copy_file(PTH_SRC, os.path.join(self.build_lib, PTH), preserve_mode=0)

    def get_outputs(self, include_bytecode=1):
        outs = super().get_outputs(include_bytecode)
        if getattr(self, "editable_mode", False):
            return outs
        return outs + [os.path.join(self.build_lib, PTH)]


cmdclass = {"build_py": build_py_with_pth}

try:  # editable installs: put the same .pth at the top of the editable wheel
    from setuptools.command.editable_wheel import editable_wheel

    class editable_wheel_with_pth(editable_wheel):
        def _select_strategy(self, *args, **kwargs):
            inner = super()._select_strategy(*args, **kwargs)

            class WithPth:
                def __enter__(self):
                    inner.__enter__()
                    return self

                def __exit__(self, *exc):
                    return inner.__exit__(*exc)

                def __call__(self, wheel, files, mapping):
                    inner(wheel, files, mapping)
                    with open(PTH_SRC, "rb") as f:
                        wheel.writestr(PTH, f.read())

            return WithPth()

    if hasattr(editable_wheel, "_select_strategy"):
        cmdclass["editable_wheel"] = editable_wheel_with_pth
except ImportError:
    pass

setup(cmdclass=cmdclass)
