"""The long-context heat maps drawn: HTML tables for index.html and one PNG beside it
(matplotlib), from the board's ``long_context`` section (leaderboards/long_context.py)."""

from __future__ import annotations

import io
from typing import Any

PNG_NAME = "long_context.png"
NOT_APPLICABLE = "n/a"


def _colour(value: float | None) -> str:
    """Red (0) through yellow to green (1), as the needle pictures colour them; grey: n/a."""
    if value is None:
        return "#d9d9d9"
    v = min(max(value, 0.0), 1.0)
    red, green = (255, int(510 * v)) if v < 0.5 else (int(510 * (1 - v)), 255)
    return f"#{red:02x}{green:02x}60"


def html_tables(board: dict[str, Any]) -> list[dict[str, Any]]:
    """Per model: rows by length, one cell per depth with its text, colour and tooltip."""
    section = board.get("long_context")
    if not section:
        return []
    out = []
    for model, cells in section["models"].items():
        at = {(c["length"], c["depth"]): c for c in cells}
        rows = []
        for length in section["lengths"]:
            row = []
            for depth in section["depths"]:
                c = at.get((length, depth))
                if c is None:
                    row.append({"text": "", "colour": "#ffffff", "title": "not run"})
                elif c["value"] is None:
                    why = c["not_applicable"]
                    row.append({"text": NOT_APPLICABLE, "colour": _colour(None), "title": why})
                else:
                    title = f"{c['k']:g} of {c['n']}; Wilson {c['low']:.2f}-{c['high']:.2f}"
                    text = f"{100 * c['value']:.0f}"
                    row.append({"text": text, "colour": _colour(c["value"]), "title": title})
            rows.append({"length": length, "cells": row})
        out.append({"model": model, "rows": rows})
    return out


def png_available() -> bool:
    """matplotlib draws the PNG: the ``plot`` extra, as for the page's other plots."""
    import importlib.util

    return importlib.util.find_spec("matplotlib") is not None


def png(board: dict[str, Any]) -> bytes | None:
    """One heat map per model (length down, depth across), or None without the section or
    without matplotlib."""
    section = board.get("long_context")
    if not section or not section["models"] or not png_available():
        return None
    import matplotlib

    matplotlib.use("Agg")  # no display; the same bytes on every machine for the same board
    import matplotlib.pyplot as plt
    import numpy as np

    models = list(section["models"])
    lengths, depths = section["lengths"], section["depths"]
    size = (1.2 + 0.7 * len(depths) * len(models), 0.5 * len(lengths) + 1.6)
    fig, axes = plt.subplots(1, len(models), figsize=size)
    axes = np.atleast_1d(axes)
    for ax, model in zip(axes, models):
        grid = np.full((len(lengths), len(depths)), np.nan)
        for c in section["models"][model]:
            if c["value"] is not None:
                grid[lengths.index(c["length"]), depths.index(c["depth"])] = c["value"]
        cmap = matplotlib.colormaps["RdYlGn"].with_extremes(bad="#d9d9d9")
        ax.imshow(grid, cmap=cmap, vmin=0, vmax=1, aspect="auto")
        ax.set_xticks(range(len(depths)), [f"{d:g}%" for d in depths])
        ax.set_yticks(range(len(lengths)), [f"{n:,}" for n in lengths])
        ax.set_xlabel("needle depth")
        ax.set_ylabel("context length (tokens)")
        ax.set_title(model, fontsize=9)
        for i in range(len(lengths)):
            for j in range(len(depths)):
                text = NOT_APPLICABLE if np.isnan(grid[i, j]) else f"{100 * grid[i, j]:.0f}"
                ax.text(j, i, text, ha="center", va="center", fontsize=7)
    fig.suptitle(section["title"].replace(" x ", " × "), fontsize=10)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, metadata={"Software": None})
    plt.close(fig)
    return buf.getvalue()
