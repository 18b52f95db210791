"""The board's long-context pieces: the domain's heat map per model (JSON, HTML table, PNG),
not-applicable cells shown as such, prompts that differ between models by design, and the
refusal to mix results built under different board-spec versions."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from slm_tasks.leaderboards import BoardError, build

LC_TASKS = ("slm_niah_single", "slm_niah_multi", "slm_niah_reasoning")
LENGTHS, DEPTHS = (1000, 2000, 4000), (0.0, 50.0, 100.0)


def make_lc_run(synth, root: Path, model: str, accuracy, context: int | None = None) -> Path:
    """A run of the three long-context tasks in lm-eval's layout: two documents per cell,
    ``accuracy(length, depth, i)`` their outcome; cells longer than ``context`` are not
    applicable (no acc, a reason)."""
    cells = [(n, d, i) for n in LENGTHS for d in DEPTHS for i in range(2)]
    path = synth.make_run(root, model, {t: [0.0] * len(cells) for t in LC_TASKS}, prompt_suffix=model)
    res = json.loads(path.read_text())
    stamp = path.stem.removeprefix("results_")
    for task in LC_TASKS:
        lines, scored = [], []
        for doc_id, (length, depth, i) in enumerate(cells):
            ok = context is None or length < context
            doc = {
                "kind": task.split("_")[-1],
                "length": length,
                "depth": depth,
                "sample": i,
                "applicable": ok,
                "reason": "" if ok else f"exceeds the model's trained context ({context})",
            }
            line = {
                "doc_id": doc_id,
                "doc": doc,
                "filter": "none",
                "metrics": ["acc", "not_applicable"],
                "doc_hash": f"{model}{doc_id}",
                "prompt_hash": model,
                "target_hash": "t",
                "not_applicable": float(not ok),
            }
            if ok:
                line["acc"] = float(accuracy(length, depth, i))
                scored.append(line["acc"])
            lines.append(line)
        text = "".join(json.dumps(x) + "\n" for x in lines)
        (path.parent / f"samples_{task}_{stamp}.jsonl").write_text(text)
        res["results"][task]["acc,none"] = sum(scored) / len(scored)
        res["results"][task].pop("acc_stderr,none", None)
        res["configs"][task]["metadata"] = {"version": 1.0, "lc_kind": doc["kind"], "prompts_per_model": True}
        res["task_hashes"][task] = model  # prompts are cut in each model's tokens
    path.write_text(json.dumps(res))
    return path


SPEC = {
    "schema": "slm-suite.board-spec/1",
    "version": 2,
    "name": "lc",
    "domains": [{"name": "long_context", "title": "Long context", "tasks": [{"task": t} for t in LC_TASKS]}],
    "cost": {"hardware": {"backend": "llama.cpp"}},
}


def near_only(length, depth, i):
    return depth == 100.0 or (length == 1000 and i == 0)


@pytest.fixture(scope="module")
def board(synth, tmp_path_factory):
    root = tmp_path_factory.mktemp("lc")
    make_lc_run(synth, root / "runs", "long", near_only)
    make_lc_run(synth, root / "runs", "short", lambda n, d, i: True, context=3000)
    out = build([root / "runs"], spec=SPEC, out=root / "board")
    return out, json.loads((out / "leaderboard.json").read_text())


def test_the_heat_map_counts_each_cell_over_the_domains_tasks(board):
    _, b = board
    lc = b["long_context"]
    assert lc["tasks"] == list(LC_TASKS) and lc["lengths"] == list(LENGTHS) and lc["depths"] == list(DEPTHS)
    cells = {(c["length"], c["depth"]): c for c in lc["models"]["long"]}
    # 3 tasks x 2 documents per cell
    assert cells[(2000, 100.0)]["k"] == 6 and cells[(2000, 100.0)]["n"] == 6
    assert cells[(1000, 0.0)]["value"] == pytest.approx(0.5) and cells[(4000, 50.0)]["value"] == 0.0
    c = cells[(1000, 0.0)]
    assert 0 < c["low"] < 0.5 < c["high"] < 1  # Wilson on 3 of 6
    assert cells[(4000, 50.0)]["low"] == 0.0 and cells[(4000, 50.0)]["high"] > 0


def test_a_cell_past_the_context_is_not_applicable_never_zero(board):
    _, b = board
    cells = {(c["length"], c["depth"]): c for c in b["long_context"]["models"]["short"]}
    far = cells[(4000, 0.0)]
    assert far["value"] is None and "trained context (3000)" in far["not_applicable"]
    assert cells[(2000, 0.0)]["value"] == 1.0
    row = next(r for r in b["rows"] if r["model"] == "short")
    task = row["tasks"]["slm_niah_single"]
    # over its applicable cells only (12 of 18 documents), with their Wilson interval
    assert task["value"] == 1.0 and task["method"] == "wilson" and task["n"] == 12 and task["low"] < 1
    assert row["domains"]["long_context"]["value"] == 1.0


def test_html_and_png_show_the_heat_maps(board):
    out, _ = board
    html = (out / "index.html").read_text()
    assert html.count('class="heatmap"') == 2 and "long_context.png" in html
    assert ">n/a</td>" in html and "trained context (3000)" in html
    png = (out / "long_context.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000


def test_runs_of_different_spec_versions_are_refused(synth, tmp_path):
    runs = tmp_path / "runs"
    shutil.copytree(synth.FIXTURES / "dummy-limit20", runs)
    files = sorted(runs.rglob("results_*.json"))
    for path, version in zip(files, ("1.0", "2.0")):
        res = json.loads(path.read_text())
        res["versions"]["slm_suite"] = version  # as lm-eval records the suite group's version
        path.write_text(json.dumps(res))
    with pytest.raises(BoardError) as err:
        build([runs], spec="default", out=tmp_path / "b", allow_limit=True)
    msg = str(err.value)
    assert "\n" not in msg and "board-spec version 2" in msg and "version 1: " in msg
    assert not (tmp_path / "b").exists()
    res = json.loads(files[0].read_text())
    res["versions"]["slm_suite"] = "2.0"
    files[0].write_text(json.dumps(res))
    build([runs], spec="default", out=tmp_path / "b", allow_limit=True)  # one version: fine
