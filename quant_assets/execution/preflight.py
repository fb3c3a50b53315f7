"""Checks made before any step of a distributed run: every shared service answers, and nothing
depends on one machine's disk.

On the distributed path (the ``dask`` and ``k8s`` executors) the steps of one run execute on
different machines. They share exactly three services, and each step must reach all of them:

- the **lake** (and the **landing zone** it reads, and the **HTTP response cache** of the vendor
  APIs): ``s3://`` locations, never a local path;
- the **warehouse**: PostgreSQL, never a DuckDB file;
- the **Dagster instance**: run and event storage in a database server (PostgreSQL), never the
  SQLite files under one machine's ``DAGSTER_HOME``.

A run that breaks a rule, or whose services do not answer, fails before any step starts, with a
message that names the service, its location (passwords masked) and the problem. On Dask every
worker is probed as well, from its own environment: it must reach the instance, S3 and the
warehouse, resolve the same lake, landing zone and warehouse as the run, and run the same build
of ``quant_assets``.

Run the launch-time checks by hand (the Dagster instance from ``$DAGSTER_HOME/dagster.yaml``
without opening it, the locations from the environment, and the Dask scheduler and its workers
when ``QUANT_EXECUTOR=dask``)::

    .venv/bin/python -m quant_assets.execution.preflight [--executor dask] [--scheduler tcp://host:8786]
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import hashlib
import math
import os
import socket
import sys
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

# Resource keys whose locations every step of a distributed run must share.
SHARED_RESOURCES = ("lake", "landing", "warehouse", "io_manager", "http", "fmp")
LOCAL_INSTANCE_STORAGES = ("SqliteRunStorage", "SqliteEventLogStorage", "DagsterSqliteStorage", "InMemoryRunStorage")


class PreflightError(Exception):
    """A distributed run cannot start: one line per failed check, each naming its service."""

    def __init__(self, failures: Sequence[Check]):
        self.failures = list(failures)
        services = ", ".join(dict.fromkeys(f.service for f in self.failures))
        lines = [f"Preflight failed ({services}); no step was run:"]
        lines += [f"- {f.describe()}" for f in self.failures]
        super().__init__("\n".join(lines))


@dataclasses.dataclass(frozen=True)
class Check:
    """The verdict on one service: ``service`` names it, ``location`` says where (no secrets)."""

    service: str
    location: str
    ok: bool
    detail: str

    def describe(self) -> str:
        return f"{self.service} {self.location}: {self.detail}"


def _ok(service: str, location: str, detail: str = "answers") -> Check:
    return Check(service, location, True, detail)


def _fail(service: str, location: str, detail: str) -> Check:
    return Check(service, location, False, detail)


def raise_on_failures(checks: Iterable[Check]) -> list[Check]:
    checks = list(checks)
    failed = [c for c in checks if not c.ok]
    if failed:
        raise PreflightError(failed)
    return checks


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return " ".join(text.splitlines()[0:2]).strip()


def _timeout() -> float:
    from quant_assets.lib import settings

    return settings.preflight_timeout_s()


# --------------------------------------------------------------------------- locations


@dataclasses.dataclass(frozen=True)
class Locations:
    """What a run's steps read and write, as resolved from its resources."""

    lake: str | None = None
    landing: str | None = None
    warehouse: str | None = None  # masked
    http_cache: str | None = None
    s3: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    warehouse_url: str | None = dataclasses.field(default=None, repr=False, compare=False)

    def public(self) -> dict[str, str | None]:
        """The locations to compare between machines (no secrets)."""
        return {"lake": self.lake, "landing": self.landing, "warehouse": self.warehouse, "http_cache": self.http_cache}


def resolve_locations(job_def, run_config: Mapping[str, Any] | None = None, instance=None) -> Locations:
    """Build the run's shared resources exactly as its steps will (environment variables and run
    config resolved) and read their locations (each resource's ``shared_locations()``). Nothing
    is connected."""
    from dagster import build_resources

    required = set(job_def.get_required_resource_defs())
    keys = [k for k in SHARED_RESOURCES if k in required and k in job_def.resource_defs]
    configured = (run_config or {}).get("resources") or {}
    resource_config = {k: configured[k] for k in keys if k in configured}
    found: dict[str, Any] = {}
    with build_resources({k: job_def.resource_defs[k] for k in keys}, instance=instance, resource_config=resource_config) as res:
        for key in keys:
            obj = getattr(res, key)
            locations = obj.shared_locations() if hasattr(obj, "shared_locations") else {}
            for name, value in locations.items():
                if name in ("lake", "s3"):
                    found.setdefault(name, value)
                else:
                    found[name] = value
    return Locations(**found)


