"""The client_intel group's part of ``quant-assets demo``: build the world with the default
Config, load it into the warehouse, and print the old verification figures."""

from __future__ import annotations

from quant_assets.demo.launch import RunSpec
from quant_assets.demo.run import DemoDomain, DemoSettings


def prepare(s: DemoSettings) -> list[str]:
    from quant_assets.lib.client_intel import spec

    return [
        "no vendor files: client_intel/* generate the world themselves "
        f"(defaults: n_clients={spec.DEFAULT_N_CLIENTS}, months_history={spec.DEFAULT_MONTHS_HISTORY}, "
        f"seed={spec.DEFAULT_SEED}, as_of={spec.DEFAULT_AS_OF})"
    ]


def runs(s: DemoSettings) -> list[RunSpec]:
    from quant_assets.defs.client_intel import client_intel_job

    return [RunSpec("client-intelligence world", client_intel_job.name)]


def _latest_metadata(instance, key) -> dict:
    from dagster import AssetRecordsFilter

    records = instance.fetch_materializations(AssetRecordsFilter(asset_key=key), limit=1).records
    if not records or records[0].asset_materialization is None:
        return {}
    return {k: getattr(v, "value", v) for k, v in records[0].asset_materialization.metadata.items()}


def report(instance, s: DemoSettings) -> list[str]:
    from quant_assets.defs.client_intel.assets import KEYS, WAREHOUSE_KEY
    from quant_assets.lib.client_intel import TABLES

    wh = _latest_metadata(instance, WAREHOUSE_KEY)
    feats = _latest_metadata(instance, KEYS["features"])
    lines = []
    if wh:
        lines.append(f"warehouse ({wh.get('dialect')}): rows per table")
        rows = wh.get("table_rows") or {}
        for table in TABLES:
            if table in rows:
                lines.append(f"  {table:<28}{rows[table]:>10,}")
        lines.append("holding period by segment (SELECT AVG(holding_period_avg) FROM features JOIN clients ...):")
        for seg, v in (wh.get("holding_period_by_segment") or {}).items():
            lines.append(f"  {seg:<16} {v['clients']:>4} clients  avg {v['avg']:6.2f} d  (min {v['min']:.2f}, max {v['max']:.2f})")
    accuracy = feats.get("segment_classifier_accuracy")
    if accuracy is not None:
        lines.append(f"segment classifier (5-fold cross-validated on features): accuracy {accuracy:.1%}")
    return lines


DEMO = DemoDomain(name="client_intel", prepare=prepare, runs=runs, report=report)
