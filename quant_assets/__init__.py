"""quant-assets: one Dagster code location for quant research."""

from quant_assets import warnings_policy  # noqa: F401  (silences only the Dagster warnings we accepted)
