"""Research knobs declared once, in the lib parameter dataclass that uses them.

A knob is a dataclass field that also says what it means and which values it admits::

    @dataclasses.dataclass(frozen=True)
    class BacktestParams:
        rsi_period: int = knob(14, "RSI lookback of the rsi strategy.", ge=2)

The run configuration a user edits in the launchpad is generated from these declarations
(``quant_assets.defs.config.mirrors``): its field has the knob's name, type, default, description
and bounds. A field without ``knob`` is internal to lib and not offered to a run.
"""

from __future__ import annotations

import copy
import dataclasses
from typing import Any

BOUND_NAMES = ("ge", "gt", "le", "lt")


def knob(default: Any, description: str, *, ge: float | None = None, gt: float | None = None, le: float | None = None, lt: float | None = None) -> Any:
    """A dataclass field with ``default`` that a run may set, with its meaning and bounds
    (``ge``/``gt``/``le``/``lt``: at least, above, at most, below)."""
    if not description:
        raise ValueError("a knob needs a description")
    bounds = {name: value for name, value in zip(BOUND_NAMES, (ge, gt, le, lt)) if value is not None}
    metadata = {"knob": {"description": description, "bounds": bounds}}
    if isinstance(default, (dict, list, set)):  # a fresh copy for every instance
        return dataclasses.field(default_factory=lambda: copy.copy(default), metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


def knobs_of(params: type) -> dict[str, dict[str, Any]]:
    """``{field name: {"description", "bounds"}}`` for every knob of the dataclass ``params``,
    in declaration order."""
    return {f.name: f.metadata["knob"] for f in dataclasses.fields(params) if "knob" in f.metadata}


def check_knobs(params: Any) -> None:
    """Raise ``ValueError`` naming the first knob of the dataclass instance ``params`` whose value
    lies outside its declared bounds (the launchpad refuses it before a run; this guards a direct
    lib call)."""
    tests = {"ge": (">=", lambda v, b: v >= b), "gt": (">", lambda v, b: v > b), "le": ("<=", lambda v, b: v <= b), "lt": ("<", lambda v, b: v < b)}
    for name, spec in knobs_of(type(params)).items():
        value = getattr(params, name)
        for bound, limit in spec["bounds"].items():
            sign, holds = tests[bound]
            if not holds(value, limit):
                raise ValueError(f"{type(params).__name__}.{name} must be {sign} {limit}, got {value!r}")
