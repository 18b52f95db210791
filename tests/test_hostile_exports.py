"""Hostile names and local paths against the board's exports, and its intervals and ranks.

Boards are built from synthetic lm-eval runs (tests/test_leaderboard_synthetic.py) whose
model and task names try to break out of their medium: spreadsheet formulas in the CSV, raw
HTML, code spans, table pipes and line breaks in the Markdown and the page. Every export of
a board built in a tmp folder is searched for that folder's and the home folder's path. The
interval rules (docs/leaderboard.md, "Scores and intervals") are checked against numbers
worked out by hand.
"""

from __future__ import annotations

import csv
import hashlib
import html
import importlib.util
import json
import math
import re
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest

from slm_tasks.leaderboards import build
from slm_tasks.leaderboards.board import rank_with_ties
from slm_tasks.leaderboards.render import csv_cell, md_text
from slm_tasks.results import stats


def _synthetic():
    path = Path(__file__).with_name("test_leaderboard_synthetic.py")
    spec = importlib.util.spec_from_file_location("lb_synthetic", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


synth = _synthetic()
Z2 = 1.959963984540054**2  # z^2 of a 95% interval

FORMULA_NAMES = [
    '=HYPERLINK("http://evil.example","x")',
    "+1+2",
    "-3+4",
    "@SUM(A1:A9)",
    "\t=1+1",
    "\r=1+1",
    "  =cmd|' /C calc'!A0",
    "\n@x",
    "\uff1d1+1",
    "\t plain",
]
MARKDOWN_NAMES = [
    "<img src=x onerror=alert(1)>",
    "<script>alert(1)</script>",
    "a`b` ``c``",
    "x|y||z",
    "line1\nline2\r\nline3",
    "[click](javascript:alert(1))",
    "&lt;b&gt; & <b>bold</b>",
    "**strong** _em_ ~~gone~~",
    "# heading",
    "back\\slash\\|pipe",
]
FORMULA_START = ("=", "+", "-", "@", "\t", "\r", "\uff1d", "\uff0b", "\uff0d", "\uff20")


def spec_for(tasks):
    return {
        "schema": "slm-suite.board-spec/1",
        "name": "hostile",
        "domains": [{"name": "commonsense", "tasks": [{"task": t} for t in tasks]}],
        "cost": {"hardware": {"backend": "llama.cpp"}},
    }


def board_of(tmp_path, names, tasks=("t_a",), **build_args):
    """One run per name (folders m0, m1, ...: the name is the cost record's model name)."""
    for i, name in enumerate(names):
        outcomes = {t: synth.outcomes(20, 5 + i % 10) for t in tasks}
        synth.make_run(tmp_path / "runs", f"m{i}", outcomes, cost=synth.cost_record(name, 5.0 + i, 10**8 + i))
    out = build([tmp_path / "runs"], spec=spec_for(tasks), out=tmp_path / "board", **build_args)
    return out, json.loads((out / "leaderboard.json").read_text())


# ---- CSV: formula injection (OWASP) ---------------------------------------------------------


def test_csv_text_cells_never_start_a_formula(tmp_path):
    out, board = board_of(tmp_path, FORMULA_NAMES, tasks=("t_a", "=t_b", "-t_c"))
    rows = list(csv.reader((out / "leaderboard.csv").open(newline="")))
    for line in rows:
        for cell in line:
            if cell.startswith("'"):
                continue
            try:
                float(cell)
                continue  # a number, written as one
            except ValueError:
                pass
            assert not cell.startswith(FORMULA_START) and not cell.lstrip().startswith(FORMULA_START), cell
    # every hostile name is there, quoted once, and comes back intact without its quote
    models = [line[1] for line in rows[1:]]
    assert sorted(m[1:] for m in models) == sorted(FORMULA_NAMES)
    assert "'=t_b:acc,none" in rows[0] and "'-t_c_low" in rows[0]
    assert [r["model"] for r in board["rows"]] == [m[1:] for m in models]  # the JSON keeps the real name


def test_csv_numbers_stay_numbers_even_when_negative(tmp_path):
    # an ICL gain below 0 (the 5-shot run worse): the CSV carries it as a plain number
    same = "slm_icl_arc_challenge"
    tasks = {
        "t_a": synth.outcomes(40, 20),
        f"{same}_0shot": synth.outcomes(40, 30),
        f"{same}_5shot": synth.outcomes(40, 10),
    }
    synth.make_run(
        tmp_path / "runs",
        "m",
        tasks,
        cost=synth.cost_record("-m", 5.0, 10**8),
        docs_of={f"{same}_0shot": same, f"{same}_5shot": same},
        n_shot={f"{same}_5shot": 5},
    )
    spec = dict(spec_for(["t_a"]), icl={"title": "ICL gain", "match": "slm_icl_*shot"})
    out = build([tmp_path / "runs"], spec=spec, out=tmp_path / "b", html=False)
    line = next(csv.DictReader((out / "leaderboard.csv").open(newline="")))
    assert line["model"] == "'-m"
    assert float(line["icl_gain"]) == pytest.approx(-0.5) and line["icl_gain"].startswith("-")
    assert float(line["icl_gain_low"]) < -0.5
    assert csv_cell(-0.25) == -0.25 and csv_cell(0) == 0 and csv_cell(None) is None
    assert csv_cell("-0.25") == "'-0.25"  # text is escaped even when it looks numeric (documented)
    assert csv_cell("smollm2-135m") == "smollm2-135m" and csv_cell("a=b") == "a=b"


# ---- Markdown: no raw HTML, code spans or table breaks from the data ------------------------


class _Cells(HTMLParser):
    """Tags of a rendered page and the text of each table row's cells."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.tags, self.rows, self._cell = set(), [], None

    def handle_starttag(self, tag, attrs):
        self.tags.add(tag)
        if tag == "tr":
            self.rows.append([])
        elif tag in ("td", "th"):
            self._cell = []

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None:
            self.rows[-1].append("".join(self._cell))
            self._cell = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)


def render_gfm(text: str) -> str:
    """CommonMark + GFM tables with raw HTML allowed: escaping must not rely on a sanitiser."""
    markdown_it = pytest.importorskip("markdown_it", reason="needs markdown-it-py to render Markdown")
    renderer = markdown_it.MarkdownIt("commonmark", {"html": True}).enable(["table", "strikethrough"])
    return renderer.render(text)


def test_markdown_carries_hostile_names_without_html_code_or_table_breaks(tmp_path):
    out, _ = board_of(tmp_path, MARKDOWN_NAMES, tasks=("t_a", "t|<b>x&y"))
    md = (out / "leaderboard.md").read_text()
    assert "<" not in md and ">" not in md and "`" not in md
    table = [line for line in md.splitlines() if line.startswith("| ")]
    cells = lambda line: [c.strip() for c in re.split(r"(?<!\\)\|", line)[1:-1]]  # noqa: E731  GFM's split
    width = len(cells(table[0]))
    body = [cells(line) for line in table[1 : 1 + len(MARKDOWN_NAMES)]]
    assert all(len(c) == width for c in body)  # one line per model, no pipe splits a cell
    shown = sorted(html.unescape(re.sub(r"\\(.)", r"\1", c[1])) for c in body)
    assert shown == sorted(" ".join(n.replace("\r\n", "\n").split("\n")) for n in MARKDOWN_NAMES)


def test_markdown_renders_hostile_names_as_text(tmp_path):
    out, _ = board_of(tmp_path, MARKDOWN_NAMES, tasks=("t_a", "t|<b>x&y"))
    page = _Cells()
    page.feed(render_gfm((out / "leaderboard.md").read_text()))
    assert page.tags <= {
        "h2",
        "h3",
        "p",
        "table",
        "thead",
        "tbody",
        "tr",
        "th",
        "td",
        "ul",
        "li",
        "strong",
        "blockquote",
    }
    main = [r for r in page.rows if len(r) == len(page.rows[0])]
    header, body = main[0], main[1 : 1 + len(MARKDOWN_NAMES)]
    assert header[:3] == ["#", "model", "overall"]
    flat = lambda s: " ".join(s.replace("\r\n", "\n").split("\n"))  # noqa: E731
    assert sorted(r[1] for r in body) == sorted(flat(n) for n in MARKDOWN_NAMES)
    for r in body:  # the pipes stayed inside their cell: ranks and scores are where they belong
        assert r[0].lstrip("=").isdigit() and r[2].split()[0].replace(".", "").isdigit()
    tasks = next(r for r in page.rows if r and r[0] == "t|<b>x&y")
    assert tasks[1] == "commonsense"


@pytest.mark.parametrize(
    "name, expected",
    [
        ("<img src=x onerror=alert(1)>", "&lt;img src=x onerror=alert(1)&gt;"),
        ("a`b", "a&#96;b"),
        ("x|y", "x\\|y"),
        ("one\ntwo\r\nthree", "one two three"),
        ("[x](javascript:y)", "\\[x\\](javascript:y)"),
        ("slm_arc_easy", "slm_arc_easy"),
        ("_em_", "\\_em\\_"),
        ("a & b", "a &amp; b"),
    ],
)
def test_md_text_escapes_by_hand(name, expected):
    assert md_text(name) == expected


def test_html_page_escapes_hostile_names(tmp_path):
    out, _ = board_of(tmp_path, MARKDOWN_NAMES[:3] + FORMULA_NAMES[:2])
    html = (out / "index.html").read_text()
    assert "<img src=x" not in html and "<script>alert" not in html
    assert "&lt;img src=x onerror=alert(1)&gt;" in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html


# ---- no local paths in anything published ---------------------------------------------------


def _strings(x):
    if isinstance(x, str):
        yield x
    elif isinstance(x, dict):
        for k, v in x.items():
            yield from _strings(k)
            yield from _strings(v)
    elif isinstance(x, list):
        for v in x:
            yield from _strings(v)


def test_published_outputs_name_no_local_path(tmp_path):
    home = Path.home()
    runs = tmp_path / "runs"
    model_file = home / "models" / "secret-model.Q4_K_M.gguf"
    for i, name in enumerate(["alpha", "beta"]):
        rec = synth.cost_record(name, 5.0 + i, 10**8)
        rec["model"]["path"] = str(model_file)
        if i == 0:
            rec["model"]["sha256"] = "ab" * 32
        synth.make_run(runs, name, {"t_a": synth.outcomes(20, 5 + i), "t_b": synth.outcomes(20, 9)}, cost=rec)
    # a run of no board task, one from other hardware: both noted, with their file names
    synth.make_run(runs, "stray", {"t_z": [1.0, 0.0]})
    gpu = synth.cost_record("gamma", 1.0, 100)
    gpu["model"].update(backend="vllm", path=str(home / "ckpt" / "gamma"))
    synth.make_run(runs, "gamma", {"t_a": synth.outcomes(20, 3), "t_b": synth.outcomes(20, 3)}, cost=gpu)
    for path in (p for p in runs.rglob("results_*.json") if not p.name.endswith(".cost.json")):
        res = json.loads(path.read_text())
        res["config"]["model_args"] = {"model": str(model_file), "n_ctx": 2048}
        for cfg in res["configs"].values():  # lm-eval records each task YAML's absolute path
            cfg["dataset_kwargs"]["config_source"] = str(tmp_path / "task_configs" / "t.yaml")
        path.write_text(json.dumps(res))
    spec_file = tmp_path / "my-spec.yaml"
    spec_file.write_text(json.dumps(spec_for(["t_a", "t_b"])))
    out = build([runs], spec=str(spec_file), out=tmp_path / "board")
    board = json.loads((out / "leaderboard.json").read_text())
    assert any("stray" in n for n in board["notes"]) and any("other hardware" in n for n in board["notes"])

    forbidden = [str(tmp_path), str(tmp_path.resolve())] + ([str(home)] if home != Path("/") else [])
    for s in _strings(board):
        assert not any(f in s for f in forbidden), s
    for name in ("leaderboard.json", "leaderboard.csv", "leaderboard.md", "index.html"):
        text = (out / name).read_text()
        assert not any(f in text for f in forbidden), name
        assert "secret-model.Q4_K_M.gguf" in text or name in ("leaderboard.csv", "leaderboard.md")

    rows = {r["model"]: r for r in board["rows"]}
    files = rows["alpha"]["provenance"]["files"]
    results = runs / "alpha" / "results_2026-01-01T00-00-00.000000.json"
    assert files[0]["path"] == "runs/alpha/results_2026-01-01T00-00-00.000000.json"
    assert files[0]["sha256"] == hashlib.sha256(results.read_bytes()).hexdigest()[:16]
    assert files[0]["model_args"] == {"model": "secret-model.Q4_K_M.gguf", "n_ctx": 2048}
    model = rows["alpha"]["provenance"]["model"]
    assert model["file"] == "secret-model.Q4_K_M.gguf" and "path" not in model
    assert model["sha256"] == "ab" * 32
    assert rows["beta"]["provenance"]["model"]["sha256"] is None
    assert board["spec"]["source"] == "my-spec.yaml"
    assert board["columns"][0]["dataset"]["config_source"] == "t.yaml"
    # the originals keep their paths: only what is published changes
    assert str(model_file) in results.with_suffix(".cost.json").read_text()


def test_a_lone_results_file_is_named_by_its_folder(tmp_path):
    from slm_tasks.leaderboards.publish import run_names, strip_paths

    a = tmp_path / "x" / "m1" / "results_1.json"
    b = tmp_path / "x" / "m2" / "results_2.json"
    assert run_names([a]) == {a: "m1/results_1.json"}
    assert run_names([a, b]) == {a: "x/m1/results_1.json", b: "x/m2/results_2.json"}
    assert (
        strip_paths("cost from /home/u/runs/r.json is from other hardware") == "cost from r.json is from other hardware"
    )
    for keep in ("decode (ms/token)", "mean(1/choices)", "see https://example.org/a/b", "sqrt(sum se^2)/k"):
        assert strip_paths(keep) == keep


# ---- intervals and ranks ---------------------------------------------------------------------


def wilson_upper_at_zero(n: int) -> float:
    """Wilson's upper end for 0 successes in n: z^2 / (n + z^2)."""
    return Z2 / (n + Z2)


def test_wilson_at_zero_matches_the_closed_form():
    assert stats.wilson(0, 3) == (0.0, pytest.approx(0.5615, abs=1e-4))  # the "[0.0, 56.1]" of 0 of 3
    assert stats.wilson(0, 5)[1] == pytest.approx(wilson_upper_at_zero(5))


def test_one_part_carries_its_interval_and_several_combine_by_mover():
    zero5 = stats.Estimate(0.0, *stats.wilson(0, 5), "wilson", 0.0, 5)
    one = stats.mean_estimate([zero5], 0.95)
    assert (one.low, one.high, one.method, one.n) == (0.0, zero5.high, "wilson", 5)
    two = stats.mean_estimate([zero5, zero5], 0.95)
    # MOVER: 0 + sqrt(2 * 0.434483^2) / 2 = 0.307225; never the bootstrap's [0, 0]
    assert two.method == "mover" and two.low == 0.0
    assert two.high == pytest.approx(wilson_upper_at_zero(5) / math.sqrt(2))
    assert two.high == pytest.approx(0.307225, abs=1e-6)
    # symmetric parts: exactly the normal interval of the mean, sqrt(0.05^2 + 0.05^2) / 2
    sym = [stats.Estimate(0.5, *stats.normal_interval(0.5, 0.05), "stderr", 0.05) for _ in range(2)]
    mean = stats.mean_estimate(sym, 0.95)
    lo, hi = stats.normal_interval(0.5, math.sqrt(2) * 0.05 / 2)
    assert (mean.low, mean.high) == (pytest.approx(lo), pytest.approx(hi))
    assert mean.se == pytest.approx(0.0353553, abs=1e-6)
    # a part without an interval leaves the mean without one
    assert stats.mean_estimate([sym[0], stats.Estimate(0.5, None, None, "none")], 0.95).method == "none"


def test_stderr_intervals_are_clamped_to_the_metric_range():
    rng = np.random.default_rng(0)
    low = stats.task_estimate(0.02, None, 0.05 / 1.959963984540054, 0.95, 10, rng)
    assert (low.low, low.high) == (0.0, pytest.approx(0.07))  # 2% +- 5 points, not [-3, 7]
    high = stats.task_estimate(0.99, None, 0.02, 0.95, 10, rng)
    assert high.high == 1.0 and high.low == pytest.approx(0.99 - 1.959963984540054 * 0.02)


def test_normalised_interval_stays_within_its_floor_and_ceiling():
    e = stats.normalise(stats.Estimate(0.3, 0.2, 0.4, "wilson", 0.05), 0.25)
    # (0.3 - 0.25) / 0.75 * 100 = 6.667; the low end is below chance: floored at 0
    assert (e.value, e.low, e.high) == (pytest.approx(6.6667, abs=1e-4), 0.0, pytest.approx(20.0))
    parts = [stats.normalise(stats.Estimate(0.2, 0.1, 0.35, "wilson", 0.06), 0.25)] * 3
    mean = stats.mean_estimate(parts, 0.95)
    # each part's upper end is (0.35 - 0.25) / 0.75 * 100 = 13.33 above its 0: sqrt(3 * 13.33^2) / 3
    assert mean.value == 0.0 and mean.low == 0.0
    assert mean.high == pytest.approx(math.sqrt(3) * (0.1 / 0.75 * 100) / 3)


def test_a_one_task_domain_shows_its_tasks_interval_on_the_board(tmp_path):
    spec = {
        "schema": "slm-suite.board-spec/1",
        "name": "t",
        "domains": [
            {"name": "commonsense", "tasks": [{"task": "t_a"}]},
            {"name": "math", "tasks": [{"task": "t_m1"}, {"task": "t_m2"}]},
        ],
    }
    synth.make_run(
        tmp_path / "runs",
        "zero",
        {"t_a": synth.outcomes(3, 0), "t_m1": synth.outcomes(5, 0), "t_m2": synth.outcomes(5, 0)},
    )
    synth.make_run(
        tmp_path / "runs",
        "nosamples",
        {"t_a": [0.0, 0.0, 1.0, 0.0, 0.0], "t_m1": synth.outcomes(5, 1), "t_m2": synth.outcomes(5, 0)},
        samples=False,
    )
    board = json.loads(
        (build([tmp_path / "runs"], spec=spec, out=tmp_path / "b", html=False) / "leaderboard.json").read_text()
    )
    row = next(r for r in board["rows"] if r["model"] == "zero")
    task, domain = row["tasks"]["t_a"], row["domains"]["commonsense"]
    assert (domain["low"], domain["high"], domain["method"]) == (task["low"], task["high"], "wilson")
    assert task["high"] == pytest.approx(wilson_upper_at_zero(3), abs=1e-6)  # 56.1%, as the task shows
    math_ = row["domains"]["math"]
    assert math_["method"] == "mover" and math_["high"] == pytest.approx(0.307225, abs=1e-6)
    over = row["overall"]  # MOVER over the two domains: sqrt(0.561^2 + 0.307^2) / 2
    assert over["high"] == pytest.approx(math.hypot(wilson_upper_at_zero(3), 0.307225) / 2, abs=1e-5)
    for r in board["rows"]:
        for e in [r["overall"], *r["domains"].values(), *r["tasks"].values()]:
            assert 0.0 <= e["low"] <= e["value"] <= e["high"] <= 1.0, (r["model"], e)
        n = r["normalized"]
        for e in [n["overall"], *n["domains"].values(), *n["tasks"].values()]:
            assert 0.0 <= e["low"] <= e["value"] <= e["high"] <= 100.0, (r["model"], e)
    # no samples: lm-eval's stderr at 1 of 5 gives a normal interval that would reach below 0
    ns = next(r for r in board["rows"] if r["model"] == "nosamples")["tasks"]["t_a"]
    assert ns["method"] == "stderr" and ns["low"] == 0.0 and ns["value"] - 1.96 * ns["se"] < 0


def test_equal_scores_share_a_rank(tmp_path):
    rows = [
        {"model": m, "overall": {"value": v}}
        for m, v in [("a", 0.5), ("b", 0.5), ("c", 0.5), ("d", 0.4), ("e", 0.4), ("f", 0.1), ("g", None)]
    ]
    rank_with_ties(rows)
    assert [r["rank"] for r in rows] == [1, 1, 1, 4, 4, 6, None]
    assert [r["tied"] for r in rows] == [True, True, True, True, True, False, False]
    for name in ("w", "x", "y", "z"):  # four identical runs: one shared first place
        synth.make_run(tmp_path / "runs", name, {"t_a": synth.outcomes(30, 12)})
    synth.make_run(tmp_path / "runs", "v", {"t_a": synth.outcomes(30, 3)})
    out = build([tmp_path / "runs"], spec=spec_for(["t_a"]), out=tmp_path / "b")
    board = json.loads((out / "leaderboard.json").read_text())
    assert [(r["model"], r["rank"], r["tied"]) for r in board["rows"]] == [
        ("w", 1, True),
        ("x", 1, True),
        ("y", 1, True),
        ("z", 1, True),
        ("v", 5, False),
    ]
    md = (out / "leaderboard.md").read_text()
    assert md.count("| =1 | ") == 4 and "| 5 | v |" in md
    assert [line[0] for line in csv.reader((out / "leaderboard.csv").open())][1:] == ["1", "1", "1", "1", "5"]


def test_pareto_badges_say_frontier_not_fast_or_small(tmp_path):
    # "slow" scores best and is slowest: on the latency frontier, yet it is not fast
    for name, k, decode, peak in (("slow", 18, 50.0, 9e8), ("quick", 8, 2.0, 9.5e8), ("mid", 6, 10.0, 1e8)):
        synth.make_run(
            tmp_path / "runs", name, {"t_a": synth.outcomes(20, k)}, cost=synth.cost_record(name, decode, int(peak))
        )
    out = build([tmp_path / "runs"], spec=spec_for(["t_a"]), out=tmp_path / "b")
    html = (out / "index.html").read_text()
    assert ">fast<" not in html and ">small<" not in html
    assert html.count(">Pareto: score vs latency</span>") == 2  # slow and quick
    assert html.count(">Pareto: score vs memory</span>") == 2  # slow and mid
    md = (out / "leaderboard.md").read_text()
    assert "- Pareto: score vs latency (decode latency (ms/token)): slow, quick" in md
    assert "- Pareto: score vs memory (peak memory (GB)): slow, mid" in md
    line = next(csv.DictReader((out / "leaderboard.csv").open()))
    assert (line["model"], line["pareto_latency"], line["pareto_memory"]) == ("slow", "True", "True")
