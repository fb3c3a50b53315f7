"""Shared timing for the benchmarks: candidates timed in interleaved rounds, best of each."""

from __future__ import annotations

import gc
import time
from collections.abc import Callable, Mapping
from typing import Any


def interleaved_best(candidates: Mapping[str, Callable[[Any], Any]], arg: Any, repeat: int) -> dict[str, float]:
    """Run every candidate on ``arg`` once per round, ``repeat`` rounds, interleaved so that a
    noisy stretch of a shared machine hits all of them; returns each one's best seconds and prints
    the standings after every round."""
    best = {name: float("inf") for name in candidates}
    for r in range(repeat):
        for name, fn in candidates.items():
            gc.collect()
            t = time.perf_counter()
            fn(arg)
            best[name] = min(best[name], time.perf_counter() - t)
        print(f"  round {r + 1}: " + "  ".join(f"{n} {b:.3f}s" for n, b in best.items()) + " (best so far)")
    return best
