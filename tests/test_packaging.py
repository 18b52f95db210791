"""A real wheel, installed into a fresh venv: lm-eval finds our tasks and models with no flags."""

import json
import os
import subprocess
import sys
import venv
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def sh(*cmd, cwd=None, env=None, check=True):
    proc = subprocess.run([str(c) for c in cmd], cwd=cwd, env=env, capture_output=True, text=True)
    if check and proc.returncode != 0:
        raise AssertionError(f"{cmd} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return proc


@pytest.fixture(scope="module")
def fresh(tmp_path_factory):
    """Wheel built from this checkout, installed with its dependencies into a new venv."""
    tmp = tmp_path_factory.mktemp("wheel")
    sh(sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", tmp / "dist", REPO)
    wheel = next((tmp / "dist").glob("slm_suite-*.whl"))
    env_dir = tmp / "venv"
    venv.create(env_dir, with_pip=True)
    py = env_dir / "bin" / "python"
    sh(py, "-m", "pip", "install", "-q", "--disable-pip-version-check", wheel)
    return env_dir


def test_wheel_ships_yamls_and_the_activation_file(fresh):
    site = next(fresh.glob("lib/python*/site-packages"))
    assert (site / "slm_suite.pth").is_file()
    yamls = {p.name for p in (site / "slm_tasks" / "task_configs").rglob("*.yaml")}
    assert {"slm_hellaswag.yaml", "_slm_suite.yaml", "_slm_suite_lite.yaml"} <= yamls
    assert (site / "slm_tasks" / "adapters").is_dir() and (site / "slm_tasks" / "leaderboards").is_dir()
    assert (site / "slm_tasks" / "long_context" / "task.py").is_file()  # the long-context tasks' loader
    assert (site / "slm_tasks" / "leaderboards" / "templates" / "long_context.html.j2").is_file()
    assert not (site / "adapters").exists() and not (site / "leaderboards").exists()
    # nothing of ours inside lm-eval's own folder
    assert not list((site / "lm_eval").rglob("*slm*"))


def test_interpreter_start_imports_nothing_heavy(fresh):
    out = sh(
        fresh / "bin" / "python",
        "-c",
        "import sys, json; print(json.dumps(sorted(m for m in sys.modules "
        "if m.startswith(('lm_eval', 'slm_tasks', 'datasets', 'yaml')))))",
    ).stdout
    assert json.loads(out) == ["slm_tasks", "slm_tasks.activation"]


def test_lm_eval_lists_our_tasks_and_keeps_the_builtins(fresh):
    out = sh(fresh / "bin" / "lm_eval", "ls", "tasks", cwd=fresh).stdout
    for name in ("slm_suite", "slm_suite_lite", "slm_hellaswag", "arc_easy", "hellaswag"):
        assert f" {name} " in out or f"|{name}|" in out.replace(" ", "") or name in out.split()


def test_lm_eval_runs_the_lite_suite_without_flags(fresh, hub):
    env = {**os.environ, "SLM_DATA_DIR": str(hub), "HF_DATASETS_OFFLINE": "1", "HF_HUB_OFFLINE": "1"}
    proc = sh(
        fresh / "bin" / "lm_eval",
        "--model",
        "dummy",
        "--tasks",
        "slm_suite_lite",
        "--limit",
        "1",
        "--confirm_run_unsafe_code",
        cwd=fresh,
        env=env,
    )
    for domain in ("commonsense reasoning", "problem solving", "mathematics", "coding", "long context"):
        assert f"{domain} (lite)" in proc.stdout, domain
    # few-shot variants the mirror cannot feed are skipped, saying why
    assert "skipping slm_icl_hellaswag_5shot_lite" in proc.stderr


def test_models_resolve_alongside_the_builtins(fresh):
    code = (
        "from lm_eval.api.registry import get_model, model_registry\n"
        "print(get_model('dummy').__name__, get_model('gguf').__name__)\n"
        "print(sorted(k for k in model_registry.keys() if k.startswith('slm-')))\n"
        "from importlib.metadata import entry_points\n"
        "print(sorted(e.name for e in entry_points(group='lm_eval.models')))\n"
    )
    lines = sh(fresh / "bin" / "python", "-c", code).stdout.splitlines()
    assert lines[0] == "DummyLM GGUFLM"
    assert lines[1] == "['slm-llamacpp', 'slm-vllm']"
    assert lines[2] == "['slm-llamacpp', 'slm-vllm']"


def test_entry_points_have_the_shape_lm_evals_next_release_reads(fresh):
    code = (
        "import importlib, json\n"
        "from importlib.metadata import entry_points\n"
        "models = {e.name: e.value for e in entry_points(group='lm_eval.models')}\n"
        "tasks = {e.name: e.value for e in entry_points(group='lm_eval.tasks')}\n"
        "folders = list(importlib.import_module(tasks['slm_suite']).__path__)\n"
        "print(json.dumps([models, tasks, folders]))\n"
    )
    models, tasks, folders = json.loads(sh(fresh / "bin" / "python", "-c", code).stdout)
    assert models == {
        "slm-llamacpp": "slm_tasks.adapters.llamacpp:LlamaCppLM",
        "slm-vllm": "slm_tasks.adapters.vllm:VLLMLM",
    }
    assert tasks == {"slm_suite": "slm_tasks.task_configs"}  # a package whose folder holds the YAML
    site = next(fresh.glob("lib/python*/site-packages"))
    assert [Path(f) for f in folders] == [site / "slm_tasks" / "task_configs"]


def test_console_script_and_python_api(fresh, hub):
    out = sh(fresh / "bin" / "slm-suite", "tasks").stdout
    assert "slm_suite_lite" in out and "slm_mmlu" in out
    proc = sh(fresh / "bin" / "slm-suite", "data", "--data-dir", hub, "--tasks", "slm_arc_easy,slm_piqa")
    assert "slm_piqa" in proc.stdout and "0-SHOT" in proc.stdout
