"""The house rules of the code layout: small stage modules, asset bodies that name their inputs,
call lib and return, the frame work in lib, and imports that only point down
(demo -> defs -> execution / lib; lib imports no Dagster)."""

import ast
from pathlib import Path

from quant_assets_tests.layout_metrics import ROOT, measure


def _imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def _offenders(package: str, forbidden: tuple[str, ...]) -> dict[str, list[str]]:
    out = {}
    for path in sorted((ROOT / package).rglob("*.py")):
        bad = sorted(m for m in _imports(path) if any(m == f or m.startswith(f + ".") for f in forbidden))
        if bad:
            out[str(path.relative_to(ROOT))] = bad
    return out


def test_imports_point_down_only():
    assert _offenders("quant_assets/lib", ("dagster", "dagster_aws", "dagster_dask", "dagster_k8s", "quant_assets.defs", "quant_assets.demo", "quant_assets.execution")) == {}
    assert _offenders("quant_assets/execution", ("quant_assets.defs", "quant_assets.demo")) == {}
    assert _offenders("quant_assets/defs", ("quant_assets.demo",)) == {}


def test_stage_modules_stay_small_and_asset_bodies_short():
    layout = measure()
    assert layout.over(400) == {}
    assert len(layout.asset_bodies) >= 40
    assert layout.median_asset_body <= 25
    assert layout.frame_operations_per_1000 <= 10


def test_every_asset_declares_its_checks_through_asset_checks():
    """``check_specs`` come from one AssetChecks declaration, never spelled out by hand."""
    for path in sorted((ROOT / "quant_assets/defs").rglob("*.py")):
        text = path.read_text()
        if path.name == "checks.py" and path.parent.name == "defs":
            continue
        for forbidden in ("qc.spec(", "qc.result(", "qc.schema_spec(", "qc.schema_result("):
            assert forbidden not in text, f"{path.relative_to(ROOT)} uses {forbidden}"
