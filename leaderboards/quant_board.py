"""The board of a quantisation sweep: one row per format (accuracy, the paired deltas against
the reference, KL, size, memory, first-token latency, decode ms/token, prefill tok/s, the
gate's verdict), as Markdown, CSV, JSON and a static HTML page whose two plots mark the
Pareto frontier (accuracy against peak memory, and against decode time per token).

A row is a plain dict made by the sweep (``slm_tasks/quant_sweep.py``); this module only
lays it out.
"""

from __future__ import annotations

import csv
import html
import io
import json
import math

BOARD_SCHEMA = "slm-suite.quant-board/1"
# (key, header, formatter) of the Markdown / HTML table
COLUMNS = [
    ("format", "format", str),
    ("bits_per_weight", "bits/weight", lambda x: f"{x:.2f}"),
    ("accuracy", "accuracy", lambda x: f"{100 * x:.2f}"),
    ("delta", "Δ vs reference (points)", None),
    ("kl_mean", "KL mean", lambda x: f"{x:.5f}"),
    ("kl_p99", "KL p99", lambda x: f"{x:.4f}"),
    ("same_answer", "same answer", lambda x: f"{100 * x:.1f}%"),
    ("identical_outputs", "identical outputs", lambda x: f"{100 * x:.1f}%"),
    ("file_bytes", "size (MB)", lambda x: f"{x / 1e6:.1f}"),
    ("peak_memory_bytes", "peak memory (MB)", lambda x: f"{x / 1e6:.0f}"),
    ("ttft_ms", "first token (ms)", lambda x: f"{x:.1f}"),
    ("decode_ms_per_token", "decode (ms/token)", lambda x: f"{x:.2f}"),
    ("prefill_tok_s", "prefill (tok/s)", lambda x: f"{x:.0f}"),
    ("quantise_s", "quantise (s)", lambda x: f"{x:.1f}"),
    ("verdict", "gate", str),
]
CSV_KEYS = [k for k, _, _ in COLUMNS if k != "delta"]


def _cell(key, fmt, row) -> str:
    if key == "delta":
        return _deltas(row)
    x = row.get(key)
    if x is None or isinstance(x, float) and not math.isfinite(x):
        return "—"
    return fmt(x)


def _deltas(row) -> str:
    if row.get("reference"):
        return "reference"
    parts = []
    for name, d in (row.get("domains") or {}).items():
        if d.get("n"):
            parts.append(
                f"{name} {100 * d['diff']:+.2f} [{100 * d['low']:+.2f}, {100 * d['high']:+.2f}] p={d['p_value']:.2g}"
            )
    return "; ".join(parts) or "—"


def pareto(rows, x_key: str) -> set[str]:
    """Formats on the frontier: no other format has accuracy at least as high and ``x_key``
    (lower is better) at least as low, one of them strictly."""
    pts = [(r["format"], r.get("accuracy"), r.get(x_key)) for r in rows]
    pts = [(f, a, x) for f, a, x in pts if a is not None and x is not None]
    out = set()
    for f, a, x in pts:
        dominated = any(a2 >= a and x2 <= x and (a2 > a or x2 < x) for g, a2, x2 in pts if g != f)
        if not dominated:
            out.add(f)
    return out


def _front(rows, x_key: str) -> str:
    return ", ".join(r["format"] for r in rows if r["format"] in pareto(rows, x_key)) or "—"


def to_markdown(board: dict) -> str:
    rows = board["rows"]
    out = [
        f"## Quantisation sweep: {board['model']}",
        "",
        f"Source: {board['source']}. Reference: **{board['reference']}** (the most precise format of "
        f"the sweep). Profile `{board['profile']}` ({', '.join(board['tasks'])}); spec `{board['spec']}`.",
        "",
        "| " + " | ".join(h for _, h, _ in COLUMNS) + " |",
        "|" + "|".join(":---" if k in ("format", "delta", "verdict") else "---:" for k, _, _ in COLUMNS) + "|",
    ]
    for r in rows:
        out.append("| " + " | ".join(_cell(k, f, r) for k, _, f in COLUMNS) + " |")
    out += [
        "",
        f"Δ: paired difference of each domain's score (format − reference) on the documents both scored, "
        f"its {100 * board['level']:g}% interval and the exact sign test (McNemar for 0/1 outcomes). KL: "
        "D(reference ‖ format) of each multiple-choice question's choice distribution (softmax over "
        "the choices' log-likelihoods), nats. Runtime: `slm-suite bench` on this machine "
        f"({board.get('bench_protocol') or 'not measured'}), medians; decode is tg128, prefill pp512, "
        "first token the survey's 50-token prompt.",
        "",
        f"Pareto frontier, accuracy against peak memory: {_front(rows, 'peak_memory_bytes')}; "
        f"against decode time: {_front(rows, 'decode_ms_per_token')}.",
    ]
    for note in board.get("notes") or []:
        out.append(f"\n- {note}")
    return "\n".join(out) + "\n"


