"""The static page: one self-contained index.html (inline CSS, JS and SVG plots) that works
from file:// with no network."""

from __future__ import annotations

import io
import json
import re
from importlib import resources
from typing import Any

import jinja2

from slm_tasks.leaderboards.board import MISSING
from slm_tasks.leaderboards.long_context_render import html_tables, png_available
from slm_tasks.leaderboards.render import (
    PARETO_BADGES,
    fmt_cost,
    fmt_gain,
    fmt_gain_interval,
    fmt_interval,
    fmt_score,
    pareto_title,
    rank_text,
)


def pareto_svg(board: dict[str, Any], axis: str) -> tuple[str | None, str]:
    """Overall score vs a cost axis with the Pareto frontier, as inline SVG; (None, why) if none."""
    info = board["pareto_axes"][axis]
    if not info["values"]:
        return None, f"no model has a measured {axis} value"
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None, "plots need matplotlib: pip install 'slm-suite[plot]'"
    pts = [
        (info["values"][r["model"]], 100 * r["overall"]["value"], r["model"], bool(r["pareto"][axis]))
        for r in board["rows"]
        if r["model"] in info["values"] and r["overall"]["value"] is not None
    ]
    if not pts:
        return None, f"no model has both an overall score and a measured {axis} value"
    xlabel = f"{info['label']}, lower is better"
    matplotlib.rcParams["svg.hashsalt"] = "slm-suite"  # stable ids: same board, same file
    fig, ax = plt.subplots(figsize=(6.4, 4.0), dpi=100)
    ax.scatter(
        [p[0] for p in pts if not p[3]],
        [p[1] for p in pts if not p[3]],
        color="#8a94a6",
        label="dominated (another model is at least as good on both)",
        gid="points-dominated",
    )
    front = sorted((p for p in pts if p[3]), key=lambda p: p[0])
    ax.scatter(
        [p[0] for p in front],
        [p[1] for p in front],
        color="#d1495b",
        label=f"on the frontier ({PARETO_BADGES[axis]})",
        zorder=3,
        gid="points-frontier",
    )
    if len(front) > 1:
        ax.step([p[0] for p in front], [p[1] for p in front], where="post", color="#d1495b", lw=1, alpha=0.6)
    for x, y, name, _ in pts:
        ax.annotate(name, (x, y), textcoords="offset points", xytext=(4, 4), fontsize=8)
    ax.margins(0.12)  # room for the model labels
    ax.set_xlabel(xlabel)
    ax.set_ylabel("overall score (%)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    fig.tight_layout()
    buf = io.StringIO()
    fig.savefig(buf, format="svg", metadata={"Date": None})
    plt.close(fig)
    svg = buf.getvalue()
    svg = re.sub(r"<metadata>.*?</metadata>\s*", "", svg[svg.index("<svg") :], flags=re.S)
    return svg, ""


def _env() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FunctionLoader(
            lambda name: (resources.files("slm_tasks.leaderboards") / "templates" / name).read_text("utf-8")
        ),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(
        score=fmt_score,
        interval=fmt_interval,
        cost=fmt_cost,
        gain=fmt_gain,
        gain_interval=fmt_gain_interval,
        rank=rank_text,
        pareto_title=pareto_title,
        extract_gain=lambda task, gains: gains.get(task),
        dash=lambda x: MISSING if x is None or x == "" else x,
        tojson_compact=lambda x: json.dumps(x, sort_keys=True, default=str),
    )
    return env


def to_html(board: dict[str, Any]) -> str:
    plots = []
    for axis in ("latency", "memory"):
        svg, why = pareto_svg(board, axis)
        plots.append(
            {"id": axis, "title": f"Score vs {board['pareto_axes'][axis]['label'] or axis}", "svg": svg, "why": why}
        )
    template = _env().get_template("board.html.j2")
    return template.render(
        board=board,
        plots=plots,
        missing=MISSING,
        badges=PARETO_BADGES,
        heatmaps=html_tables(board),  # the long-context heat maps (long_context_render.py)
        heatmap_png=png_available(),
    )
