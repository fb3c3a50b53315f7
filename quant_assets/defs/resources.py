"""Resources: landing zone, Parquet lake (+ IO manager), SQL warehouse (the vendor API clients are
in ``quant_assets.defs.vendors``).

Every location comes from the environment (see ``quant_assets.lib.settings``); the same code runs
against a local folder + DuckDB or S3 + PostgreSQL. S3 endpoint and keys come from the usual AWS
variables (``AWS_ENDPOINT_URL``, ``AWS_ACCESS_KEY_ID``, ...), read by boto3 through dagster-aws.
"""


import contextlib
import io
import os
import threading
from typing import Any

import polars as pl
from dagster import ConfigurableIOManager, ConfigurableResource, EnvVar, InputContext, OutputContext
from dagster_aws.s3 import S3Resource

from quant_assets.defs import metadata as md
from quant_assets.lib import settings
from quant_assets.lib.storage import LocalStore, Store, open_store
from quant_assets.lib.warehouse import Warehouse

# zstd level 1: ~10 % faster writes than the default for ~8 % larger files; reads are unchanged.
ZSTD_LEVEL = 1

_STORES: dict[tuple, Store] = {}
_STORES_LOCK = threading.Lock()


def cached_store(url: str, s3: S3Resource | None) -> Store:
    """One store (and boto3 client) per location and S3 configuration in this process."""
    s3 = s3 or S3Resource()
    cache_key = (url, s3.endpoint_url, s3.region_name, s3.profile_name)
    with _STORES_LOCK:
        store = _STORES.get(cache_key)
        if store is None:
            store = open_store(url, s3.get_client() if url.startswith("s3://") else None)
            _STORES[cache_key] = store
        return store


_S3_SETTINGS = ("region_name", "endpoint_url", "profile_name", "use_ssl", "verify", "aws_access_key_id", "aws_secret_access_key", "aws_session_token")


def s3_settings(s3: Any) -> dict[str, Any]:
    """The S3 client settings of a resource, for the distributed preflight to connect with."""
    return {n: getattr(s3, n, None) for n in _S3_SETTINGS}


class LandingZone(ConfigurableResource):
    """Where vendor drops arrive: a local folder or ``s3://bucket/prefix``, in the vendors' own layout."""

    url: str
    s3: S3Resource

    def store(self) -> Store:
        return cached_store(self.url, self.s3)

    def describe(self, key: str) -> str:
        """A human-readable location for messages (never includes credentials)."""
        return f"{self.url.rstrip('/')}/{key}"

    def shared_locations(self) -> dict[str, Any]:
        """Where this resource keeps data, for the distributed preflight (nothing is connected)."""
        return {"landing": self.url, "s3": s3_settings(self.s3)}


class Lake(ConfigurableResource):
    """The Parquet lake: ``<url>/<asset key path>/<partition>.parquet`` (zstd), local or ``s3://``."""

    url: str
    s3: S3Resource

    def store(self) -> Store:
        return cached_store(self.url, self.s3)

    def write_frame(self, key: str, df: pl.DataFrame) -> int:
        """Write atomically (temp file + rename locally; single PUT on S3). Returns bytes written."""
        store = self.store()
        if isinstance(store, LocalStore):
            with store.atomic_path(key) as tmp:
                df.write_parquet(tmp, compression="zstd", compression_level=ZSTD_LEVEL, statistics=True)
                return tmp.stat().st_size
        buf = io.BytesIO()
        df.write_parquet(buf, compression="zstd", compression_level=ZSTD_LEVEL, statistics=True)
        data = buf.getvalue()
        store.write_bytes(key, data)
        return len(data)

    def read_frame(self, key: str) -> pl.DataFrame:
        store = self.store()
        path = store.local_path(key)
        if path is not None:
            if not path.is_file():
                raise FileNotFoundError(f"{path} does not exist")
            return pl.read_parquet(path)
        return pl.read_parquet(io.BytesIO(store.read_bytes(key)))

    def exists(self, key: str) -> bool:
        return self.store().exists(key)

    def describe(self, key: str) -> str:
        """The full location of ``key`` for the UI and messages."""
        return f"{self.url.rstrip('/')}/{key}"

    def delete(self, key: str) -> None:
        self.store().delete(key)

    def shared_locations(self) -> dict[str, Any]:
        """Where this resource keeps data, for the distributed preflight (nothing is connected)."""
        return {"lake": self.url, "s3": s3_settings(self.s3)}


def asset_prefix(asset_key) -> str:
    return "/".join(asset_key.path)


def partition_file(asset_key, partition_key: str | None) -> str:
    base = asset_prefix(asset_key)
    if partition_key is None:
        return f"{base}.parquet"
    # Multi-dimensional keys ("2024-01-02|AAPL") become nested folders.
    return f"{base}/{partition_key.replace('|', '/')}.parquet"


