"""Small PNG charts for the asset pages (matplotlib's object API: no global pyplot state)."""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence

WIDTH, HEIGHT, DPI = 7.0, 3.4, 80


def _png(fig) -> bytes:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, bbox_inches="tight")
    return buf.getvalue()


def bar_chart(labels: Sequence[str], values: Sequence[float], *, title: str, xlabel: str) -> bytes:
    """Horizontal bars, largest at the top."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(WIDTH, max(2.0, 0.22 * len(labels) + 0.8)))
    ax = fig.add_subplot()
    ax.barh(list(labels)[::-1], list(values)[::-1], color="#3b6ea5")
    ax.set_title(title, fontsize=10)
    ax.set_xlabel(xlabel, fontsize=9)
    ax.tick_params(labelsize=8)
    ax.grid(axis="x", alpha=0.3)
    return _png(fig)


def line_chart(series: Mapping[str, tuple[Sequence, Sequence[float]]], *, title: str, ylabel: str, zero_line: bool = False) -> bytes:
    """One line per entry of ``series`` (label -> (x values, y values))."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(WIDTH, HEIGHT))
    ax = fig.add_subplot()
    for label, (x, y) in series.items():
        ax.plot(list(x), list(y), label=label, linewidth=1.2)
    if zero_line:
        ax.axhline(0.0, color="black", linewidth=0.6)
    ax.set_title(title, fontsize=10)
    ax.set_ylabel(ylabel, fontsize=9)
    ax.tick_params(labelsize=8)
    ax.grid(alpha=0.3)
    if len(series) > 1:
        ax.legend(fontsize=7, ncol=2, loc="best")
    fig.autofmt_xdate()
    return _png(fig)
