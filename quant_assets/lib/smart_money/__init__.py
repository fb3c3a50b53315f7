"""Smart-money flow: insider, institutional, congressional, hedge-fund and ETF activity as
point-in-time features, 14-day labels, the dataset, time-ordered splits and a LightGBM model.
No Dagster here: the assets in ``quant_assets.defs.smart_money`` call these functions."""