class LakeIOManager(ConfigurableIOManager):
    """Stores polars DataFrames in the lake, one file per partition.

    A run over a range of partitions hands back one frame; it is split on the column named by the
    asset's ``partition_column`` metadata (every partition in the range gets a file, an empty one
    when it has no rows) -- or the asset may return ``{partition_key: frame}``. Loading several
    upstream partitions concatenates the files that exist and logs the ones that do not; the
    consuming asset decides whether a gap matters. Loading one partition that is missing fails.
    """

    lake: Lake

    def handle_output(self, context: OutputContext, obj: Any) -> None:
        if obj is None:
            return
        keys: list[str | None] = list(context.asset_partition_keys) if context.has_asset_partitions else [None]
        if isinstance(obj, dict):
            parts = {k: obj.get(k) for k in keys}
        elif len(keys) == 1:
            parts = {keys[0]: obj}
        else:
            column = (context.definition_metadata or {}).get("partition_column")
            if column is None:
                raise ValueError(
                    f"{context.asset_key.to_user_string()} returned one frame for {len(keys)} partitions "
                    "but declares no 'partition_column' metadata to split it by"
                )
            column = getattr(column, "value", column)
            split = {str(k[0]): v for k, v in obj.partition_by(column, as_dict=True, maintain_order=True).items()}
            unknown = sorted(set(split) - set(keys))
            if unknown:
                raise ValueError(
                    f"{context.asset_key.to_user_string()} produced rows for partitions outside the run: {unknown[:5]}"
                )
            empty = obj.clear()
            parts = {k: split.get(k, empty) for k in keys}
        docs = md.docs_from_definition(context.definition_metadata)
        total_rows = total_bytes = 0
        for key, frame in parts.items():
            if frame is None:
                raise ValueError(f"{context.asset_key.to_user_string()} returned no frame for partition {key}")
            path = partition_file(context.asset_key, key)
            written = self.lake.write_frame(path, frame)
            meta = md.frame_metadata(frame, docs, uri=self.lake.describe(path), bytes_written=written)
            if key is None or not _record_partition(context, key, meta):
                context.add_output_metadata(meta)
            total_bytes += written
            total_rows += frame.height
        if len(parts) > 1:
            context.log.info(
                f"{context.asset_key.to_user_string()}: wrote {len(parts)} partitions, {total_rows:,} rows, "
                f"{total_bytes:,} bytes under {self.lake.describe(asset_prefix(context.asset_key))}/"
            )

    def load_input(self, context: InputContext) -> pl.DataFrame:
        asset_key = context.asset_key
        if not context.has_asset_partitions:
            return self.lake.read_frame(partition_file(asset_key, None))
        keys = sorted(context.asset_partition_keys)
        if len(keys) == 1:
            try:
                return self.lake.read_frame(partition_file(asset_key, keys[0]))
            except FileNotFoundError:
                raise FileNotFoundError(
                    f"{asset_key.to_user_string()} partition {keys[0]} is not materialized in the lake "
                    f"({self.lake.url}); materialize it first"
                ) from None
        frames, missing = [], []
        for key in keys:
            try:
                frames.append(self.lake.read_frame(partition_file(asset_key, key)))
            except FileNotFoundError:
                missing.append(key)
        if missing:
            context.log.info(
                f"{asset_key.to_user_string()}: {len(missing)} of {len(keys)} upstream partitions not in the lake "
                f"(first: {missing[:5]})"
            )
        frames = [f for f in frames if f.width]
        if not frames:
            return pl.DataFrame()
        return pl.concat(frames, how="vertical_relaxed")

    def shared_locations(self) -> dict[str, Any]:
        return self.lake.shared_locations()


def _record_partition(context: OutputContext, partition_key: str, meta: dict) -> bool:
    """Put ``meta`` on one partition's materialization; False where the context cannot (a context
    built by hand outside a run), in which case the caller records it for the whole output."""
    try:
        step = context.step_context
    except Exception:  # noqa: BLE001 - DagsterInvariantViolationError outside a step
        return False
    step.add_asset_metadata(meta, asset_key=context.asset_key, partition_key=partition_key)
    return True


class WarehouseResource(ConfigurableResource):
    """The SQL warehouse: ``duckdb:///path`` (default) or ``postgresql://...`` (set QUANT_WAREHOUSE_URL;
    it is passed as an EnvVar so the password never appears in the UI or logs). DDL in ``sql/`` is
    applied once per process, idempotently."""

    url: str

    @contextlib.contextmanager
    def connect(self):
        """An open warehouse with the DDL applied; closed on exit so a DuckDB file lock is not held
        past the step that needs it."""
        wh = Warehouse(self.url)
        try:
            wh.apply_ddl()
            yield wh
        finally:
            wh.close()

    def shared_locations(self) -> dict[str, Any]:
        """The warehouse URL (``warehouse`` masked for messages; ``warehouse_url`` to connect)."""
        from quant_assets.lib.warehouse import mask_url

        return {"warehouse_url": self.url, "warehouse": mask_url(self.url)}


def env_or_default(name: str, default: str):
    return EnvVar(name) if os.environ.get(name) else default


def configured_landing_store() -> Store:
    """The landing zone the environment configures, outside a run (the CLI, the demo)."""
    return LandingZone(url=settings.landing_url(), s3=S3Resource()).store()


def default_resources() -> dict[str, Any]:
    """Resources configured from the environment (embedded defaults when unset)."""
    from quant_assets.defs.vendors import FmpResource, HttpClientResource

    settings.data_dir().mkdir(parents=True, exist_ok=True)
    s3 = S3Resource()
    lake = Lake(url=env_or_default("QUANT_LAKE_URL", settings.lake_url()), s3=s3)
    return {
        "landing": LandingZone(url=env_or_default("QUANT_LANDING_URL", settings.landing_url()), s3=s3),
        "lake": lake,
        "io_manager": LakeIOManager(lake=lake),
        "warehouse": WarehouseResource(url=env_or_default("QUANT_WAREHOUSE_URL", settings.warehouse_url())),
        "http": HttpClientResource(cache_dir=env_or_default("QUANT_HTTP_CACHE_URL", ""), s3=s3),
        "fmp": FmpResource.from_environment(s3),
    }
