"""How full the rooms of the Dagster layer are: module sizes under ``quant_assets/defs``, the
median length of an asset body, and frame operations per 1,000 lines.

    python -m quant_assets_tests.layout_metrics            # the working tree
    python -m quant_assets_tests.layout_metrics f16e374    # ... and any revision, for comparison

An asset body is the decorated function (``@asset``, ``@multi_asset``, ``@house_asset`` or a
domain wrapper of it) without its docstring.
A frame operation is a call of a polars frame method that reshapes or combines data (filter,
select, with_columns, group_by, join, agg, sort, unique, pivot, concat, ...), not counting
``str.join``.
"""

from __future__ import annotations

import ast
import dataclasses
import re
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFS = "quant_assets/defs"
FRAME_OPERATION = re.compile(
    r"(?<![\"'])\.(filter|select|with_columns|group_by|join|agg|sort|unique|pivot|concat|partition_by|explode|melt"
    r"|unpivot|head|tail|drop_nulls|fill_null|over)\(|pl\.concat\("
)
ASSET_DECORATORS = {"asset", "multi_asset", "house_asset", "_model_asset"}


@dataclasses.dataclass
class Layout:
    modules: dict[str, int]
    asset_bodies: list[int]
    frame_operations: int

    @property
    def lines(self) -> int:
        return sum(self.modules.values())

    @property
    def median_asset_body(self) -> float:
        return statistics.median(self.asset_bodies) if self.asset_bodies else 0.0

    @property
    def frame_operations_per_1000(self) -> float:
        return 1000 * self.frame_operations / self.lines if self.lines else 0.0

    def over(self, limit: int) -> dict[str, int]:
        return {m: n for m, n in self.modules.items() if n > limit}


def _decorator_name(node: ast.expr) -> str:
    target = node.func if isinstance(node, ast.Call) else node
    return target.attr if isinstance(target, ast.Attribute) else getattr(target, "id", "")


def asset_body_lengths(source: str) -> list[int]:
    out = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.FunctionDef) and any(_decorator_name(d) in ASSET_DECORATORS for d in node.decorator_list):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                body = body[1:]
            if body:
                out.append(node.end_lineno - body[0].lineno + 1)
    return out


def _sources(rev: str | None) -> dict[str, str]:
    if rev is None:
        return {str(p.relative_to(ROOT)): p.read_text() for p in sorted((ROOT / DEFS).rglob("*.py"))}
    names = subprocess.run(["git", "ls-tree", "-r", "--name-only", rev, DEFS], cwd=ROOT, capture_output=True, text=True, check=True)
    out = {}
    for name in names.stdout.split():
        if name.endswith(".py"):
            out[name] = subprocess.run(["git", "show", f"{rev}:{name}"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    return out


def measure(rev: str | None = None) -> Layout:
    """The figures of the working tree (``rev`` None) or of a git revision."""
    sources = _sources(rev)
    bodies: list[int] = []
    for src in sources.values():
        bodies += asset_body_lengths(src)
    return Layout(
        modules={m: s.count("\n") for m, s in sources.items()},
        asset_bodies=bodies,
        frame_operations=sum(len(FRAME_OPERATION.findall(s)) for s in sources.values()),
    )


def report(layout: Layout, label: str) -> str:
    largest = max(layout.modules.items(), key=lambda kv: kv[1])
    return (
        f"{label}: {len(layout.modules)} modules, {layout.lines:,} lines, over 400 lines: {len(layout.over(400))} "
        f"(largest {largest[0]} {largest[1]}); {len(layout.asset_bodies)} asset bodies, median "
        f"{layout.median_asset_body:g} lines; {layout.frame_operations} frame operations, "
        f"{layout.frame_operations_per_1000:.1f} per 1,000 lines"
    )


if __name__ == "__main__":
    print(report(measure(), "working tree"))
    for rev in sys.argv[1:]:
        print(report(measure(rev), rev))
