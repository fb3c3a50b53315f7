"""The house ``@asset``: one call declares what every asset of every domain carries.

``@house_asset(key, layer, kinds, version, ...)`` gives the asset its key, its domain's group and
owners (the key's first part names the domain), its kinds, ``layer`` tag and code version
(:func:`metadata.asset_kwargs`), and, when given:

* ``checks`` -- the :class:`checks.AssetChecks` the asset declares and returns (refused when
  they belong to another asset);
* ``config`` -- the pydantic Config model whose schema the launchpad shows;
* ``per_run`` -- how many partitions a backfill puts in one run.

Every other keyword (``partitions_def``, ``metadata``, ``ins``, ``deps``, ...) goes to
Dagster's ``@asset`` unchanged.
"""

from __future__ import annotations

from collections.abc import Mapping

from dagster import AssetKey, BackfillPolicy, asset
from pydantic import BaseModel

from quant_assets.defs import metadata as md
from quant_assets.defs.checks import AssetChecks
from quant_assets.defs.config import config_schema


def house_asset(
    key: AssetKey,
    layer: str,
    kinds: set[str],
    version: str,
    *,
    tags: Mapping[str, str] | None = None,
    checks: AssetChecks | None = None,
    config: type[BaseModel] | None = None,
    per_run: int | None = None,
    **asset_args,
):
    args = md.asset_kwargs(key.path[0], layer=layer, kinds=kinds, code_version=version, tags=tags)
    if checks is not None:
        if checks.key != key:
            raise ValueError(f"{key.to_user_string()} declares the checks of {checks.key.to_user_string()}")
        args["check_specs"] = checks.specs
    if config is not None:
        args["config_schema"] = config_schema(config)
    if per_run is not None:
        args["backfill_policy"] = BackfillPolicy.multi_run(max_partitions_per_run=per_run)
    return asset(key=key, **args, **asset_args)
