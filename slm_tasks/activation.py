"""How lm-eval 0.4.13 finds slm-suite without extra flags.

lm-eval 0.4.13 reads no plugin entry points, so ``slm_suite.pth`` calls :func:`install` at
interpreter start. That only appends a finder to ``sys.meta_path``; nothing else is
imported until a program imports lm-eval itself. When lm-eval's registry or task manager
module is executed, the finder checks lm-eval's version and, on 0.4.13 only, patches the
module in memory:

* ``lm_eval.api.registry.get_model`` registers the models our distribution declares as
  ``lm_eval.models`` entry points, as lazy ``"module:Class"`` placeholders (the adapter is
  imported only when chosen);
* ``lm_eval.tasks.manager.TaskManager`` indexes our ``task_configs`` folder wherever it
  indexes lm-eval's own tasks (``include_defaults=True``), after the built-ins and before
  the caller's ``include_path``, so a user's YAML of the same name wins over ours; its
  ``load`` drops from groups the slm few-shot variants whose examples an offline mirror
  lacks, saying so (slm_tasks.fewshot.drop_unrunnable).

On any other lm-eval version nothing is patched and one warning says what to do. The
entry points (pyproject.toml) have the shape lm-eval's next release reads natively; this
hook can be retired then. Nothing is written to lm-eval's folder. Set
``SLM_SUITE_NO_ACTIVATE=1`` to switch it off.
"""

from __future__ import annotations

import os
import sys

LM_EVAL_VERSION = "0.4.13"  # the release whose internals the patches below are written against
DISTRIBUTION = "slm-suite"
MODEL_GROUP = "lm_eval.models"

_version_verdict: bool | None = None  # decided once, when lm-eval's first patched module loads


def version_problem(installed: str) -> str | None:
    """The one-line warning for an lm-eval the hook was not written for, else None."""
    if installed == LM_EVAL_VERSION:
        return None
    from slm_tasks.paths import task_dir  # not at module level: this module loads at every start

    return (
        f"slm-suite: lm-eval {installed} is installed, but slm-suite's activation hook is written "
        f"for lm-eval {LM_EVAL_VERSION}, so it is off and lm-eval does not know the slm_* tasks "
        f"or slm-* models; run pip install 'lm-eval=={LM_EVAL_VERSION}', or pass "
        f"--include_path {task_dir()} for the tasks"
    )


def installed_lm_eval_version() -> str:
    """lm-eval's own ``__version__`` (its package is imported before any of its modules)."""
    found = getattr(sys.modules.get("lm_eval"), "__version__", None)
    if found:
        return str(found)
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("lm_eval")
    except PackageNotFoundError:
        return "unknown"


def _version_ok() -> bool:
    global _version_verdict
    if _version_verdict is None:
        problem = version_problem(installed_lm_eval_version())
        if problem:
            import logging

            logging.getLogger(__name__).warning(problem)
        _version_verdict = problem is None
    return _version_verdict


def model_targets() -> dict[str, str]:
    """Model name -> "module:Class", from our distribution's ``lm_eval.models`` entry points."""
    from importlib.metadata import PackageNotFoundError, distribution

    try:
        entry_points = distribution(DISTRIBUTION).entry_points
    except PackageNotFoundError:  # a bare checkout: there is no installed metadata to read
        return {}
    return {ep.name: ep.value for ep in entry_points if ep.group == MODEL_GROUP}


def register_models(registry) -> None:
    """Add our model names to ``registry`` as lazy placeholders (imported only when chosen).

    A placeholder string (not the EntryPoint) is what lm-eval lets a class registered
    under the same name replace.
    """
    for name, target in model_targets().items():
        if name not in registry:
            try:
                registry.register(name, target=target)
            except TypeError:  # a frozen registry (lm_eval.api.registry.freeze_all) stays as it is
                return


