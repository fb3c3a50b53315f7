"""quant-assets: one Dagster code location for quant research."""
