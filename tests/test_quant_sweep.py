"""The sweep end to end on the embedded SmolLM2-135M (a smoke profile: one task, a few
documents): a killed sweep resumes with nothing recomputed, the board and the gate reports
are written, and the gate's verdicts and exit codes follow the policy."""

from __future__ import annotations

import json
import sqlite3

import pytest

from slm_tasks.quant_report import exit_code, report
from slm_tasks.quant_sweep import sweep

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")
FORMATS = ["Q4_0", "F16", "Q8_0"]  # any order: the most precise is the reference
TASKS = ["slm_arc_easy_lite"]
LIMIT = 8


@pytest.fixture(scope="module")
def env(tmp_path_factory, hub):
    root = tmp_path_factory.mktemp("sweep")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SLM_SUITE_CACHE", str(root / "cache"))
        mp.setenv("SLM_DATA_DIR", str(hub))
        mp.setenv("HF_DATASETS_OFFLINE", "1")
        mp.setenv("HF_HUB_OFFLINE", "1")
        yield root


def _sweep(env, **kw):
    args = dict(
        formats=FORMATS,
        tasks=TASKS,
        out=env / "out",
        limit=LIMIT,
        threads=2,
        store=str(env / "store.sqlite"),
        bench_runs=0,
        progress=False,
    )
    return sweep("smollm2-135m", **(args | kw))


def _stored(env) -> int:
    with sqlite3.connect(env / "store.sqlite") as db:
        return db.execute("SELECT COUNT(*) FROM responses").fetchone()[0]


class Killed(KeyboardInterrupt):
    pass


@pytest.fixture(scope="module")
def swept(env):
    """A sweep killed after its first format, then resumed, then repeated."""
    done = []

    def kill_after_first(run):
        done.append(run.format)
        raise Killed

    with pytest.raises(Killed):
        _sweep(env, after_format=kill_after_first)
    assert done == ["F16"]
    first = sorted((env / "out" / "runs" / "F16").rglob("results_*.json"))
    assert len(first) == 1 and not (env / "out" / "runs" / "Q8_0").exists()
    stored_after_kill = _stored(env)

    board, runs = _sweep(env)  # resumed
    assert [r.format for r in runs] == ["F16", "Q8_0", "Q4_0"]
    assert [r.reused for r in runs] == [True, False, False]
    assert runs[0].results_file == first[0]
    # two more formats computed: 8 questions x 4 choices each
    assert _stored(env) == stored_after_kill + 2 * LIMIT * 4
    stored = _stored(env)
    files = sorted((env / "out" / "runs").rglob("results_*.json"))

    board2, runs2 = _sweep(env)  # repeated: nothing computed, no run written
    assert all(r.reused for r in runs2) and _stored(env) == stored
    assert sorted((env / "out" / "runs").rglob("results_*.json")) == files
    return board2, runs2


def test_resumed_sweep_board_and_reports(swept, env):
    board, runs = swept
    out = env / "out"
    assert board["reference"] == "F16" and "dequantised F16 copy" in board["source"]
    rows = {r["format"]: r for r in board["rows"]}
    assert rows["F16"]["verdict"] == "reference"
    for fmt in ("Q8_0", "Q4_0"):
        row = rows[fmt]
        assert row["kl_mean"] is not None and row["kl_mean"] >= 0 and 0 <= row["same_answer"] <= 1
        assert row["domains"]["problem_solving"]["n"] == LIMIT
        assert row["file_bytes"] < rows["F16"]["file_bytes"]
        gate = json.loads((out / "gate" / fmt / "gate.json").read_text())
        assert gate["smoke"] is True and gate["exit_code"] == row["exit_code"] in (1, 3)
        assert gate["candidate"]["model"].endswith(f"[{fmt}]")
        assert {c["kind"] for c in gate["checks"]} == {"accuracy", "kl"}
        assert (out / "gate" / fmt / "gate.md").read_text().count("Choice distributions") == 1
    for name in ("quant.md", "quant.csv", "quant.json", "index.html"):
        assert (out / name).is_file()
    assert "not measured" in (out / "index.html").read_text()  # no bench in this sweep: no plot


def _policy(tmp_path, max_kl, margin):
    p = tmp_path / "policy.yaml"
    p.write_text(
        "schema: slm-suite.quant-policy/1\n"
        f"gate: {{spec: lite, margins: {{default: {margin}}}}}\n"
        f"domains: {{margin: {margin}}}\n"
        f"kl: {{max_mean: {max_kl}}}\n"
    )
    return p


def test_gate_verdicts_follow_the_policy(swept, env, tmp_path):
    _, runs = swept
    args = dict(
        model="m",
        origin="o",
        profile="custom",
        tasks=TASKS,
        spec_name="lite",
        out=tmp_path / "o",
        allow_limit=True,
    )
    # any KL above a tiny bound is shown: every quantised format fails (exit 1)
    report(runs, policy=_policy(tmp_path, 1e-12, 1.0), **args)
    assert [r.exit_code for r in runs[1:]] == [1, 1] and exit_code(runs) == 1
    # nothing can fail, and a smoke comparison cannot pass: not shown (exit 3)
    report(runs, policy=_policy(tmp_path, 100.0, 1.0), **args)
    assert [r.verdict for r in runs[1:]] == ["not shown", "not shown"] and exit_code(runs) == 3
    assert exit_code(runs, only="Q8_0") == 3


def test_command_line_exit_code_is_the_named_formats_gate(swept, env, slm_cli, tmp_path):
    # two of the swept formats (their runs reused), benched on one thread (quick on a busy machine)
    common = ["--formats", "F16,Q4_0", "--tasks", TASKS[0], "--limit", str(LIMIT), "--threads", "1"]
    common += ["--out", str(env / "out"), "--store", str(env / "store.sqlite"), "--no-progress"]
    strict = _policy(tmp_path, 1e-12, 1.0)
    r = slm_cli("quant", "smollm2-135m", *common, "--bench-runs", "1", "--policy", str(strict), "--gate", "q4_0")
    assert r.code == 1, r.err
    gate = json.loads((env / "out" / "gate" / "Q4_0" / "gate.json").read_text())
    assert gate["exit_code"] == 1 and gate["verdict"] == "failed"
    assert "| Q4_0 |" in r.out and "2 of 2 formats' runs reused" in r.err
    board = json.loads((env / "out" / "quant.json").read_text())
    for row in board["rows"]:  # benched, each format in its own process
        assert row["decode_ms_per_token"] > 0 and row["prefill_tok_s"] > 0 and row["peak_memory_bytes"] > 0
    assert (env / "out" / "index.html").read_text().count("<svg") == 2  # the two Pareto plots


def test_a_file_of_the_users_where_a_bench_record_goes_is_refused_and_kept(tmp_path):
    from slm_tasks.leaderboards.outputs import OutputError
    from slm_tasks.quant_sweep import FormatRun, bench_formats

    mine = tmp_path / "out" / "bench" / "F16.json"
    mine.parent.mkdir(parents=True)
    mine.write_text('{"my": "notes"}\n')
    run = FormatRun("F16", tmp_path / "model.gguf", "0" * 64, 0.0)
    with pytest.raises(OutputError, match="is not a bench record slm-suite wrote"):
        bench_formats([run], tmp_path / "out", bench_runs=1, threads=1)
    assert mine.read_text() == '{"my": "notes"}\n'
