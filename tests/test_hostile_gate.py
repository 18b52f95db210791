"""Hostile input to `slm-suite gate`: names that try to break out of gate.md, smoke runs, and
a user's files around the reports. Each case checks the exit code, the one-line error where
there is one, and that the user's files are byte-identical afterwards."""

from __future__ import annotations

import importlib.util
import json
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from slm_tasks.leaderboards.gate_report import md_code, md_text, one_line


def _load(name: str):
    spec = importlib.util.spec_from_file_location(f"hostile_{name}", Path(__file__).with_name(f"{name}.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


_gate_tests = _load("test_gate")  # its run builders and tiny board spec
synth, paired, SPEC = _gate_tests.synth, _gate_tests.paired, _gate_tests.SPEC


@pytest.fixture(autouse=True)
def small_spec(monkeypatch):
    import slm_tasks.leaderboards.release_gate as g
    from slm_tasks.leaderboards.spec import parse_spec

    monkeypatch.setattr(g, "load_spec", lambda name: parse_spec(SPEC, "test spec"))


EVIL_NAMES = [
    "a`b",
    "``double`` ticks",
    "`",
    " `lead and trail` ",
    "pipe|in|name",
    "<script>alert(1)</script>",
    "<img src=x onerror=alert(1)>",
    "line one\nline two\r\n| injected | row |",
    "[link](javascript:alert(1))",
    "back\\|slash pipe",
    "**bold** _it_ # hash &amp; &lt;",
    "tab\tand\x00nul\x1bescape",
]


def code_spans(line: str) -> tuple[list[str], str]:
    """CommonMark code spans of one line: (their contents, the text outside them). A span
    opens with a run of n backticks and closes at the next run of exactly n."""
    spans, outside, i = [], [], 0
    while i < len(line):
        if line[i] == "`" and (i == 0 or line[i - 1] != "\\"):
            n = len(re.match(r"`+", line[i:]).group())
            close = next((m for m in re.finditer(r"`+", line[i + n :]) if len(m.group()) == n), None)
            if close is None:
                outside.append(line[i : i + n])
                i += n
                continue
            content = line[i + n : i + n + close.start()]
            if content.startswith(" ") and content.endswith(" ") and content.strip():
                content = content[1:-1]
            spans.append(content)
            i += n + close.end()
        else:
            outside.append(line[i])
            i += 1
    return spans, "".join(outside)


def unescaped_pipes(line: str) -> int:
    return len(re.findall(r"(?<!\\)\|", line))


def write_runs(tmp_path, base_name: str, cand_name: str, task: str = "t_a", n: int = 400, limit=None):
    base, cand = paired(n * 3 // 4, 0, 0, n - n * 3 // 4)
    kw = {} if limit is None else {"limit": limit}
    b = synth.make_run(
        tmp_path / "runs" / "base", "base", {task: base}, cost=synth.cost_record(base_name, 10.0, 400_000_000), **kw
    )
    c = synth.make_run(
        tmp_path / "runs" / "cand", "cand", {task: cand}, cost=synth.cost_record(cand_name, 10.0, 400_000_000), **kw
    )
    return b, c


def policy_file(tmp_path, **extra) -> str:
    path = tmp_path / "policy.yaml"
    lines = [
        "schema: slm-suite.gate-policy/1",
        "spec: t",
        "margins: {default: 0.02}",
        "budgets: {decode_ms_per_token: {max_increase: 0.10}}",
    ]
    lines += [f"{k}: {json.dumps(v)}" for k, v in extra.items()]
    path.write_text("\n".join(lines) + "\n")
    return str(path)


def assert_markdown_holds(md: str, names: list[str]) -> None:
    """Every name sits whole inside one code span; nothing outside a span is raw HTML or a
    link; every table row has as many cells as its header."""
    lines = md.splitlines()
    heading = lines[0]
    spans, outside = code_spans(heading)
    assert spans == [one_line(n) for n in names]
    assert "<" not in outside and "](" not in outside
    for line in lines:
        spans, outside = code_spans(line)
        assert not re.search(r"(?<!\\)<[A-Za-z/!]", outside), line  # no raw HTML tag from data
        assert not re.search(r"(?<!\\)\]\(", outside), line  # no link
    table_rows = [ln for ln in lines if ln.startswith("|")]
    assert table_rows
    for ln in table_rows:  # the accuracy table's and the budget table's columns, no more
        assert unescaped_pipes(ln) - 1 in (11, 6), ln


@pytest.mark.parametrize("name", EVIL_NAMES)
def test_model_names_cannot_break_out_of_gate_md(tmp_path, slm_cli, user_files, name):
    b, c = write_runs(tmp_path, name, name + " candidate")
    kept = user_files(tmp_path / "runs")
    res = slm_cli(
        "gate", "--baseline", b, "--candidate", c, "--policy", policy_file(tmp_path), "--out", tmp_path / "report"
    )
    assert res.code == 0, res.err  # 400 identical documents, one-figure budget within +10%
    md = (tmp_path / "report" / "gate.md").read_text(encoding="utf-8")
    assert_markdown_holds(md, [name + " candidate", name])
    assert res.out == md
    # JUnit parses and carries the names on one line; JSON keeps the name as it was
    suite = ET.parse(tmp_path / "report" / "gate.junit.xml").getroot().find("testsuite")
    props = {p.get("name"): p.get("value") for p in suite.find("properties")}
    assert props["baseline"] == one_line(name)
    doc = json.loads((tmp_path / "report" / "gate.json").read_text())
    assert doc["baseline"]["model"] == name and doc["verdict"] == "passed"
    assert doc["policy"]["source"] == "policy.yaml"
    for report in ("gate.md", "gate.json", "gate.junit.xml"):  # no local path of this machine
        assert str(tmp_path) not in (tmp_path / "report" / report).read_text(encoding="utf-8")
    kept.assert_kept()


@pytest.mark.parametrize("task", ["t`a|b", "t<script>x", "t``|``"])
def test_task_names_cannot_break_the_tables(tmp_path, slm_cli, user_files, task):
    b, c = write_runs(tmp_path, "base-model", "cand-model", task=task)
    kept = user_files(tmp_path / "runs")
    res = slm_cli(
        "gate",
        "--baseline",
        b,
        "--candidate",
        c,
        "--policy",
        policy_file(tmp_path, tasks=[task]),
        "--out",
        tmp_path / "report",
    )
    assert res.code == 0, res.err
    md = (tmp_path / "report" / "gate.md").read_text(encoding="utf-8")
    assert_markdown_holds(md, ["cand-model", "base-model"])
    row = next(ln for ln in md.splitlines() if ln.startswith("| ✅") and "acc,none" in ln)
    spans, _ = code_spans(row)
    assert spans[0].replace("\\|", "|") == f"{task} acc,none"
    kept.assert_kept()


@pytest.mark.parametrize(
    "model",
    ["/home/someone/models/secret-model.Q4_K_M.gguf", "~/m/secret-model.gguf", "C:\\Users\\someone\\secret-model.gguf"],
)
def test_a_model_named_by_a_local_path_is_shown_by_its_file_name(tmp_path, slm_cli, model):
    b, c = write_runs(tmp_path, model, "cand-model")
    res = slm_cli(
        "gate", "--baseline", b, "--candidate", c, "--policy", policy_file(tmp_path), "--out", tmp_path / "report"
    )
    assert res.code == 0, res.err
    for report in ("gate.md", "gate.json", "gate.junit.xml"):
        text = (tmp_path / "report" / report).read_text(encoding="utf-8")
        assert "someone" not in text and "secret-model" in text


def test_escaping_helpers():
    assert md_code("a`b") == "``a`b``" and md_code("`") == "`` ` ``" and md_code("") == "—"
    assert md_code("x|y", table=True) == "`x\\|y`" and md_code("a\nb") == "`a b`"
    assert md_text("<b>") == "\\<b\\>" and md_text("[x](y)") == "\\[x\\](y)"


def test_limit_runs_are_refused_without_allow_limit(tmp_path, slm_cli, user_files):
    b, c = write_runs(tmp_path, "base-model", "cand-model", limit=400)
    kept = user_files(tmp_path)
    res = slm_cli(
        "gate", "--baseline", b, "--candidate", c, "--policy", policy_file(tmp_path), "--out", tmp_path / "report"
    )
    assert res.code == 2 and len(res.error_lines) == 1
    assert res.error_lines[0].startswith("slm-suite: error: ") and "--allow-limit" in res.error_lines[0]
    assert str(tmp_path) not in res.error_lines[0]  # named by file name
    assert not (tmp_path / "report").exists()
    kept.assert_kept()


@pytest.mark.parametrize("how", ["flag", "policy"])
def test_a_smoke_comparison_never_passes(tmp_path, slm_cli, user_files, how):
    b, c = write_runs(tmp_path, "base-model", "cand-model", limit=400)
    kept = user_files(tmp_path / "runs")
    extra = {"allow_limit": True} if how == "policy" else {}
    args = ["--allow-limit"] if how == "flag" else []
    res = slm_cli(
        "gate",
        "--baseline",
        b,
        "--candidate",
        c,
        "--policy",
        policy_file(tmp_path, **extra),
        "--out",
        tmp_path / "report",
        *args,
    )
    # identical outcomes on 400 documents would pass a complete comparison: a smoke one cannot
    assert res.code == 3
    md = (tmp_path / "report" / "gate.md").read_text()
    assert "⚠️ **Gate not shown**" in md and "**Smoke comparison**" in md and "Gate passed" not in md
    assert "not shown: smoke comparison" in md
    suite = ET.parse(tmp_path / "report" / "gate.junit.xml").getroot().find("testsuite")
    props = {p.get("name"): p.get("value") for p in suite.find("properties")}
    assert props["smoke"] == "true" and props["verdict"] == "not shown" and props["exit_code"] == "3"
    acc = suite.find("testcase[@classname='slm_suite.gate.accuracy']/failure")
    assert acc.get("type") == "not-shown" and "smoke comparison" in acc.get("message")
    assert json.loads((tmp_path / "report" / "gate.json").read_text())["smoke"] is True
    kept.assert_kept()


def test_a_smoke_comparison_still_fails_a_shown_regression(tmp_path, slm_cli):
    base, cand = paired(300, 40, 0, 60)
    b = synth.make_run(tmp_path / "base", "base-model", {"t_a": base}, limit=400)
    c = synth.make_run(tmp_path / "cand", "cand-model", {"t_a": cand}, limit=400)
    res = slm_cli(
        "gate", "--baseline", b, "--candidate", c, "--policy", policy_file(tmp_path), "--allow-limit", "--quiet"
    )
    assert res.code == 1 and res.out.startswith("gate failed")


def test_users_files_in_out_are_kept(tmp_path, slm_cli, user_files):
    b, c = write_runs(tmp_path, "base-model", "cand-model")
    out = tmp_path / "report"
    out.mkdir()
    (out / "notes.txt").write_text("my notes\n")
    (out / "sub").mkdir()
    (out / "sub" / "keep.bin").write_bytes(b"\x00\x01")
    kept = user_files(tmp_path)
    res = slm_cli("gate", "--baseline", b, "--candidate", c, "--policy", policy_file(tmp_path), "--out", out)
    if res.code == 2:  # a folder the gate did not make may be refused, with one line
        assert len(res.error_lines) == 1 and "report" in res.error_lines[0]
        kept.assert_kept()
    else:
        assert res.code == 0 and (out / "gate.md").is_file()
        written = {"report/gate.md", "report/gate.json", "report/gate.junit.xml"}
        written |= {str(p.relative_to(tmp_path)) for p in out.iterdir() if p.name.startswith(".")}
        kept.assert_kept(written)
