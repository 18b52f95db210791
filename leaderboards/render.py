"""Write a leaderboard document as JSON, CSV, Markdown and a self-contained HTML page.

Each export is escaped for its medium: CSV text cells cannot start a spreadsheet formula
(OWASP, CSV injection), Markdown cells carry no raw HTML, code span or table break from the
data; the HTML page is escaped by its template engine.
"""

from __future__ import annotations

import csv
import io
import json
import re
from typing import Any

from slm_tasks.leaderboards.board import MISSING

GB = 1e9


def fmt_score(x: float | None, pct: bool = True) -> str:
    if x is None:
        return MISSING
    return f"{100 * x:.1f}" if pct else f"{x:.1f}"


def fmt_interval(e: dict, pct: bool = True) -> str:
    if e.get("low") is None or e.get("high") is None:
        return ""
    return f"[{fmt_score(e['low'], pct)}, {fmt_score(e['high'], pct)}]"


def fmt_gain(e: dict | None) -> str:
    """A gain (ICL) in signed points."""
    return MISSING if not e or e.get("value") is None else f"{100 * e['value']:+.1f}"


def fmt_gain_interval(e: dict | None) -> str:
    if not e or e.get("low") is None or e.get("high") is None:
        return ""
    return f"[{100 * e['low']:+.1f}, {100 * e['high']:+.1f}]"


def fmt_cost(key: str, value: float | None) -> str:
    if value is None:
        return MISSING
    if key in ("peak_memory_bytes", "model_bytes"):
        return f"{value / GB:.3f}"
    if key == "energy_per_token_j":
        return f"{value:.4f}"
    if key in ("prefill_tok_s", "throughput_tok_s"):
        return f"{value:.1f}"
    return f"{value:.2f}" if value < 100 else f"{value:.0f}"


# OWASP: a cell starting with one of these is read as a formula by spreadsheets (the
# full-width forms too, by some); leading whitespace does not stop every reader.
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r", "\uff1d", "\uff0b", "\uff0d", "\uff20")


def csv_cell(value: Any) -> Any:
    """A text cell that a spreadsheet would read as a formula gets a leading single quote;
    numbers stay numbers (a negative score difference is not text)."""
    if isinstance(value, str) and (value[:1] in ("\t", "\r") or value.lstrip()[:1] in _FORMULA_START):
        return "'" + value
    return value


# Markdown: HTML-significant characters become entities, the inline syntax characters are
# backslash-escaped (CommonMark allows it for any ASCII punctuation), lines are joined.
_MD_ENTITIES = {"&": "&amp;", "<": "&lt;", ">": "&gt;", "`": "&#96;"}
# "_" inside a word never emphasises (GFM), so "slm_arc_easy" stays readable in the source
_MD_SYNTAX = re.compile(r"([\\*\[\]|~#]|(?<![A-Za-z0-9])_|_(?![A-Za-z0-9]))")


def md_text(value: Any) -> str:
    """Data shown as plain text in a GitHub-flavoured Markdown table cell or list item."""
    text = re.sub(r"[\r\n\x00-\x08\x0b\x0c\x0e-\x1f\x7f]+", " ", str(value))
    text = _MD_SYNTAX.sub(r"\\\1", text)
    return "".join(_MD_ENTITIES.get(ch, ch) for ch in text)


def rank_text(row: dict[str, Any]) -> str:
    """ "=2" for a rank shared with another model, "2" alone, "—" without an overall score."""
    if row["rank"] is None:
        return MISSING
    return f"={row['rank']}" if row.get("tied") else str(row["rank"])


# How the Pareto flags read: a position on a frontier, never a claim that a model is fast.
PARETO_BADGES = {"latency": "Pareto: score vs latency", "memory": "Pareto: score vs memory"}


def pareto_title(board: dict[str, Any], axis: str) -> str:
    label = board["pareto_axes"][axis].get("label") or axis
    return (
        f"on the Pareto frontier of overall score vs {label}: no other model is at least as good "
        f"on both and better on one (the model itself need not be fast or small)"
    )


def to_json(board: dict[str, Any]) -> str:
    return json.dumps(board, indent=2, sort_keys=False, default=str) + "\n"


def to_csv(board: dict[str, Any]) -> str:
    """One row per model; scores are fractions (0..1), empty cells where not measured."""
    buf = io.StringIO()
    head = ["rank", "model", "overall", "overall_low", "overall_high"]
    for d in board["domains"]:
        head += [d["domain"], f"{d['domain']}_low", f"{d['domain']}_high"]
    icl_keys = _icl_keys(board)
    for key, _ in icl_keys:
        head += [key, f"{key}_low", f"{key}_high"]
    for c in board["columns"]:
        head += [f"{c['task']}:{c['metric']}", f"{c['task']}_low", f"{c['task']}_high", f"{c['task']}_interval"]
    head += [c["id"] for c in board["cost_columns"]]
    head += ["score_per_gb", "pareto_latency", "pareto_memory"]
    # RFC 4180's CRLF: the writer then quotes a cell holding a lone CR as well as LF, so
    # neither can end a row early (with "\n" alone a CR in a name split the row)
    w = csv.writer(buf, lineterminator="\r\n")
    w.writerow([csv_cell(h) for h in head])
    blank = lambda x: "" if x is None else x  # noqa: E731
    for r in board["rows"]:
        line = [
            blank(r["rank"]),
            r["model"],
            blank(r["overall"]["value"]),
            blank(r["overall"]["low"]),
            blank(r["overall"]["high"]),
        ]
        for d in board["domains"]:
            e = r["domains"][d["domain"]]
            line += [blank(e["value"]), blank(e["low"]), blank(e["high"])]
        for _, pick in icl_keys:
            e = pick(r) or {}
            line += [blank(e.get("value")), blank(e.get("low")), blank(e.get("high"))]
        for c in board["columns"]:
            e = r["tasks"].get(c["task"])
            line += [blank(e["value"]), blank(e["low"]), blank(e["high"]), e["method"]] if e else ["", "", "", ""]
        line += [blank(r["cost"][c["id"]]["value"]) for c in board["cost_columns"]]
        line += [blank(r["efficiency"]["score_per_gb"]), blank(r["pareto"]["latency"]), blank(r["pareto"]["memory"])]
        w.writerow([csv_cell(x) for x in line])
    return buf.getvalue()