def _patch_registry(mod) -> None:
    import functools

    original = mod.get_model

    @functools.wraps(original)
    def get_model(*args, **kwargs):
        if len(mod.model_registry) == 0:
            # What lm-eval does itself on an empty registry; done first so that our
            # placeholders do not make it skip its built-in models.
            import lm_eval.models  # noqa: F401
        register_models(mod.model_registry)
        return original(*args, **kwargs)

    mod.get_model = get_model


def with_our_tasks(include_path) -> list:
    """``include_path`` with our folder in front of the caller's paths (later paths win)."""
    from slm_tasks.paths import task_dir

    ours = task_dir()
    paths = (
        []
        if include_path is None
        else (list(include_path) if isinstance(include_path, (list, tuple)) else [include_path])
    )
    if any(os.path.realpath(p) == str(ours) for p in paths):
        return paths
    return [ours, *paths]


def _patch_task_manager(mod) -> None:
    import functools
    import inspect

    cls = mod.TaskManager
    original = cls.__init__
    signature = inspect.signature(original)
    for name in ("include_path", "include_defaults"):
        if name not in signature.parameters:
            raise TypeError(f"TaskManager.__init__ has no parameter {name!r}")

    @functools.wraps(original)
    def __init__(self, *args, **kwargs):
        try:
            call = signature.bind(self, *args, **kwargs)
        except TypeError:
            return original(self, *args, **kwargs)  # lm-eval's own error for a bad call
        call.apply_defaults()
        given = call.arguments["include_path"]
        if call.arguments["include_defaults"]:
            call.arguments["include_path"] = with_our_tasks(given)
        original(*call.args, **call.kwargs)
        self.include_path = given  # what lm-eval itself stores

    cls.__init__ = __init__

    original_load = cls.load

    @functools.wraps(original_load)
    def load(self, task_list, *args, **kwargs):
        loaded = original_load(self, task_list, *args, **kwargs)
        from slm_tasks.fewshot import drop_unrunnable

        names = task_list if isinstance(task_list, (list, tuple)) else [task_list]
        dropped = drop_unrunnable(loaded, names)
        if dropped:
            import logging

            # slm-suite run names them once in its header and sets this logger quiet
            if logging.getLogger("slm_tasks.fewshot").isEnabledFor(logging.WARNING):
                for name, reason in dropped:
                    print(f"slm-suite: skipping {name}: {reason}", file=sys.stderr)
            loaded["slm_skipped"] = dropped  # lm-eval reads only "tasks" and "groups"
        return loaded

    cls.load = load


_PATCHERS = {"lm_eval.api.registry": _patch_registry, "lm_eval.tasks.manager": _patch_task_manager}


def _patch(module) -> None:
    try:
        _PATCHERS[module.__name__](module)
    except Exception as exc:  # noqa: BLE001  (never break lm-eval itself)
        print(
            f"slm-suite: could not activate for {module.__name__}: {exc}; set SLM_SUITE_NO_ACTIVATE=1 to silence this",
            file=sys.stderr,
        )


class _Loader:
    def __init__(self, inner):
        self._inner = inner

    def create_module(self, spec):
        return self._inner.create_module(spec)

    def exec_module(self, module):
        self._inner.exec_module(module)
        _patch(module)

    def __getattr__(self, name):
        return getattr(self._inner, name)


class _Finder:
    """Meta-path finder that only reacts to the two lm-eval modules we patch."""

    def find_spec(self, fullname, path, target=None):
        if fullname not in _PATCHERS or not _version_ok():
            return None
        from importlib.machinery import PathFinder

        spec = PathFinder.find_spec(fullname, path)
        if spec is None or spec.loader is None:
            return None
        spec.loader = _Loader(spec.loader)
        return spec


def install() -> None:
    """Called from slm_suite.pth. Cheap: appends one finder, imports nothing."""
    if os.environ.get("SLM_SUITE_NO_ACTIVATE"):
        return
    if any(type(f).__name__ == "_Finder" and type(f).__module__ == __name__ for f in sys.meta_path):
        return
    for name in _PATCHERS:  # already imported (install() called late, e.g. from a checkout)
        if name in sys.modules and _version_ok():
            _patch(sys.modules[name])
    sys.meta_path.insert(0, _Finder())
