"""Jobs and the backfill sensor of the smart-money group."""


from dagster import AssetKey, AssetRecordsFilter, DefaultSensorStatus, RunRequest, SensorEvaluationContext, SensorResult, SkipReason, sensor

from quant_assets.defs.automation import asset_job
from quant_assets.defs.smart_money import dataset, model, sources
from quant_assets.defs.smart_money.keys import KEYS

smart_money_universe_job = asset_job(
    "smart_money_universe_job",
    [sources.universe],
    "Choose the universe (test, custom, top50/100/500) and the sample schedule; registers one "
    "smart_money_symbols partition per stock.",
)
# Per symbol: fetch every source, then its features, one step after the other in one process by
# default (a process per step would cost more than the step).
smart_money_symbols_job = asset_job(
    "smart_money_symbols_job",
    [sources.raw_fmp_sources, dataset.features],
    "Raw FMP sources and features of the selected symbol(s). A backfill runs one symbol per run: "
    "each symbol is a checkpoint, and a relaunch of the missing partitions resumes where a killed backfill "
    "stopped (the response cache makes done work free).",
    config={"execution": {"config": {"in_process": {}}}},
)
smart_money_training_job = asset_job(
    "smart_money_training_job",
    [dataset.dataset, model.splits, model.model, model.evaluation],
    "Dataset CSV (blocking quality checks), time-ordered splits, the LightGBM model and its test "
    "evaluation, for the current universe.",
)


def latest_universe(instance) -> tuple[int, list[str]] | None:
    """(storage id, symbols) of the latest smart_money/universe materialization."""
    records = instance.fetch_materializations(AssetRecordsFilter(asset_key=KEYS["universe"]), limit=1).records
    if not records or records[0].asset_materialization is None:
        return None
    value = records[0].asset_materialization.metadata.get("symbol_list")
    if value is None:
        return None
    return records[0].storage_id, list(value.value)


def _latest_storage_id(instance, key: AssetKey) -> int | None:
    records = instance.fetch_materializations(AssetRecordsFilter(asset_key=key), limit=1).records
    return records[0].storage_id if records else None


@sensor(
    jobs=[smart_money_symbols_job, smart_money_training_job],
    minimum_interval_seconds=60,
    default_status=DefaultSensorStatus.STOPPED,
    description="After smart_money/universe is materialized: one run per universe symbol whose features are not "
    "materialized yet (a killed backfill resumes with only those), then the training job once every symbol "
    "is done. A failed symbol is not retried automatically; re-execute its run or rematerialize the universe.",
)
def smart_money_backfill_sensor(context: SensorEvaluationContext):
    found = latest_universe(context.instance)
    if found is None:
        return SkipReason("smart_money/universe has not been materialized yet")
    universe_id, symbols = found
    done = context.instance.get_materialized_partitions(KEYS["features"])
    missing = [s for s in symbols if s not in done]
    if missing:
        return SensorResult(
            run_requests=[
                RunRequest(
                    run_key=f"universe-{universe_id}:{s}",
                    job_name=smart_money_symbols_job.name,
                    partition_key=s,
                    tags={"quant_assets/trigger": "universe"},
                )
                for s in missing
            ]
        )
    features_id = _latest_storage_id(context.instance, KEYS["features"]) or 0
    dataset_id = _latest_storage_id(context.instance, KEYS["dataset"]) or 0
    if dataset_id > max(features_id, universe_id):
        return SkipReason(f"all {len(symbols)} symbols done and the dataset is newer than their features")
    return SensorResult(
        run_requests=[
            RunRequest(
                run_key=f"train-{universe_id}-{features_id}",
                job_name=smart_money_training_job.name,
                tags={"quant_assets/trigger": "universe_complete"},
            )
        ]
    )


smart_money_jobs = [smart_money_universe_job, smart_money_symbols_job, smart_money_training_job]
smart_money_sensors = [smart_money_backfill_sensor]
