"""The activation hook: lm-eval 0.4.13 finds our tasks and models, and behaves as it does
without us in everything else (its own unit tests give the same outcome either way)."""

import importlib
import inspect
import os
import subprocess
import sys
import tarfile
import time
import tomllib
import urllib.request
import xml.etree.ElementTree as ET
from importlib.metadata import distribution
from pathlib import Path

import pytest

from slm_tasks import activation
from slm_tasks.activation import LM_EVAL_VERSION
from slm_tasks.paths import task_dir

REPO = Path(__file__).resolve().parents[1]

# lm-eval's own test files that run offline (no hub, no network, no torch), measured on the
# 0.4.13 sdist. The others need the hub (test_evaluator, test_prompt, test_ruler), torch
# (test_utils, test_requests_caching), files the sdist lacks (test_tasks, test_unitxt_tasks)
# or skip themselves (test_janitor). About 40 tests in these files load hub datasets and
# fail at once under HF_HUB_OFFLINE=1, with or without the plugin.
LM_EVAL_OFFLINE_TESTS = (
    "test_aggregation_pipeline",
    "test_cache",
    "test_cli_subcommands",
    "test_evaluator_utils",
    "test_fewshot_context",
    "test_filters",
    "test_group",
    "test_kormedmcqa",
    "test_metrics",
    "test_minerva_math",
    "test_misc",
    "test_multimodal_cache_keys",
    "test_registry",
    "test_samplers",
    "test_serialization",
    "test_task_manager",
)
OUR_TASK = "slm_arc_easy"


def env(**extra):
    """This process's environment, offline, without the switch and path overrides, plus ``extra``."""
    out = {k: v for k, v in os.environ.items() if k not in ("SLM_SUITE_NO_ACTIVATE", "PYTHONPATH", "PYTEST_ADDOPTS")}
    return {**out, "HF_DATASETS_OFFLINE": "1", "HF_HUB_OFFLINE": "1", **extra}


def python(code, cwd=None, **extra):
    return subprocess.run(
        [sys.executable, "-P", "-c", code],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=env(**extra),
        timeout=300,
        check=False,
    )


@pytest.fixture(scope="module")
def TaskManager():
    from lm_eval.tasks import TaskManager

    assert hasattr(TaskManager.__init__, "__wrapped__"), "the activation hook is off in this process"
    return TaskManager


def write_task(folder: Path, name: str, prompt: str = "Q: {{question}}") -> Path:
    path = folder / f"{name}.yaml"
    path.write_text(
        f"task: {name}\ndataset_path: allenai/ai2_arc\noutput_type: generate_until\n"
        f'test_split: test\ndoc_to_text: "{prompt}"\ndoc_to_target: "x"\n'
    )
    return path


# ---------------------------------------------------------------- tasks


def test_include_defaults_false_indexes_only_the_callers_paths(TaskManager, tmp_path):
    write_task(tmp_path, "only_mine")
    assert TaskManager(include_path=str(tmp_path), include_defaults=False).all_tasks == ["only_mine"]
    assert TaskManager(include_defaults=False).all_tasks == []


def test_the_wrapper_has_lm_evals_signature_and_takes_positional_arguments(TaskManager, tmp_path):
    write_task(tmp_path, "only_mine")
    original = TaskManager.__init__.__wrapped__
    assert inspect.signature(TaskManager.__init__) == inspect.signature(original)
    tm = TaskManager(None, tmp_path, False)  # verbosity, include_path, include_defaults
    assert tm.all_tasks == ["only_mine"] and tm.include_path == tmp_path


def test_a_bad_call_raises_lm_evals_own_error(TaskManager):
    with pytest.raises(TypeError) as ours:
        TaskManager(include_paths="typo")
    with pytest.raises(TypeError) as theirs:
        TaskManager.__init__.__wrapped__(object.__new__(TaskManager), include_paths="typo")
    assert str(ours.value) == str(theirs.value)


def test_defaults_bring_ours_beside_the_builtins_and_the_users_yaml_wins(TaskManager, tmp_path):
    mine = write_task(tmp_path, OUR_TASK, prompt="Mine: {{question}}")
    tm = TaskManager(None, str(tmp_path))  # one full index: lm-eval's ~15k names take seconds
    index = tm.task_index
    assert index[OUR_TASK].yaml_path == mine  # the user's include_path beats our folder
    assert task_dir() in index["slm_piqa"].yaml_path.parents
    assert index["arc_easy"].yaml_path.is_relative_to(Path(inspect.getfile(TaskManager)).parent)
    assert tm.include_path == str(tmp_path)  # what lm-eval itself stores: the caller's value


