"""The shared frame plumbing (``lib/frames.py``) and the check helper every asset declares its
checks with (``defs/checks.py``)."""

import datetime as dt

import polars as pl
import pytest
from dagster import AssetCheckSeverity, AssetKey, DagsterInstance, asset, materialize

from quant_assets.defs import checks as qc
from quant_assets.lib import frames

D1, D2, D3 = dt.date(2024, 1, 2), dt.date(2024, 1, 3), dt.date(2024, 1, 4)


def test_per_day_counts_fills_absent_days_with_zeros():
    f = pl.DataFrame({"date": [D1, D1, D2], "x": [1.0, None, 3.0]})
    got = frames.per_day_counts(f, [D1, D2, D3], {"with_x": pl.col("x").is_not_null().sum()}, rows="tickers")
    assert got == {D1: {"tickers": 2, "with_x": 1}, D2: {"tickers": 1, "with_x": 1}, D3: {"tickers": 0, "with_x": 0}}
    assert list(got[D1]) == ["tickers", "with_x"]
    assert frames.per_day_counts(pl.DataFrame(), [D1]) == {D1: {"rows": 0}}


def test_per_day_counts_split_by_a_column_names_every_value():
    f = pl.DataFrame({"date": [D1, D1, D1], "mode": ["all", "all", "rth"]})
    got = frames.per_day_counts(f, [D1, D2], rows="n", by="mode", by_values=["all", "rth"])
    assert got == {D1: {"n/all": 2, "n/rth": 1}, D2: {"n/all": 0, "n/rth": 0}}


def test_stitch_skips_empty_frames_and_relaxes_types():
    a = pl.DataFrame({"v": [1]}, schema={"v": pl.Int32})
    b = pl.DataFrame({"v": [2.5]})
    empty = pl.DataFrame(schema={"v": pl.Float64})
    assert frames.stitch(a, empty, b)["v"].to_list() == [1.0, 2.5]
    assert frames.stitch(pl.DataFrame(), empty).schema == empty.schema
    assert frames.stitch(empty, a) is a


def test_split_by_day_and_value_counts():
    f = pl.DataFrame({"ts": [dt.datetime(2024, 1, 2, 5), dt.datetime(2024, 1, 4, 1)], "s": ["b", "a"]})
    parts = frames.split_by_day(f, [D1, D2, D3], pl.col("ts").dt.date())
    assert {k: v.height for k, v in parts.items()} == {"2024-01-02": 1, "2024-01-03": 0, "2024-01-04": 1}
    assert parts["2024-01-03"].columns == ["ts", "s"]
    assert frames.value_counts(f, "s") == {"a": 1, "b": 1}
    assert list(frames.value_counts(f, "s")) == ["a", "b"]


KEY = AssetKey(["t", "checked"])
CHECKS = qc.AssetChecks(KEY, qc.Check("positive", "all positive"), qc.Check("some_rows", "rows exist (warns)", blocking=False))


def test_specs_declare_each_check_and_the_schema_check():
    specs = {s.name: s for s in CHECKS.specs}
    assert list(specs) == ["positive", "some_rows", qc.SCHEMA_CHECK]
    assert specs["positive"].blocking and not specs["some_rows"].blocking
    with pytest.raises(ValueError, match="declared twice"):
        qc.AssetChecks(KEY, qc.Check("a", ""), qc.Check("a", ""))


def test_outcomes_must_match_the_declared_checks():
    with pytest.raises(ValueError, match=r"missing \['some_rows'\], undeclared \['other'\]"):
        CHECKS.results(None, {"positive": qc.Outcome(True, "ok"), "other": qc.Outcome(True, "ok")}, schema={})
    with pytest.raises(ValueError, match="no schema was given"):
        CHECKS.results(None, {"positive": qc.Outcome(True, "ok"), "some_rows": qc.Outcome(True, "ok")})


def test_materialize_returns_every_declared_result_with_its_severity():
    @asset(key=KEY, check_specs=CHECKS.specs)
    def checked(context):
        df = pl.DataFrame({"v": [1, 2]})
        outcomes = {"positive": qc.Outcome(True, "all positive"), "some_rows": qc.Outcome(False, "none")}
        return CHECKS.materialize(context, None, {"rows": df.height}, outcomes, schema=df.schema)

    result = materialize([checked], instance=DagsterInstance.ephemeral())
    evaluations = {e.check_name: e for e in result.get_asset_check_evaluations()}
    assert set(evaluations) == {"positive", "some_rows", qc.SCHEMA_CHECK}
    assert evaluations["positive"].passed and evaluations["positive"].severity == AssetCheckSeverity.ERROR
    assert not evaluations["some_rows"].passed and evaluations["some_rows"].severity == AssetCheckSeverity.WARN
    assert evaluations[qc.SCHEMA_CHECK].passed


def test_house_asset_carries_the_domain_conventions_and_refuses_another_assets_checks():
    from dagster import BackfillPolicy

    from quant_assets.defs.assets import house_asset
    from quant_assets.defs.partitions import trading_days

    key = AssetKey(["research", "example_table"])
    checks = qc.AssetChecks(key, qc.Check("rows_present", "At least one row."))

    @house_asset(key, "features", {"polars", "parquet"}, "3", partitions_def=trading_days, per_run=5, checks=checks)
    def example_table():
        return None

    spec = example_table.specs_by_key[key]
    assert spec.group_name == "research" and list(spec.owners) == ["team:quant-research"]
    assert spec.tags["layer"] == "features" and spec.tags["domain"] == "research" and spec.code_version == "3"
    assert set(spec.kinds) == {"polars", "parquet"}
    assert example_table.backfill_policy == BackfillPolicy.multi_run(max_partitions_per_run=5)
    assert sorted(c.name for c in example_table.check_specs) == ["column_schema_unchanged", "rows_present"]
    with pytest.raises(ValueError, match="research/other declares the checks of research/example_table"):
        house_asset(AssetKey(["research", "other"]), "features", {"polars"}, "1", checks=checks)
    with pytest.raises(ValueError, match="unknown layer"):
        house_asset(AssetKey(["research", "other"]), "gold", {"polars"}, "1")
