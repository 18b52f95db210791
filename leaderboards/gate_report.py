"""The release gate's verdict and its reports: gate.md (pull-request comments), gate.json and
gate.junit.xml (CI).

Verdict: "failed" when any check failed; else "not shown" when any check could not show the
candidate within its bound (or the comparison is a --limit smoke run); else "passed".
Exit codes: 0 passed, 1 failed, 2 invalid input, 3 not shown.

Data (model, task and file names) never shapes the Markdown: it goes into code spans fenced
longer than any backtick run in it, on one line, pipes escaped inside tables; free text is
backslash-escaped, so no raw HTML, link or table cell comes from data. Reports name input
files by name and SHA-256, never by absolute path.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import math
import re
import xml.etree.ElementTree as ET
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from slm_tasks import __version__
from slm_tasks.leaderboards.gate_checks import FAIL, NOT_SHOWN, PASS, SKIPPED, Check, unit

RESULT_SCHEMA = "slm-suite.gate-result/1"
EXIT_PASSED, EXIT_FAILED, EXIT_INVALID, EXIT_NOT_SHOWN = 0, 1, 2, 3
PASSED, FAILED = "passed", "failed"
ICONS = {PASS: "✅", FAIL: "❌", NOT_SHOWN: "⚠️", SKIPPED: "⏭️"}
HEADS = {PASSED: "✅ **Gate passed**", FAILED: "❌ **Gate failed**", NOT_SHOWN: "⚠️ **Gate not shown**"}

# ---- escaping ----------------------------------------------------------------------------------

_BREAKS = re.compile(r"[\r\n\v\f\x1c-\x1e\x85\u2028\u2029]+")
_CONTROL = re.compile(r"[\x00-\x08\x0e-\x1b\x1f\x7f-\x84\x86-\x9f]")
_MD_PUNCT = re.compile(r"([\\`*_\[\]<>|#~!&])")
_XML_INVALID = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff\ud800-\udfff]")


def one_line(text: Any) -> str:
    """Text on one line without control characters (newlines become spaces)."""
    return _CONTROL.sub("", _BREAKS.sub(" ", str(text))).strip()


def md_code(text: Any, table: bool = False) -> str:
    """``text`` as a Markdown code span it cannot leave: a fence longer than its longest run of
    backticks, padded where it starts or ends with a backtick; in a table cell, pipes escaped
    (GFM splits cells before it reads code spans)."""
    s = one_line(text)
    if not s:
        return "—"
    fence = "`" * (max((len(run) for run in re.findall(r"`+", s)), default=0) + 1)
    if table:
        s = s.replace("|", "\\|")
    pad = " " if s[0] == "`" or s[-1] == "`" or (s[0] == " " and s[-1] == " ") else ""
    return f"{fence}{pad}{s}{pad}{fence}"


def md_text(text: Any) -> str:
    """Plain text for Markdown: one line, every character that could start markup escaped."""
    return _MD_PUNCT.sub(r"\\\1", one_line(text))


def xml_text(text: Any) -> str:
    """Text XML 1.0 can carry (ElementTree escapes the rest)."""
    return _XML_INVALID.sub("", str(text))


def describe_files(paths) -> list[dict[str, str]]:
    """Input files as reports name them: a path relative to the working folder when inside
    it (else the file name alone) and the SHA-256 of the content."""
    out = []
    cwd = Path.cwd().resolve()
    for p in sorted({Path(p) for p in paths}, key=str):
        try:
            name = str(p.resolve().relative_to(cwd))
        except ValueError:
            name = p.name
        try:
            digest = hashlib.sha256(p.read_bytes()).hexdigest()
        except OSError:
            digest = None
        out.append({"file": name, "sha256": digest})
    return out


# ---- the verdict and its reports ------------------------------------------------------------------


@dataclass
class GateResult:
    checks: list[Check]
    baseline: dict[str, Any]  # model, files ({file, sha256}), tasks
    candidate: dict[str, Any]
    policy: dict[str, Any]
    notes: list[str]
    smoke: bool = False  # made from --limit runs: accuracy can fail, never pass

    def count(self, status: str) -> int:
        return sum(c.status == status for c in self.checks)

    @property
    def verdict(self) -> str:
        if self.count(FAIL):
            return FAILED
        if self.count(NOT_SHOWN) or self.smoke or not self.count(PASS):
            return NOT_SHOWN
        return PASSED

    @property
    def passed(self) -> bool:
        return self.verdict == PASSED

    @property
    def exit_code(self) -> int:
        return {PASSED: EXIT_PASSED, FAILED: EXIT_FAILED, NOT_SHOWN: EXIT_NOT_SHOWN}[self.verdict]

    @property
    def failures(self) -> list[Check]:
        return [c for c in self.checks if c.status == FAIL]

    @property
    def not_shown(self) -> list[Check]:
        return [c for c in self.checks if c.status == NOT_SHOWN]

    @property
    def reason(self) -> str:
        n = len(self.checks)
        skipped = f"; {self.count(SKIPPED)} skipped (budgets.missing: skip)" if self.count(SKIPPED) else ""
        if self.verdict == FAILED:
            return f"{self.count(FAIL)} of {n} checks failed{skipped}"
        if self.verdict == PASSED:
            return f"all {self.count(PASS)} checks shown within their bounds{skipped}"
        parts = []
        if self.smoke:
            parts.append("smoke comparison (--limit runs): accuracy can show a regression, never a pass")
        if self.count(NOT_SHOWN):
            parts.append(
                f"{self.count(NOT_SHOWN)} of {n} checks not shown (too few documents or runs, or a "
                f"spread too wide, to show the candidate within the bound)"
            )
        return "; ".join(parts or ["no check could be judged"]) + skipped

    def to_json(self) -> str:
        doc = {
            "schema": RESULT_SCHEMA,
            "generator": f"slm-suite {__version__}",
            "generated_at": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
            "verdict": self.verdict,
            "passed": self.passed,
            "exit_code": self.exit_code,
            "reason": self.reason,
            "smoke": self.smoke,
            "baseline": self.baseline,
            "candidate": self.candidate,
            "policy": self.policy,
            "checks": [dict(asdict(c), passed=c.passed) for c in self.checks],
            "notes": self.notes,
        }
        return json.dumps(doc, indent=2, default=_json_value) + "\n"

    def to_markdown(self) -> str:
        return _markdown(self)

    def to_junit(self) -> str:
        return _junit(self)


def _json_value(x):
    return None if isinstance(x, float) and not math.isfinite(x) else str(x)


def _pts(x, signed=False):
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "—"
    return f"{100 * x:+.1f}" if signed else f"{100 * x:.1f}"


def _p(x):
    return "—" if x is None else (f"{x:.2g}" if x < 0.001 else f"{x:.3f}")


def _files(side: dict) -> str:
    return ", ".join(f"{md_code(f['file'])} (sha256 {(f.get('sha256') or '—')[:12]})" for f in side["files"])


def _status_cell(c: Check) -> str:
    text = c.status if c.status != NOT_SHOWN or not c.reason else f"not shown: {c.reason}"
    return f"{ICONS[c.status]} {md_text(text)}"


def _evidence(c: Check) -> str:
    if c.basis == "one figure":
        return "one figure"
    if c.basis != "runs":
        return "—"
    runs = f"{c.runs['candidate']}" + (f" vs {c.runs['baseline']}" if c.runs.get("baseline") else "")
    key = c.name.split()[0]

    def fmt(x):
        return "—" if x is None else f"{x:.3f}" if c.bounds_of == "ratio" else unit(key, x)

    return f"{c.bounds_of} [{fmt(c.low)}, {fmt(c.high)}], {runs} runs"


def _markdown(r: GateResult) -> str:
    pol = r.policy
    lvl = f"{100 * pol['level']:g}%"
    conf = f"{100 * (1 - pol['alpha']):g}%"
    cand, base = md_code(r.candidate["model"]), md_code(r.baseline["model"])
    out = [
        f"### Release gate: {cand} vs baseline {base}",
        "",
        f"{HEADS[r.verdict]}: {md_text(r.reason)} (exit code {r.exit_code})",
        "",
    ]
    if r.smoke:
        out += [
            "> **Smoke comparison**: made from `--limit` runs (a subset of each task's documents); "
            "a regression can be shown, a pass cannot.",
            "",
        ]
    out += [
        f"Baseline: {_files(r.baseline)}  ",
        f"Candidate: {_files(r.candidate)}",
        "",
        f"Accuracy: paired tests on shared documents. A task fails when a drop beyond its margin is "
        f"shown (Holm-corrected at α = {pol['alpha']}); it passes when non-inferiority is shown (the "
        f"{lvl} interval's lower end above −margin); otherwise it is not shown. Differences in points "
        f"(candidate − baseline).",
        "",
    ]
    acc = [c for c in r.checks if c.kind == "accuracy"]
    if acc:
        out += [
            "| | task | n | baseline | candidate | difference | interval | margin | test | p | p (Holm) |",
            "|---|:---|---:|---:|---:|---:|:---|---:|:---|---:|---:|",
        ]
        for c in acc:
            out.append(
                f"| {_status_cell(c)} | {md_code(c.name, table=True)} | {c.n} | {_pts(c.baseline)} | "
                f"{_pts(c.candidate)} | {_pts(c.observed, True)} | [{_pts(c.low, True)}, "
                f"{_pts(c.high, True)}] | {_pts(c.margin)} | {md_text(c.method)} | {_p(c.p_value)} | "
                f"{_p(c.p_holm)} |"
            )
    bud = [c for c in r.checks if c.kind == "budget"]
    if bud:
        out += [
            "",
            f"Budgets: judged against the run-to-run spread (one-sided {conf} bounds) where every "
            f"run's value is recorded; otherwise on one figure, as the evidence column says.",
            "",
            "| | budget | baseline | candidate | limit | evidence |",
            "|---|:---|---:|---:|---:|:---|",
        ]
        for c in bud:
            key = c.name.split()[0]
            out.append(
                f"| {_status_cell(c)} | {md_code(c.name, table=True)} | {unit(key, c.baseline)} | "
                f"{unit(key, c.candidate)} | {unit(key, c.limit)} | {md_text(_evidence(c))} |"
            )
    for title, items in (("Failing checks", r.failures), ("Not shown", r.not_shown)):
        if items:
            out += ["", f"**{title}**", ""] + [f"- {md_text(c.message)}" for c in items]
    if r.notes:
        out += ["", "Notes:", ""] + [f"- {md_text(n)}" for n in r.notes]
    out += ["", "Exit codes: 0 passed, 1 failed, 2 invalid input, 3 not shown."]
    return "\n".join(out) + "\n"


def _junit(r: GateResult) -> str:
    """Not-shown checks are <failure type="not-shown">, not <skipped>: CI test reporters show a
    skipped test as green/neutral, and a check that could not be shown must block like a
    failure unless the job chooses otherwise (the type tells the two apart)."""
    bad = [c for c in r.checks if c.status in (FAIL, NOT_SHOWN)]
    suite = ET.Element(
        "testsuite",
        name="slm-suite gate",
        tests=str(len(r.checks)),
        failures=str(len(bad)),
        errors="0",
        skipped=str(r.count(SKIPPED)),
    )
    props = ET.SubElement(suite, "properties")
    for name, value in (
        ("verdict", r.verdict),
        ("exit_code", r.exit_code),
        ("reason", r.reason),
        ("smoke", str(r.smoke).lower()),
        ("baseline", r.baseline["model"]),
        ("candidate", r.candidate["model"]),
    ):
        ET.SubElement(props, "property", name=name, value=xml_text(one_line(value)))
    for c in r.checks:
        case = ET.SubElement(suite, "testcase", classname=f"slm_suite.gate.{c.kind}", name=xml_text(one_line(c.name)))
        message = xml_text(one_line(c.message))
        if c.status == FAIL:
            node = ET.SubElement(case, "failure", message=message, type=f"{c.kind}-regression")
        elif c.status == NOT_SHOWN:  # the message says "not shown" and why
            node = ET.SubElement(case, "failure", message=message, type="not-shown")
        elif c.status == SKIPPED:
            node = ET.SubElement(case, "skipped", message=message)
        else:
            node = ET.SubElement(case, "system-out")
            node.text = message
            continue
        node.text = xml_text(json.dumps(dict(asdict(c), passed=c.passed), indent=2, default=_json_value))
    root = ET.Element("testsuites", name="slm-suite gate", tests=str(len(r.checks)), failures=str(len(bad)))
    root.append(suite)
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"