def location_rules(loc: Locations) -> list[Check]:
    """The distributed path refuses locations that live on one machine."""
    checks = []
    for service, url, env in (
        ("lake", loc.lake, "QUANT_LAKE_URL"),
        ("landing zone", loc.landing, "QUANT_LANDING_URL"),
        ("HTTP response cache", loc.http_cache, "QUANT_HTTP_CACHE_URL"),
    ):
        if url is None:
            continue
        if url.startswith("s3://"):
            checks.append(_ok(f"S3 {service}", url, "shared location"))
        else:
            checks.append(
                _fail(
                    service,
                    url,
                    "is a local path; steps on other machines cannot see what one machine holds there "
                    f"(set {env}=s3://bucket/prefix)",
                )
            )
    if loc.warehouse is not None:
        scheme = loc.warehouse.split(":", 1)[0].lower().split("+", 1)[0]
        if scheme in ("postgresql", "postgres"):
            checks.append(_ok("warehouse", loc.warehouse, "shared PostgreSQL"))
        else:
            checks.append(
                _fail(
                    "warehouse",
                    loc.warehouse,
                    "is a DuckDB file on one machine; steps elsewhere would each write their own "
                    "(set QUANT_WAREHOUSE_URL=postgresql://...)",
                )
            )
    return checks


# --------------------------------------------------------------------------- S3


def _s3_probe_client(settings: Mapping[str, Any], timeout: float):
    import boto3
    from botocore.config import Config

    session = boto3.session.Session(profile_name=settings.get("profile_name") or None)
    return session.client(
        "s3",
        region_name=settings.get("region_name") or None,
        endpoint_url=settings.get("endpoint_url") or None,
        use_ssl=settings.get("use_ssl") if settings.get("use_ssl") is not None else True,
        verify=settings.get("verify"),
        aws_access_key_id=settings.get("aws_access_key_id") or None,
        aws_secret_access_key=settings.get("aws_secret_access_key") or None,
        aws_session_token=settings.get("aws_session_token") or None,
        config=Config(connect_timeout=timeout, read_timeout=timeout, retries={"max_attempts": 1, "mode": "standard"}),
    )


_CREDENTIAL_CODES = {
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
    "ExpiredToken",
    "InvalidToken",
    "InvalidClientTokenId",
    "AccessDenied",
    "AllAccessDisabled",
    "AuthorizationHeaderMalformed",
    "403",
}


def check_s3(service: str, url: str, settings: Mapping[str, Any], *, write: bool, timeout: float | None = None) -> Check:
    """List (and for the lake, write and delete a marker object under) ``url``."""
    from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError, PartialCredentialsError

    from quant_assets.lib.storage import parse_s3_url

    timeout = timeout or _timeout()
    bucket, prefix = parse_s3_url(url)
    prefix = prefix.strip("/")
    try:
        client = _s3_probe_client(settings, timeout)
    except BotoCoreError as exc:
        return _fail(service, url, f"cannot build an S3 client: {_first_line(exc)}")
    endpoint = client.meta.endpoint_url
    where = f"{url} (endpoint {endpoint})"
    try:
        client.list_objects_v2(Bucket=bucket, Prefix=f"{prefix}/" if prefix else "", MaxKeys=1)
        if write:
            marker = f"{prefix}/.preflight/{socket.gethostname()}-{os.getpid()}" if prefix else f".preflight/{socket.gethostname()}-{os.getpid()}"
            client.put_object(Bucket=bucket, Key=marker, Body=b"")
            client.delete_object(Bucket=bucket, Key=marker)
    except (NoCredentialsError, PartialCredentialsError) as exc:
        return _fail(service, where, f"has no usable AWS credentials here ({_first_line(exc)}); set AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY or a profile")
    except ClientError as exc:
        error = exc.response.get("Error", {})
        code = str(error.get("Code", ""))
        message = error.get("Message") or _first_line(exc)
        if code in _CREDENTIAL_CODES:
            return _fail(service, where, f"refused the credentials ({code}: {message})")
        if code in ("NoSuchBucket", "404"):
            return _fail(service, where, f"bucket {bucket!r} does not exist")
        return _fail(service, where, f"answered with an error ({code}: {message})")
    except BotoCoreError as exc:
        return _fail(service, where, f"does not answer within {timeout:g} s ({_first_line(exc)})")
    return _ok(service, where, "answers, credentials accepted" + (", writable" if write else ""))