def test_our_folder_is_not_added_twice():
    ours = task_dir()
    assert activation.with_our_tasks(None) == [ours]
    assert activation.with_our_tasks("a") == [ours, "a"]
    assert activation.with_our_tasks(["a", str(ours)]) == ["a", str(ours)]
    assert activation.with_our_tasks(("a",)) == [ours, "a"]


def test_the_task_entry_point_names_the_package_holding_our_yaml():
    points = {ep.name: ep.value for ep in distribution("slm-suite").entry_points if ep.group == "lm_eval.tasks"}
    assert points == {"slm_suite": "slm_tasks.task_configs"}
    try:
        package = importlib.import_module(points["slm_suite"])
    except ImportError as exc:
        pytest.fail(
            f"lm-eval's task entry point cannot import {points['slm_suite']} ({exc}); "
            "it needs task_configs/__init__.py to be a package in editable installs too"
        )
    assert [Path(p).resolve() for p in package.__path__] == [task_dir()]
    assert (task_dir() / "_slm_suite.yaml").is_file()


# ---------------------------------------------------------------- models


def test_the_model_map_is_the_pyprojects_entry_points():
    declared = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["entry-points"]["lm_eval.models"]
    assert activation.model_targets() == declared, "installed metadata is stale: pip install -e ."
    assert declared == {
        "slm-llamacpp": "slm_tasks.adapters.llamacpp:LlamaCppLM",
        "slm-vllm": "slm_tasks.adapters.vllm:VLLMLM",
    }
    assert "slm_tasks.adapters" not in Path(activation.__file__).read_text()  # no second map


def test_get_model_finds_ours_and_the_builtins():
    from lm_eval.api import registry

    assert inspect.signature(registry.get_model) == inspect.signature(registry.get_model.__wrapped__)
    assert registry.get_model("dummy").__name__ == "DummyLM"
    assert registry.get_model(model_name="gguf").__name__ == "GGUFLM"
    llamacpp = importlib.import_module("slm_tasks.adapters.llamacpp")
    assert registry.get_model("slm-llamacpp") is llamacpp.LlamaCppLM
    assert {"slm-llamacpp", "slm-vllm"} <= set(registry.model_registry.keys())


def test_a_directly_imported_adapter_is_the_model_lm_eval_resolves():
    out = python(
        "import slm_tasks.adapters.llamacpp as a\n"
        "from lm_eval.api.registry import get_model\n"
        "print(get_model('slm-llamacpp') is a.LlamaCppLM, get_model('dummy').__name__)"
    )
    assert out.stdout.split() == ["True", "DummyLM"], out.stderr[-2000:]


# ---------------------------------------------------------------- other lm-eval versions

PROBE = (
    "import lm_eval, lm_eval.api.registry as r, lm_eval.tasks.manager as m\n"
    "print(lm_eval.__version__, hasattr(r.get_model, '__wrapped__'), "
    "hasattr(m.TaskManager.__init__, '__wrapped__'))"
)


def test_the_version_check_names_the_installed_version_and_the_fix():
    assert activation.version_problem(LM_EVAL_VERSION) is None
    message = activation.version_problem("0.4.14")
    assert "lm-eval 0.4.14 is installed" in message and "\n" not in message
    assert f"pip install 'lm-eval=={LM_EVAL_VERSION}'" in message
    assert f"--include_path {task_dir()}" in message


def test_another_lm_eval_version_is_left_unpatched_with_one_warning(tmp_path):
    # lm-eval reads its __version__ from the first lm_eval metadata on sys.path
    info = tmp_path / "lm_eval-0.5.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: lm_eval\nVersion: 0.5.0\n")
    other = python(PROBE, PYTHONPATH=str(tmp_path))
    assert other.stdout.split() == ["0.5.0", "False", "False"], other.stderr[-2000:]
    assert other.stderr.count("slm-suite: lm-eval 0.5.0 is installed") == 1, other.stderr[-2000:]
    start = python("import sys; print('lm_eval' in sys.modules)", PYTHONPATH=str(tmp_path))
    assert (start.stdout.strip(), start.stderr) == ("False", "")  # nothing said at interpreter start
    pinned = python(PROBE)
    assert pinned.stdout.split() == [LM_EVAL_VERSION, "True", "True"]
    assert "slm-suite" not in pinned.stderr
    off = python(PROBE, SLM_SUITE_NO_ACTIVATE="1")
    assert off.stdout.split() == [LM_EVAL_VERSION, "False", "False"]


# ---------------------------------------------------------------- lm-eval's own tests


def cache_dir() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "slm-suite"


