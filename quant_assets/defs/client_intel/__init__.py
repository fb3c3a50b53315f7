"""The client_intel group: a deterministic world of FX clients and their behaviour, in the lake
and in the SQL warehouse."""

from dagster import AssetSelection, Definitions, define_asset_job

from quant_assets.defs.client_intel.assets import WAREHOUSE_KEY, client_intel_world, warehouse_tables

client_intel_job = define_asset_job(
    "client_intel_job",
    selection=AssetSelection.assets(client_intel_world, warehouse_tables),
    description="Build the client-intelligence world (all nine client_intel tables, with their checks) and load "
    f"it into the SQL warehouse ({WAREHOUSE_KEY.to_user_string()}).",
)

defs = Definitions(assets=[client_intel_world, warehouse_tables], jobs=[client_intel_job])