# --------------------------------------------------------------------------- PostgreSQL


def _libpq_url(url: str) -> str:
    from quant_assets.lib.warehouse import normalize_url

    url = normalize_url(url)
    scheme = url.split(":", 1)[0]
    return "postgresql" + url[len(scheme) :]


def check_postgres(service: str, url: str, *, timeout: float | None = None) -> Check:
    """Connect (bounded by ``timeout``) and run ``SELECT 1``."""
    import psycopg

    from quant_assets.lib.warehouse import _secrets_in, mask_url

    timeout = timeout or _timeout()
    location = mask_url(url)
    try:
        with psycopg.connect(_libpq_url(url), connect_timeout=max(1, math.ceil(timeout)), autocommit=True) as conn:
            conn.execute("SELECT 1")
    except psycopg.Error as exc:
        detail = _first_line(exc)
        # libpq does not echo passwords; a very short one would only garble the message.
        for secret in _secrets_in(url):
            if len(secret) >= 4:
                detail = detail.replace(secret, "***")
        lowered = detail.lower()
        if "password authentication failed" in lowered or "no password supplied" in lowered or "role" in lowered and "does not exist" in lowered:
            return _fail(service, location, f"refused the credentials ({detail})")
        if "database" in lowered and "does not exist" in lowered:
            return _fail(service, location, f"answers but {detail}")
        return _fail(service, location, f"does not answer ({detail})")
    return _ok(service, location)


# --------------------------------------------------------------------------- Dagster instance

INSTANCE = "Dagster instance storage"


def _storage_url(class_data) -> tuple[str, str | None]:
    """(storage class name, PostgreSQL URL or None) of a storage's ConfigurableClassData, with
    its environment variables resolved in this process."""
    import importlib

    from dagster._config import process_config

    klass = getattr(importlib.import_module(class_data.module_name), class_data.class_name)
    name = class_data.class_name
    if "Postgres" not in name:
        return name, None
    from dagster_postgres.utils import pg_url_from_config

    result = process_config(klass.config_type(), class_data.config_dict)
    if not result.success:
        raise ValueError("; ".join(e.message for e in result.errors))
    return name, pg_url_from_config(result.value)


def instance_storage(instance_ref) -> tuple[str, str | None]:
    """The storage class and, for PostgreSQL, its URL, from an InstanceRef (env resolved here)."""
    data = instance_ref.storage_data or instance_ref.run_storage_data
    return _storage_url(data)


def check_instance_ref(instance_ref, *, timeout: float | None = None, where: str = "") -> Check:
    """The instance's storage is a database server and answers, seen from this process."""
    from quant_assets.lib.warehouse import mask_url

    suffix = f" (seen from {where})" if where else ""
    try:
        name, url = instance_storage(instance_ref)
    except Exception as exc:  # noqa: BLE001 - a missing DAGSTER_PG_* variable, a bad value
        return _fail(INSTANCE, suffix.strip() or "(from the instance configuration)", f"cannot be configured here: {_first_line(exc)}")
    if name in LOCAL_INSTANCE_STORAGES:
        return _fail(
            INSTANCE,
            f"{name}{suffix}",
            "keeps runs and events in files under one machine's DAGSTER_HOME; steps elsewhere cannot "
            "record their events (use a PostgreSQL instance: dagster_home/postgres/dagster.yaml)",
        )
    if url is None:
        return _ok(INSTANCE, f"{name}{suffix}", "a database server (not probed)")
    check = check_postgres(f"{INSTANCE} (PostgreSQL)", url, timeout=timeout)
    return dataclasses.replace(check, location=f"{mask_url(url)}{suffix}")