def index_reachable() -> str | None:
    """None when the package index answers, else why not."""
    url = os.environ.get("PIP_INDEX_URL", "https://pypi.org/simple/").rstrip("/") + "/lm-eval/"
    try:
        urllib.request.urlopen(url, timeout=15).close()
    except OSError as exc:
        return f"{url}: {exc}"
    return None


@pytest.fixture(scope="module")
def lm_eval_sdist() -> Path:
    """The pinned lm-eval's sdist, unpacked once into the user's cache (outside the repo)."""
    root = cache_dir() / f"lm_eval-{LM_EVAL_VERSION}"
    if (root / "tests" / "test_task_manager.py").is_file():
        return root
    download = cache_dir() / "download"
    download.mkdir(parents=True, exist_ok=True)
    got = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--no-binary",
            ":all:",
            "--disable-pip-version-check",
            "--timeout",
            "30",
            "-d",
            download,
            f"lm_eval=={LM_EVAL_VERSION}",
        ],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    if got.returncode != 0:
        why = index_reachable()
        if why:
            pytest.skip(f"PyPI cannot be reached, so lm-eval's own tests were not run ({why})")
        pytest.fail(f"pip download lm_eval=={LM_EVAL_VERSION} failed:\n{got.stderr[-3000:]}")
    archive = next(download.glob(f"lm[_-]eval-{LM_EVAL_VERSION}.tar.gz"))
    unpacked = cache_dir() / f".unpack-{os.getpid()}"
    with tarfile.open(archive) as tar:
        safe = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
        tar.extractall(unpacked, **safe)
    (unpacked / f"lm_eval-{LM_EVAL_VERSION}").rename(root)
    unpacked.rmdir()
    return root


def outcomes(junit: Path) -> dict[str, str]:
    """Test id -> passed | failure | error | skipped, from pytest's junit xml."""
    out = {}
    for case in ET.parse(junit).getroot().iter("testcase"):
        kinds = [child.tag for child in case if child.tag in ("failure", "error", "skipped")]
        out[f"{case.get('classname')}::{case.get('name')}"] = kinds[0] if kinds else "passed"
    return out


@pytest.mark.slow
def test_lm_evals_own_tests_have_the_same_outcome_with_and_without_the_plugin(lm_eval_sdist, tmp_path):
    # -P: the sdist's own lm_eval/ source must not shadow the installed lm-eval we patch
    probe = python(
        "import lm_eval, lm_eval.tasks.manager as m\n"
        "print(lm_eval.__file__, hasattr(m.TaskManager.__init__, '__wrapped__'))",
        cwd=lm_eval_sdist,
    )
    installed, patched = probe.stdout.split()
    assert not Path(installed).is_relative_to(lm_eval_sdist) and patched == "True", probe.stderr[-2000:]

    files = [f"tests/{name}.py" for name in LM_EVAL_OFFLINE_TESTS]
    runs = {}
    started = time.monotonic()
    for mode, extra in (("off", {"SLM_SUITE_NO_ACTIVATE": "1"}), ("on", {})):  # both at once: 2 cores
        junit, log = tmp_path / f"{mode}.xml", tmp_path / f"{mode}.log"
        with open(log, "w") as out:
            runs[mode] = subprocess.Popen(
                [
                    sys.executable,
                    "-P",
                    "-m",
                    "pytest",
                    "-q",
                    "-p",
                    "no:cacheprovider",
                    f"--junitxml={junit}",
                    f"--basetemp={tmp_path / mode}",
                    *files,
                ],
                cwd=lm_eval_sdist,
                env=env(**extra),
                stdout=out,
                stderr=subprocess.STDOUT,
            )
    results = {}
    try:
        for mode, proc in runs.items():
            rc = proc.wait(timeout=1200)
            tail = (tmp_path / f"{mode}.log").read_text()[-3000:]
            assert rc in (0, 1), f"lm-eval's tests with the plugin {mode} did not run (exit {rc}):\n{tail}"
            results[mode] = outcomes(tmp_path / f"{mode}.xml")
    finally:
        for proc in runs.values():  # a failed or timed-out run leaves nothing behind
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    print(f"lm-eval's own tests, plugin off and on side by side: {time.monotonic() - started:.0f} s")

    off, on = results["off"], results["on"]
    assert len(off) > 450 and sum(v == "passed" for v in off.values()) > 400, "too few of lm-eval's tests ran"
    differ = {t: (off.get(t), on.get(t)) for t in off.keys() | on.keys() if off.get(t) != on.get(t)}
    assert not differ, f"outcome (plugin off, on) differs: {differ}"
