"""How lm-eval 0.4.13 finds slm-suite without extra flags.

lm-eval 0.4.13 reads no entry points, so ``slm_suite.pth`` calls :func:`install` at
interpreter start. That only appends a finder to ``sys.meta_path``; nothing else is
imported until a program imports lm-eval itself. When lm-eval's registry or task manager
module is executed, the finder patches it in memory:

* ``lm_eval.api.registry.get_model`` first imports ``lm_eval.models`` (the built-in
  models register lazily, and lm-eval only does that while the registry is empty), then
  registers ``slm-llamacpp`` / ``slm-vllm`` as lazy placeholders;
* ``lm_eval.tasks.manager.TaskManager`` appends our ``task_configs`` folder to
  ``include_path`` (after the built-ins, with distinct ``slm_`` names, so no built-in
  task is shadowed), and its ``load`` drops from groups the slm few-shot variants whose
  examples an offline mirror lacks, saying so (slm_tasks.fewshot.drop_unrunnable).

Nothing is written to lm-eval's folder. Set ``SLM_SUITE_NO_ACTIVATE=1`` to switch it off.
"""

from __future__ import annotations

import os
import sys

MODELS = {
    "slm-llamacpp": "slm_tasks.adapters.llamacpp:LlamaCppLM",
    "slm-vllm": "slm_tasks.adapters.vllm:VLLMLM",
}
_PATCH_TARGETS = ("lm_eval.api.registry", "lm_eval.tasks.manager")


def task_dir():
    """The folder holding every slm_suite task YAML.

    A wheel installs it as package data (slm_tasks/task_configs); an editable install
    or a checkout reads the repository's top-level task_configs/.
    """
    from pathlib import Path  # not at module level: this module loads at every interpreter start

    here = Path(__file__).resolve().parent
    installed = here / "task_configs"
    return installed if installed.is_dir() else here.parent / "task_configs"


def register_models(registry_module) -> None:
    """Add our model names as lazy placeholders (imported only when chosen)."""
    reg = registry_module.model_registry
    for name, target in MODELS.items():
        if name not in reg.keys():
            reg.register(name, target=target)


def _patch_registry(mod) -> None:
    original = mod.get_model

    def get_model(model_name: str):
        import lm_eval.models  # noqa: F401  (built-ins register lazily on this import)

        register_models(mod)
        return original(model_name)

    get_model.__doc__ = original.__doc__
    get_model.__wrapped__ = original
    mod.get_model = get_model


def _patch_task_manager(mod) -> None:
    cls = mod.TaskManager
    original = cls.__init__

    def __init__(self, *args, include_path=None, **kwargs):
        ours = str(task_dir())
        paths = [] if include_path is None else (
            list(include_path) if isinstance(include_path, (list, tuple)) else [include_path]
        )
        if ours not in {str(p) for p in paths}:
            paths.append(ours)
        original(self, *args, include_path=paths, **kwargs)

    __init__.__wrapped__ = original
    cls.__init__ = __init__

    original_load = cls.load

    def load(self, task_list, *args, **kwargs):
        loaded = original_load(self, task_list, *args, **kwargs)
        from slm_tasks.fewshot import drop_unrunnable

        names = task_list if isinstance(task_list, (list, tuple)) else [task_list]
        for name, reason in drop_unrunnable(loaded, names):
            print(f"slm-suite: skipping {name}: {reason}", file=sys.stderr)
        return loaded

    load.__wrapped__ = original_load
    cls.load = load


_PATCHERS = {"lm_eval.api.registry": _patch_registry, "lm_eval.tasks.manager": _patch_task_manager}


class _Loader:
    def __init__(self, inner, patch):
        self._inner, self._patch = inner, patch

    def create_module(self, spec):
        return self._inner.create_module(spec)

    def exec_module(self, module):
        self._inner.exec_module(module)
        try:
            self._patch(module)
        except Exception as exc:  # never break lm-eval itself
            print(f"slm-suite: could not activate for {module.__name__}: {exc}", file=sys.stderr)

    def __getattr__(self, name):
        return getattr(self._inner, name)


class _Finder:
    """Meta-path finder that only reacts to the two lm-eval modules we patch."""

    def find_spec(self, fullname, path, target=None):
        if fullname not in _PATCHERS:
            return None
        from importlib.machinery import PathFinder

        spec = PathFinder.find_spec(fullname, path)
        if spec is None or spec.loader is None:
            return None
        spec.loader = _Loader(spec.loader, _PATCHERS[fullname])
        return spec


def install() -> None:
    """Called from slm_suite.pth. Cheap: appends one finder, imports nothing."""
    if os.environ.get("SLM_SUITE_NO_ACTIVATE"):
        return
    if any(isinstance(f, _Finder) for f in sys.meta_path) or any(
        type(f).__name__ == "_Finder" and type(f).__module__ == __name__ for f in sys.meta_path
    ):
        return
    for name in _PATCH_TARGETS:  # already imported (e.g. install() called late)
        if name in sys.modules:
            _PATCHERS[name](sys.modules[name])
    sys.meta_path.insert(0, _Finder())


def activate() -> None:
    """For programs that start before the .pth ran (e.g. an uninstalled checkout)."""
    install()