def check_instance_config(
    dagster_home: str | os.PathLike[str] | None = None, *, timeout: float | None = None, distributed: bool = True
) -> Check:
    """The instance configured in ``$DAGSTER_HOME/dagster.yaml``, checked without opening it (a
    down PostgreSQL makes Dagster retry and then fail with a message that names no server).
    SQLite storage is refused for a ``distributed`` run only."""
    from dagster._core.instance.ref import InstanceRef

    home = str(Path(dagster_home or os.environ.get("DAGSTER_HOME") or "").expanduser())
    if not home or not Path(home).is_dir():
        return _fail(INSTANCE, home or "(DAGSTER_HOME unset)", "DAGSTER_HOME is not a directory")
    try:
        ref = InstanceRef.from_dir(home, config_dir=home)
        data = ref.storage_data or ref.run_storage_data
    except Exception as exc:  # noqa: BLE001
        return _fail(INSTANCE, f"{home}/dagster.yaml", f"cannot be read: {_first_line(exc)}")
    try:
        name, url = _storage_url(data)
    except Exception as exc:  # noqa: BLE001
        return _fail(INSTANCE, f"{home}/dagster.yaml", f"cannot be configured: {_first_line(exc)}")
    if url is None:
        local = name in LOCAL_INSTANCE_STORAGES
        if local and distributed:
            return _fail(
                INSTANCE,
                f"{name} ({home}/dagster.yaml)",
                "keeps runs and events in files under this machine's DAGSTER_HOME; a distributed run needs "
                "a PostgreSQL instance (dagster_home/postgres/dagster.yaml)",
            )
        return _ok(INSTANCE, f"{name} ({home}/dagster.yaml)", "local files under DAGSTER_HOME" if local else "configured")
    from quant_assets.lib.warehouse import mask_url

    check = check_postgres(f"{INSTANCE} (PostgreSQL)", url, timeout=timeout)
    return dataclasses.replace(check, location=f"{mask_url(url)} ({home}/dagster.yaml)")


# --------------------------------------------------------------------------- the code itself


@functools.lru_cache(maxsize=1)
def code_fingerprint() -> str:
    """A hash of the package's source and the warehouse DDL: equal on machines running the same build."""
    import quant_assets
    from quant_assets.lib.warehouse import default_sql_dir

    h = hashlib.sha256()
    roots = [Path(quant_assets.__file__).resolve().parent, default_sql_dir()]
    for root in roots:
        if not root.is_dir():
            continue
        for path in sorted(p for p in root.rglob("*") if p.suffix in (".py", ".sql", ".csv") and "__pycache__" not in p.parts):
            h.update(path.relative_to(root).as_posix().encode())
            h.update(path.read_bytes())
    return h.hexdigest()[:16]


# --------------------------------------------------------------------------- a whole run


def shared_service_checks(loc: Locations, *, timeout: float | None = None, where: str = "") -> list[Check]:
    """The location rules, then a probe of each shared service the locations name."""
    checks = location_rules(loc)
    if any(not c.ok for c in checks):
        return checks
    suffix = f" (seen from {where})" if where else ""
    probes = []
    if loc.lake:
        probes.append(check_s3("S3 lake", loc.lake, loc.s3, write=True, timeout=timeout))
    if loc.landing:
        probes.append(check_s3("S3 landing zone", loc.landing, loc.s3, write=False, timeout=timeout))
    if loc.http_cache:
        probes.append(check_s3("S3 HTTP response cache", loc.http_cache, loc.s3, write=True, timeout=timeout))
    if loc.warehouse_url:
        probes.append(check_postgres("warehouse (PostgreSQL)", loc.warehouse_url, timeout=timeout))
    return checks + [dataclasses.replace(c, location=c.location + suffix) for c in probes]


def check_run(job_def, run_config, instance, *, timeout: float | None = None) -> tuple[Locations, list[Check]]:
    """Every check the orchestrating process can make for a distributed run."""
    checks = [check_instance_ref(instance.get_ref(), timeout=timeout)]
    try:
        loc = resolve_locations(job_def, run_config, instance)
    except Exception as exc:  # noqa: BLE001 - a resource that cannot even be configured
        return Locations(), checks + [_fail("resources", job_def.name, f"cannot be configured: {_first_line(exc)}")]
    return loc, checks + shared_service_checks(loc, timeout=timeout)


# --------------------------------------------------------------------------- Dask


def connect_scheduler(address: str, *, timeout: float | None = None, min_workers: int = 1):
    """A ``distributed.Client`` on ``address``, or a PreflightError naming the scheduler."""
    from distributed import Client

    timeout = timeout or _timeout()
    try:
        client = Client(address, timeout=f"{timeout}s", set_as_default=False)
    except (OSError, TimeoutError) as exc:
        raise PreflightError([_fail("Dask scheduler", address, f"does not answer within {timeout:g} s ({_first_line(exc)})")]) from None
    try:
        client.wait_for_workers(min_workers, timeout=timeout)
    except (OSError, TimeoutError):
        client.close()
        raise PreflightError([_fail("Dask scheduler", address, f"answers but no worker connected within {timeout:g} s")]) from None
    return client