def to_csv(board: dict) -> str:
    buf = io.StringIO()
    domains = sorted({d for r in board["rows"] for d in r.get("domains") or {}})
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(CSV_KEYS + [f"delta_{d}{s}" for d in domains for s in ("", "_low", "_high", "_p")])
    for r in board["rows"]:
        ds = r.get("domains") or {}
        extra = [ds.get(d, {}).get(k) for d in domains for k in ("diff", "low", "high", "p_value")]
        w.writerow([r.get(k) for k in CSV_KEYS] + extra)
    return buf.getvalue()


def to_json(board: dict) -> str:
    return json.dumps({"schema": BOARD_SCHEMA, **board}, indent=2, default=str) + "\n"


def _plot(rows, x_key: str, x_label: str, x_scale: float) -> str:
    """An inline SVG scatter of accuracy against ``x_key``, the frontier joined and marked."""
    pts = [r for r in rows if r.get("accuracy") is not None and r.get(x_key) is not None]
    if not pts:
        return f"<p>{html.escape(x_label)}: not measured.</p>"
    w, h, pad = 460, 300, 50
    xs = [r[x_key] * x_scale for r in pts]
    ys = [100 * r["accuracy"] for r in pts]
    x0, x1 = min(xs), max(xs)
    y0, y1 = min(ys), max(ys)
    x1, y1 = (x1 if x1 > x0 else x0 + 1), (y1 if y1 > y0 else y0 + 1)

    def sx(x):
        return pad + (x - x0) / (x1 - x0) * (w - 2 * pad)

    def sy(y):
        return h - pad - (y - y0) / (y1 - y0) * (h - 2 * pad)

    front = pareto(rows, x_key)
    line = sorted((sx(x), sy(y)) for r, x, y in zip(pts, xs, ys) if r["format"] in front)
    svg = [f'<svg width="{w}" height="{h}" role="img" aria-label="accuracy against {html.escape(x_label)}">']
    svg.append(f'<line x1="{pad}" y1="{h - pad}" x2="{w - pad}" y2="{h - pad}" stroke="#888"/>')
    svg.append(f'<line x1="{pad}" y1="{pad}" x2="{pad}" y2="{h - pad}" stroke="#888"/>')
    svg.append(f'<text x="{w / 2}" y="{h - 12}" text-anchor="middle">{html.escape(x_label)}</text>')
    svg.append(f'<text x="14" y="{h / 2}" transform="rotate(-90 14 {h / 2})" text-anchor="middle">accuracy (%)</text>')
    for val, pos in ((x0, sx(x0)), (x1, sx(x1))):
        svg.append(f'<text x="{pos:.1f}" y="{h - pad + 16}" text-anchor="middle" font-size="11">{val:.4g}</text>')
    for val, pos in ((y0, sy(y0)), (y1, sy(y1))):
        svg.append(f'<text x="{pad - 4}" y="{pos:.1f}" text-anchor="end" font-size="11">{val:.2f}</text>')
    if len(line) > 1:
        path = " ".join(f"{x:.1f},{y:.1f}" for x, y in line)
        svg.append(f'<polyline points="{path}" fill="none" stroke="#c33" stroke-dasharray="4 3"/>')
    for r, x, y in zip(pts, xs, ys):
        colour = "#c33" if r["format"] in front else "#357"
        svg.append(f'<circle cx="{sx(x):.1f}" cy="{sy(y):.1f}" r="4" fill="{colour}"/>')
        svg.append(f'<text x="{sx(x) + 6:.1f}" y="{sy(y) - 6:.1f}" font-size="11">{html.escape(r["format"])}</text>')
    svg.append("</svg>")
    return "".join(svg)


def to_html(board: dict) -> str:
    rows = board["rows"]
    head = "".join(f"<th>{html.escape(h)}</th>" for _, h, _ in COLUMNS)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(_cell(k, f, r))}</td>" for k, _, f in COLUMNS) + "</tr>" for r in rows
    )
    title = f"Quantisation sweep: {board['model']}"
    return (
        '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{html.escape(title)}</title>"
        "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}"
        "td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}td:first-child{text-align:left}"
        "figure{display:inline-block;margin:1em}</style></head><body>"
        f"<h1>{html.escape(title)}</h1>"
        f"<p>Source: {html.escape(board['source'])}. Reference: <b>{html.escape(board['reference'])}</b>. "
        f"Profile <code>{html.escape(board['profile'])}</code>.</p>"
        f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
        "<h2>Pareto frontier (red: no format is both more accurate and cheaper)</h2>"
        f"<figure>{_plot(rows, 'peak_memory_bytes', 'peak memory (MB)', 1e-6)}</figure>"
        f"<figure>{_plot(rows, 'decode_ms_per_token', 'decode (ms/token)', 1.0)}</figure>"
        "</body></html>\n"
    )


def files(board: dict, html_page: bool = True) -> dict[str, str]:
    out = {"quant.md": to_markdown(board), "quant.csv": to_csv(board), "quant.json": to_json(board)}
    if html_page:
        out["index.html"] = to_html(board)
    return out
