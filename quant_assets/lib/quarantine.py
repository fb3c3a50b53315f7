"""The quarantine limit every vendor file is held to: which files quarantined more than a
share of their rows, the worst one, and the sentence a check says about it."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any


def over_limit(
    reports: Sequence[Any],
    limit: float,
    *,
    share: Callable[[Any], float] = lambda r: r.share,
    source: Callable[[Any], str] = lambda r: r.source,
) -> tuple[list, Any, str]:
    """(reports above ``limit``, the worst report or None, a one-line verdict) of per-file
    reports with a quarantined ``share`` and a ``source`` name."""
    over = [r for r in reports if share(r) > limit]
    worst = max(reports, key=share, default=None)
    if over:
        verdict = f"{len(over)} file(s) had more than {limit:.1%} of their rows quarantined; worst {source(worst)} at {share(worst):.1%}"
    else:
        verdict = f"Every file within the {limit:.1%} quarantine limit" + (f" (worst {share(worst):.2%})." if worst is not None else ".")
    return over, worst, verdict