def probe_worker(job_origin, asset_selection, run_config, instance_ref, expected: Mapping[str, Any], timeout: float, dask_worker=None) -> list[dict]:
    """Run on each Dask worker (``Client.run``): the checks of :func:`check_run`, from the
    worker's own environment, plus "same build" and "same locations" as the run."""
    from dagster._utils.hosted_user_process import recon_job_from_origin

    where = f"Dask worker {dask_worker.address}" if dask_worker is not None else f"{socket.gethostname()} pid {os.getpid()}"
    checks = [check_instance_ref(instance_ref, timeout=timeout, where=where)]
    fingerprint = code_fingerprint()
    if fingerprint != expected["fingerprint"]:
        checks.append(
            _fail("code", where, f"runs another build of quant_assets ({fingerprint}, the run's is {expected['fingerprint']}); deploy the same image everywhere")
        )
    try:
        recon = recon_job_from_origin(job_origin)
        if asset_selection:
            recon = recon.get_subset(asset_selection=set(asset_selection))
        loc = resolve_locations(recon.get_definition(), run_config)
    except Exception as exc:  # noqa: BLE001
        checks.append(_fail("code location", where, f"does not load: {_first_line(exc)}"))
        return [dataclasses.asdict(c) for c in checks]
    for name, value in loc.public().items():
        want = expected["locations"].get(name)
        if value != want:
            env = {"lake": "QUANT_LAKE_URL", "landing": "QUANT_LANDING_URL", "warehouse": "QUANT_WAREHOUSE_URL"}[name]
            checks.append(_fail(name, where, f"resolves to {value} but the run's is {want}; give every worker the run's {env}"))
    if all(c.ok for c in checks):
        checks += shared_service_checks(loc, timeout=timeout, where=where)
    return [dataclasses.asdict(c) for c in checks]


def check_workers(client, job_origin, asset_selection, run_config, instance_ref, loc: Locations, *, timeout: float | None = None) -> list[Check]:
    timeout = timeout or _timeout()
    expected = {"fingerprint": code_fingerprint(), "locations": loc.public()}
    try:
        results = client.run(probe_worker, job_origin, asset_selection, run_config, instance_ref, expected, timeout)
    except Exception as exc:  # noqa: BLE001 - a worker that died while probed
        return [_fail("Dask workers", str(client.scheduler.address), f"could not be probed: {_first_line(exc)}")]
    checks = []
    for _, found in sorted(results.items()):
        checks += [Check(**c) for c in found]
    return checks


# --------------------------------------------------------------------------- command line


def main(argv: Sequence[str] | None = None) -> int:
    from quant_assets.lib import settings

    parser = argparse.ArgumentParser(prog="python -m quant_assets.execution.preflight", description=__doc__.split("\n\n")[0])
    parser.add_argument("--executor", choices=settings.EXECUTORS, default=None, help="default: QUANT_EXECUTOR")
    parser.add_argument("--scheduler", default=None, help="Dask scheduler address (default: QUANT_DASK_SCHEDULER)")
    parser.add_argument("--job", default="market_trading_day_job", help="the job whose resources are checked")
    args = parser.parse_args(argv)
    kind = args.executor or settings.executor_kind()
    distributed = kind in ("dask", "k8s")

    checks = [check_instance_config(distributed=distributed)]
    from dagster._core.definitions.reconstruct import ReconstructableRepository

    recon = ReconstructableRepository.for_module("quant_assets.definitions", "defs").get_reconstructable_job(args.job)
    loc = resolve_locations(recon.get_definition(), {})
    checks += shared_service_checks(loc) if distributed else []
    address = args.scheduler or settings.dask_scheduler()
    if kind == "dask" and address and all(c.ok for c in checks):
        from dagster import DagsterInstance

        try:
            client = connect_scheduler(address)
        except PreflightError as exc:
            checks += exc.failures
        else:
            with client, DagsterInstance.get() as instance:
                workers = len(client.scheduler_info(n_workers=-1)["workers"])
                checks.append(_ok("Dask scheduler", address, f"answers, {workers} worker(s)"))
                checks += check_workers(client, recon.get_python_origin(), None, {}, instance.get_ref(), loc)
    for c in checks:
        print(f"{'ok  ' if c.ok else 'FAIL'} {c.describe()}")
    failed = [c for c in checks if not c.ok]
    if failed:
        services = ", ".join(dict.fromkeys(f.service for f in failed))
        print(f"preflight failed for the {kind} executor ({services})", file=sys.stderr)
        return 1
    print(f"preflight passed for the {kind} executor")
    return 0


if __name__ == "__main__":
    sys.exit(main())
