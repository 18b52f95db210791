"""Write a leaderboard document as JSON, CSV, Markdown and a self-contained HTML page."""

from __future__ import annotations

import csv
import io
import json
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
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(head)
    blank = lambda x: "" if x is None else x  # noqa: E731
    for r in board["rows"]:
        line = [blank(r["rank"]), r["model"], blank(r["overall"]["value"]), blank(r["overall"]["low"]),
                blank(r["overall"]["high"])]
        for d in board["domains"]:
            e = r["domains"][d["domain"]]
            line += [blank(e["value"]), blank(e["low"]), blank(e["high"])]
        for _, pick in icl_keys:
            e = pick(r) or {}
            line += [blank(e.get("value")), blank(e.get("low")), blank(e.get("high"))]
        for c in board["columns"]:
            e = r["tasks"].get(c["task"])
            line += ([blank(e["value"]), blank(e["low"]), blank(e["high"]), e["method"]] if e else ["", "", "", ""])
        line += [blank(r["cost"][c["id"]]["value"]) for c in board["cost_columns"]]
        line += [blank(r["efficiency"]["score_per_gb"]), blank(r["pareto"]["latency"]), blank(r["pareto"]["memory"])]
        w.writerow(line)
    return buf.getvalue()


def to_markdown(board: dict[str, Any]) -> str:
    """A README-ready table (scores in %, 95% intervals in brackets) with column notes."""
    lvl = f"{100 * board['intervals']['level']:.0f}%"
    out = [f"## {board['spec']['title']}", ""]
    if board["smoke"]:
        out += [f"> **Smoke board** — {board['smoke_reason']}.", ""]
    icl = board.get("icl")
    head = ["#", "model", "overall"] + [d["title"] for d in board["domains"]] + ([icl["title"]] if icl else [])
    head += [f"{c['title']} ({c['unit']})" for c in board["cost_columns"]]
    out.append("| " + " | ".join(head) + " |")
    out.append("|" + "|".join(["---:", ":---"] + ["---:"] * (len(head) - 2)) + "|")
    for r in board["rows"]:
        cells = [str(r["rank"] or MISSING), r["model"], _md_score(r["overall"])]
        cells += [_md_score(r["domains"][d["domain"]]) for d in board["domains"]]
        cells += [_md_gain(r["icl"]["mean"])] if icl else []
        cells += [fmt_cost(c["id"], r["cost"][c["id"]]["value"]) for c in board["cost_columns"]]
        out.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    out += ["", f"Scores in %, {lvl} intervals in brackets. Domain = plain mean of its tasks; "
                f"overall = plain mean of the capability domains"
                + (f"; {icl['title']} in points, outside the overall" if icl else "") + ".", ""]
    if icl:
        out += _md_icl(board)
    out += ["### Tasks", "",
            "| task | domain | metric | shots | split | version | interval | random baseline |",
            "|:---|:---|:---|---:|:---|---:|:---|---:|"]
    for c in board["columns"]:
        methods = sorted({r["tasks"][c["task"]]["method"] for r in board["rows"] if c["task"] in r["tasks"]})
        out.append(f"| {c['task']} | {c['domain']} | {c['metric']} | {_s(c['shots'])} | {_s(c['split'])} | "
                   f"{_s(c['version'])} | {', '.join(methods)} | {c['random_baseline']:.3f} |")
    if board["missing_tasks"]:
        out += ["", "Declared but not in the results: " + ", ".join(board["missing_tasks"]) + "."]
    if board["notes"]:
        out += ["", "Notes:", ""] + [f"- {n}" for n in board["notes"]]
    return "\n".join(out) + "\n"


def _icl_keys(board: dict[str, Any]) -> list[tuple[str, Any]]:
    """CSV columns of the ICL gain: the mean, then each task."""
    if not board.get("icl"):
        return []
    keys = [("icl_gain", lambda r: r["icl"]["mean"])]
    return keys + [(f"icl_gain:{t}", lambda r, t=t: r["icl"]["tasks"].get(t)) for t in board["icl"]["tasks"]]


def _md_icl(board: dict[str, Any]) -> list[str]:
    icl = board["icl"]
    out = [f"### {icl['title']}", "", f"Points, {icl['method']}.", "",
           "| model | mean | " + " | ".join(icl["tasks"]) + " |",
           "|:---|" + "---:|" * (len(icl["tasks"]) + 1)]
    for r in board["rows"]:
        cells = [r["model"], _md_gain(r["icl"]["mean"])] + [_md_gain(r["icl"]["tasks"].get(t)) for t in icl["tasks"]]
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
