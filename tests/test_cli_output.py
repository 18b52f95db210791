"""What `slm-suite run` and `slm-suite data` print: the cost line, --no-bench, no git noise,
and a mirror report that counts every task that cannot run."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from slm_tasks import cli
from slm_tasks.api import RunOutput

RUN = {
    "wall_s": 12.345678901234,
    "prefill_tok_s": 512.3456789,
    "decode_ms_per_token": 11.4321987,
    "ttft_ms": 85.4321,
    "peak_rss_bytes": 1_612_345_678,
    "energy_j": None,
    "energy_unavailable_reason": "no RAPL counters (/sys/class/powercap does not exist)",
}


# --- the cost line --------------------------------------------------------------------------
def test_the_cost_is_one_line_with_units_and_sensible_precision():
    line = cli.format_cost(RUN)
    assert line == (
        "cost: 12.3 s wall, prefill 512 tok/s, decode 11.4 ms/token, first token 85 ms, "
        "peak memory 1.61 GB, energy n/a (no RAPL counters (/sys/class/powercap does not exist))"
    )
    assert "{" not in line and "12.345678" not in line


def test_figures_not_measured_are_left_out():
    # a scoring-only run: nothing generated, so no decode speed or time to first token
    line = cli.format_cost({**RUN, "decode_ms_per_token": None, "ttft_ms": None, "energy_unavailable_reason": None})
    assert line == "cost: 12.3 s wall, prefill 512 tok/s, peak memory 1.61 GB"
    assert "None" not in line
    assert cli.format_cost({}) == "cost: nothing measured"
    assert cli.format_cost({"wall_s": None, "peak_rss_bytes": 350_000_000}) == "cost: peak memory 350 MB"


@pytest.mark.parametrize(
    "wall, shown",
    [(0.000004, "< 0.1 s"), (0.25, "0.2 s"), (59.94, "59.9 s"), (1713.2, "28 min 33 s"), (26_280.0, "7 h 18 min")],
)
def test_wall_time_reads_as_a_duration(wall, shown):
    assert cli.format_cost({"wall_s": wall}) == f"cost: {shown} wall"


def test_measured_energy_is_shown_in_joules_or_kilojoules():
    assert cli.format_cost({"energy_j": 812.44}).endswith("energy 812.4 J")
    measured = {"energy_j": 52_310.0, "energy_unavailable_reason": None}
    assert cli.format_cost(measured) == "cost: energy 52.3 kJ"


# --- --no-bench ---------------------------------------------------------------------------
@pytest.fixture()
def run_calls(monkeypatch):
    """slm_tasks.api.run replaced by a recorder: what `slm-suite run` passes to it."""
    calls = []

    def record(**kwargs):
        calls.append(kwargs)
        return RunOutput({}, None, None)

    monkeypatch.setattr("slm_tasks.api.run", record)
    return calls


def test_no_bench_passes_zero_bench_runs(slm_cli, run_calls):
    assert slm_cli("run", "--no-bench", "--tasks", "slm_arc_easy").code == 0
    assert slm_cli("run", "--tasks", "slm_arc_easy").code == 0
    assert [c["bench_runs"] for c in run_calls] == [0, 3]
    assert run_calls[0]["tasks"] == ["slm_arc_easy"]


def test_no_bench_is_in_the_help():
    run_parser = cli.build_parser()._subparsers._group_actions[0].choices["run"]
    assert "--no-bench" in " ".join(run_parser.format_help().split())


# --- no "fatal: not a git repository" -------------------------------------------------------
needs_git = pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")


@pytest.fixture()
def outside_git(tmp_path, monkeypatch):
    """The working folder is a fresh folder that no git repository contains."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("GIT_DIR", raising=False)
    monkeypatch.delenv("GIT_WORK_TREE", raising=False)
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path.parent))
    return tmp_path


@needs_git
def test_lm_evals_git_hash_is_quiet_outside_a_repository(outside_git, capfd):
    from lm_eval import evaluator

    original = evaluator.get_git_commit_hash
    original()  # lm-eval's own call: git's complaint reaches our stderr
    assert "fatal: not a git repository" in capfd.readouterr().err
    with cli.git_hash_quietly():
        assert evaluator.get_git_commit_hash() is None
    assert capfd.readouterr().err == ""
    assert evaluator.get_git_commit_hash is original  # put back after the run


