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


# Text charts: the Dagster UI shows a Markdown value inline only while it stays under 1,000
# characters (longer ones, like an embedded PNG, open behind a "[Show Markdown]" link), so every
# chart also gets a compact text version that is visible on the asset page at a glance.
INLINE_LIMIT = 900  # leaves room for a title line under the UI's 1,000
_BLOCKS = " ▏▎▍▌▋▊▉█"
_SPARKS = "▁▂▃▄▅▆▇█"


def _fence(lines: list[str]) -> str:
    body = []
    size = 8
    for line in lines:
        if size + len(line) + 1 > INLINE_LIMIT:
            break
        body.append(line)
        size += len(line) + 1
    return "```\n" + "\n".join(body) + "\n```"


def text_bars(labels: Sequence[str], values: Sequence[float], *, width: int = 24, fmt: str = "{:+.3g}") -> str:
    """Horizontal bars of |value| (sign shown in the number), as a fenced Markdown block."""
    top = max((abs(v) for v in values), default=0.0) or 1.0
    name_w = min(max((len(str(x)) for x in labels), default=4), 18)
    lines = []
    for label, v in zip(labels, values):
        eighths = int(round(abs(v) / top * width * 8))
        bar = "█" * (eighths // 8) + (_BLOCKS[eighths % 8] if eighths % 8 else "")
        lines.append(f"{str(label)[:name_w]:<{name_w}} {bar:<{width}} {fmt.format(v)}")
    return _fence(lines)


def sparkline(values: Sequence[float], width: int = 40) -> str:
    """``values`` averaged into at most ``width`` buckets and drawn with block characters."""
    vals = [float(v) for v in values if v == v]
    if not vals:
        return ""
    n = len(vals)
    buckets = min(width, n)
    means = [sum(vals[i * n // buckets : (i + 1) * n // buckets]) / max(1, (i + 1) * n // buckets - i * n // buckets) for i in range(buckets)]
    lo, hi = min(means), max(means)
    span = (hi - lo) or 1.0
    return "".join(_SPARKS[min(7, int((m - lo) / span * 7.999))] for m in means)


def text_lines(series: Mapping[str, Sequence[float]], *, width: int = 40, fmt: str = "{:+.3f}") -> str:
    """One sparkline per series with its first, lowest, highest and last value."""
    name_w = min(max((len(k) for k in series), default=4), 20)
    lines = []
    for label, vals in series.items():
        v = [float(x) for x in vals if x == x]
        if not v:
            continue
        stats = f"first {fmt.format(v[0])} min {fmt.format(min(v))} max {fmt.format(max(v))} last {fmt.format(v[-1])}"
        lines.append(f"{label[:name_w]:<{name_w}} {sparkline(v, width)}  {stats}")
    return _fence(lines)