def to_markdown(board: dict[str, Any]) -> str:
    """A README-ready table (scores in %, 95% intervals in brackets) with column notes; every
    string from the data is escaped (:func:`md_text`)."""
    e = md_text
    lvl = f"{100 * board['intervals']['level']:.0f}%"
    out = [f"## {e(board['spec']['title'])}", ""]
    if board["smoke"]:
        out += [f"> **Smoke board** — {e(board['smoke_reason'])}.", ""]
    icl = board.get("icl")
    head = [d["title"] for d in board["domains"]] + ([icl["title"]] if icl else [])
    head = ["#", "model", "overall"] + [e(h) for h in head]
    head += [e(f"{c['title']} ({c['unit']})") for c in board["cost_columns"]]
    out.append("| " + " | ".join(head) + " |")
    out.append("|" + "|".join(["---:", ":---"] + ["---:"] * (len(head) - 2)) + "|")
    for r in board["rows"]:
        cells = [rank_text(r), e(r["model"]), _md_score(r["overall"])]
        cells += [_md_score(r["domains"][d["domain"]]) for d in board["domains"]]
        cells += [_md_gain(r["icl"]["mean"])] if icl else []
        cells += [fmt_cost(c["id"], r["cost"][c["id"]]["value"]) for c in board["cost_columns"]]
        out.append("| " + " | ".join(cells) + " |")
    out += [
        "",
        f"Scores in %, {lvl} intervals in brackets. Domain = plain mean of its tasks; "
        f"overall = plain mean of the capability domains"
        + (f"; {e(icl['title'])} in points, outside the overall" if icl else "")
        + ". Equal overall scores share a rank (=).",
        "",
    ]
    out += _md_pareto(board)
    if icl:
        out += _md_icl(board)
    out += [
        "### Tasks",
        "",
        "| task | domain | metric | shots | split | version | interval | random baseline |",
        "|:---|:---|:---|---:|:---|---:|:---|---:|",
    ]
    for c in board["columns"]:
        methods = sorted({r["tasks"][c["task"]]["method"] for r in board["rows"] if c["task"] in r["tasks"]})
        out.append(
            f"| {e(c['task'])} | {e(c['domain'])} | {e(c['metric'])} | {e(_s(c['shots']))} | "
            f"{e(_s(c['split']))} | {e(_s(c['version']))} | {e(', '.join(methods))} | "
            f"{c['random_baseline']:.3f} |"
        )
    if board["missing_tasks"]:
        missing = ", ".join(e(t) for t in board["missing_tasks"])
        out += ["", f"Declared but not in the results: {missing}."]
    if board["notes"]:
        out += ["", "Notes:", ""] + [f"- {e(n)}" for n in board["notes"]]
    return "\n".join(out) + "\n"


def _md_pareto(board: dict[str, Any]) -> list[str]:
    """Which models are on each Pareto frontier, said as a position, not as "fast"/"small"."""
    out = []
    for axis, badge in PARETO_BADGES.items():
        on = [md_text(r["model"]) for r in board["rows"] if r["pareto"].get(axis)]
        if on:
            label = md_text(board["pareto_axes"][axis]["label"])
            out.append(f"- {badge} ({label}): {', '.join(on)}")
    if not out:
        return []
    return (
        [
            "On a Pareto frontier (no other model is at least as good on the overall score and the cost, "
            "and better on one; a frontier model need not be fast or small):",
            "",
        ]
        + out
        + [""]
    )


def _icl_keys(board: dict[str, Any]) -> list[tuple[str, Any]]:
    """CSV columns of the ICL gain: the mean, then each task."""
    if not board.get("icl"):
        return []
    keys = [("icl_gain", lambda r: r["icl"]["mean"])]
    return keys + [(f"icl_gain:{t}", lambda r, t=t: r["icl"]["tasks"].get(t)) for t in board["icl"]["tasks"]]


def _md_icl(board: dict[str, Any]) -> list[str]:
    icl = board["icl"]
    out = [
        f"### {md_text(icl['title'])}",
        "",
        f"Points, {md_text(icl['method'])}.",
        "",
        "| model | mean | " + " | ".join(md_text(t) for t in icl["tasks"]) + " |",
        "|:---|" + "---:|" * (len(icl["tasks"]) + 1),
    ]
    for r in board["rows"]:
        cells = [md_text(r["model"]), _md_gain(r["icl"]["mean"])]
        cells += [_md_gain(r["icl"]["tasks"].get(t)) for t in icl["tasks"]]
        out.append("| " + " | ".join(cells) + " |")
    return out + [""]


def _md_gain(e: dict | None) -> str:
    return f"{fmt_gain(e)} {fmt_gain_interval(e)}".strip()


def _md_score(e: dict) -> str:
    if e["value"] is None:
        return MISSING
    iv = fmt_interval(e)
    return f"{fmt_score(e['value'])} {iv}".strip()


def _s(x) -> str:
    return MISSING if x is None else str(x)