@needs_git
def test_the_git_hash_is_kept_inside_a_repository(outside_git, capfd):
    from lm_eval import evaluator

    git = ["git", "-c", "user.name=t", "-c", "user.email=t@example.org"]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "commit", "-q", "--allow-empty", "-m", "first"], check=True)
    expected = subprocess.run(
        ["git", "describe", "--always"], capture_output=True, text=True, check=True
    ).stdout.strip()
    with cli.git_hash_quietly():
        assert evaluator.get_git_commit_hash() == expected and len(expected) >= 7
    assert "fatal" not in capfd.readouterr().err


@needs_git
def test_slm_suite_run_asks_for_the_hash_quietly(outside_git, capfd, monkeypatch):
    from lm_eval import evaluator

    seen = []

    def run(**kwargs):  # where lm-eval's evaluator asks for the hash: inside api.run
        seen.append(evaluator.get_git_commit_hash())
        return RunOutput({}, None, None)

    monkeypatch.setattr("slm_tasks.api.run", run)
    assert cli.main(["run", "--no-bench", "--tasks", "slm_arc_easy"]) == 0
    assert seen == [None] and "fatal" not in capfd.readouterr().err


# --- slm-suite data -------------------------------------------------------------------------
# The shared mirror has no train split of HellaSwag, PIQA or WinoGrande: their 1- and 5-shot
# ICL variants take their examples from it.
FEWSHOT_VARIANTS = {f"slm_icl_{b}_{k}shot" for b in ("hellaswag", "piqa", "winogrande") for k in (1, 5)}


def test_data_names_and_counts_the_tasks_that_cannot_run(mirror, slm_cli):
    result = slm_cli("data", "--data-dir", mirror)
    lines = result.out.strip().splitlines()
    rows = {ln.split()[0]: ln.split(None, 2)[1:] for ln in lines if ln.startswith("  slm_")}
    unusable = sorted(t for t, (status, _) in rows.items() if status in ("UNUSABLE", "ERROR"))
    assert FEWSHOT_VARIANTS <= set(unusable)
    for t in FEWSHOT_VARIANTS:
        status, why = rows[t]
        assert status == "UNUSABLE" and why.startswith(f"{t[-5]}-shot needs few-shot examples, but ")
        assert "has no 'train' split in the mirror" in why
    # their 0-shot variants run (0-shot only), as does every variant of data the mirror has whole
    assert rows["slm_icl_piqa_0shot"][0] == rows["slm_hellaswag"][0] == "0-SHOT"
    assert rows["slm_icl_arc_challenge_5shot"][0] == "OK"
    summary = next(ln for ln in lines if ln.startswith(f"{len(rows)} tasks: "))
    assert summary.endswith(f", {len(unusable)} unusable: {', '.join(unusable)}")
    # the run skips those variants in their groups and says so: no data is broken
    assert result.code == (2 if any(status == "ERROR" for status, _ in rows.values()) else 0)


def test_data_exits_2_when_a_named_task_cannot_run(mirror, slm_cli):
    result = slm_cli("data", "--data-dir", mirror, "--tasks", "slm_icl_piqa_5shot,slm_icl_arc_challenge_5shot")
    assert result.code == 2 and "2 tasks: 1 ok, 0 0-shot only, 1 unusable: slm_icl_piqa_5shot" in result.out
    assert not result.err  # the report says it; no log line repeats it


def test_data_calls_unusable_what_the_run_skips(mirror):
    """Within a group, `slm-suite run` skips exactly the tasks the report calls unusable,
    for the same reason (the lite group here: the same data, fewer documents)."""
    from slm_tasks import datacheck
    from slm_tasks.api import task_manager

    loaded = task_manager(include_defaults=False).load(["slm_icl_lite"])
    skipped = {t.removesuffix("_lite"): why for t, why in loaded.get("slm_skipped", [])}
    icl = sorted(t.removesuffix("_lite") for t in loaded["tasks"]) + sorted(skipped)
    report = datacheck.check(mirror, tasks=icl)
    assert {t: detail for t, status, detail in report.rows if status == "UNUSABLE"} == skipped
    assert set(skipped) == FEWSHOT_VARIANTS


def test_data_exits_0_when_every_task_can_run(mirror, slm_cli):
    tasks = "slm_icl_arc_challenge_5shot,slm_icl_hellaswag_0shot"
    result = slm_cli("data", "--data-dir", mirror, "--tasks", tasks)
    assert result.code == 0 and result.out.strip().endswith("2 tasks: 1 ok, 1 0-shot only, 0 unusable")
