"""The market graph on a real Dask cluster: a ``distributed`` scheduler and two worker processes on
loopback, the PostgreSQL instance and warehouse, and the S3 lake and landing zone (moto).

Runs are launched the way a run worker launches them: a separate Python process with the
deployment's environment (``QUANT_EXECUTOR=dask``, ``QUANT_DASK_SCHEDULER``, the ``s3://`` lake,
``DAGSTER_PG_*``) executes the run, and the steps go to the workers. The same run on the default
(multiprocess) executor writes into another lake prefix; the two lakes must be equal byte for
byte. A worker killed mid-step fails the run with a message that says so, and re-executing the
run from failure completes it with the same bytes. A run whose scheduler, S3 lake or instance
does not answer fails before any step, naming it.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from urllib.parse import urlsplit

import polars as pl
import pytest
from dagster import DagsterEventType

from quant_assets.lib import calendar as cal
from quant_assets.lib.sources import polygon
from quant_assets_tests.servers import DaskCluster, _free_port

REPO = Path(__file__).resolve().parents[1]
FIRST, LAST = "2024-01-02", "2024-01-12"
MISSING_DAY = "2024-01-16"  # a session whose file is not in the landing zone
JOB = "market_trading_day_job"
RANGE = {"dagster/asset_partition_range_start": FIRST, "dagster/asset_partition_range_end": LAST}
QUIET = {"loggers": {"console": {"config": {"log_level": "ERROR"}}}}
# The default executor, with its children forked from a process that has imported the code
# location once (the spawn default imports it again for every step).
MULTIPROCESS = {
    "execution": {
        "config": {"multiprocess": {"start_method": {"forkserver": {"preload_modules": ["quant_assets.definitions"]}}}}
    }
}
WAREHOUSE_STEP = "market__warehouse_daily_bars"

# The run worker: executes the runs given as JSON, one after another, in this environment (each
# may add variables), and prints one JSON line per run. A run marked "wait" waits for a line on
# stdin first; "reexecute" re-executes the previous run from failure.
DRIVER = r"""
import json, os, sys
from dagster import DagsterInstance, ReexecutionOptions, execute_job
from dagster._core.definitions.reconstruct import ReconstructableRepository
from dagster._utils.interrupts import capture_interrupts

repo = ReconstructableRepository.for_module("quant_assets.definitions", "defs", working_directory=os.getcwd())
previous = None
with DagsterInstance.get() as instance:
    for spec in json.loads(sys.argv[1]):
        if spec.get("wait"):
            sys.stdin.readline()
        saved = {k: os.environ.get(k) for k in spec.get("env", {})}
        os.environ.update(spec.get("env", {}))
        # As `dagster api execute_run` does: SIGINT / SIGTERM terminate the run, not the process.
        try:
            job = repo.get_reconstructable_job(spec["job"])
            if spec.get("reexecute"):
                # As the UI does: the parent's run config and its partition and user tags.
                parent = instance.get_run_by_id(previous)
                keep = ("dagster/partition", "dagster/asset_partition_range_start", "dagster/asset_partition_range_end")
                tags = {k: v for k, v in parent.tags.items() if k in keep or not k.startswith("dagster/")}
                options = ReexecutionOptions.from_failure(previous, instance)
                with capture_interrupts():
                    result = execute_job(job, instance, run_config=parent.run_config, tags=tags, reexecution_options=options, raise_on_error=False)
            else:
                with capture_interrupts():
                    result = execute_job(job, instance, run_config=spec.get("run_config"), tags=spec.get("tags"), raise_on_error=False)
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
        previous = result.run_id
        status = instance.get_run_by_id(result.run_id).status.value
        print(json.dumps({"label": spec["label"], "run_id": result.run_id, "success": result.success, "status": status}), flush=True)
"""


def _upload_landing(client, bucket: str, source: Path, days: list[str]) -> None:
    for day in days:
        key = polygon.day_aggs_key(day)
        path = source / key
        if path.exists():
            client.put_object(Bucket=bucket, Key=f"landing/{key}", Body=path.read_bytes())


class Deployment:
    """The shared services of one distributed deployment and the environment every process gets."""

    def __init__(self, root: Path, env: dict[str, str], bucket: str, s3_client, cluster: DaskCluster, home: Path):
        self.root, self.env, self.bucket, self.s3, self.cluster, self.home = root, env, bucket, s3_client, cluster, home
        self._instance = None

    def launch(self, specs: list[dict], *, stdin: bool = False) -> subprocess.Popen:
        return subprocess.Popen(
            [sys.executable, "-c", DRIVER, json.dumps(specs)],
            cwd=REPO,
            env=self.env,
            stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=open(self.root / f"driver-{uuid.uuid4().hex[:6]}.log", "wb"),
            text=True,
        )

    def run(self, specs: list[dict], timeout_s: float = 400) -> dict[str, dict]:
        proc = self.launch(specs)
        try:
            out, _ = proc.communicate(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise
        results = {r["label"]: r for r in map(json.loads, filter(None, out.splitlines()))}
        assert len(results) == len(specs), f"driver exited with {proc.returncode}: {out}\n{self.logs()}"
        return results

    def logs(self) -> str:
        return "\n".join(p.read_text(errors="replace")[-3000:] for p in sorted(self.root.glob("driver-*.log")))

    @property
    def instance(self):
        """The deployment's Dagster instance (PostgreSQL), opened from this process."""
        if self._instance is None:
            from dagster import DagsterInstance

            self._instance = DagsterInstance.from_config(str(self.home))
        return self._instance

    def events(self, run_id: str, kind: DagsterEventType):
        return [r.event_log_entry for r in self.instance.get_records_for_run(run_id, of_type=kind).records]

    def lake(self, prefix: str) -> dict[str, bytes]:
        out = {}
        for page in self.s3.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=f"{prefix}/"):
            for obj in page.get("Contents", []):
                key = obj["Key"]
                out[key[len(prefix) + 1 :]] = self.s3.get_object(Bucket=self.bucket, Key=key)["Body"].read()
        return out


@pytest.fixture(scope="module")
def deployment(postgres_server, s3_server, simulated_landing, tmp_path_factory):
    import boto3

    root = tmp_path_factory.mktemp("distributed")
    instance_db = postgres_server.create_database(f"qa_instance_{uuid.uuid4().hex[:8]}")
    warehouse_db = postgres_server.create_database(f"qa_wh_{uuid.uuid4().hex[:8]}")
    home = root / "dagster_home"
    home.mkdir()
    shutil.copy(REPO / "dagster_home" / "postgres" / "dagster.yaml", home / "dagster.yaml")

    s3 = boto3.client("s3", endpoint_url=s3_server, region_name="us-east-1")
    bucket = f"quant-dist-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=bucket)
    _upload_landing(s3, bucket, simulated_landing, [d.isoformat() for d in cal.weekdays(FIRST, LAST)])

    env = {k: v for k, v in os.environ.items() if not k.startswith(("QUANT_", "DAGSTER_", "AWS_"))} | {
        "DAGSTER_HOME": str(home),
        "DAGSTER_PG_HOST": postgres_server.host,
        "DAGSTER_PG_PORT": str(postgres_server.port),
        "DAGSTER_PG_USER": postgres_server.user,
        "DAGSTER_PG_PASSWORD": postgres_server.password or "",
        "DAGSTER_PG_DB": urlsplit(instance_db).path.lstrip("/"),
        "QUANT_DATA_DIR": str(root / "data"),
        "QUANT_START_DATE": os.environ["QUANT_START_DATE"],
        "QUANT_END_DATE": os.environ["QUANT_END_DATE"],
        "QUANT_LANDING_URL": f"s3://{bucket}/landing",
        "QUANT_LAKE_URL": f"s3://{bucket}/lake-dask",
        "QUANT_WAREHOUSE_URL": warehouse_db,
        "QUANT_EXECUTOR": "dask",
        "QUANT_PREFLIGHT_TIMEOUT_S": "5",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ENDPOINT_URL": s3_server,
    }
    cluster = DaskCluster(env, root / "dask", workers=2, preload=("quant_assets.definitions",))
    try:
        cluster.start()
    except Exception as exc:  # noqa: BLE001
        cluster.stop()
        pytest.fail(f"cannot start the Dask cluster: {exc}\n{cluster.log_tail()}")
    env["QUANT_DASK_SCHEDULER"] = cluster.address
    dep = Deployment(root, env, bucket, s3, cluster, home)
    try:
        with pytest.MonkeyPatch.context() as mp:
            for k in ("DAGSTER_PG_HOST", "DAGSTER_PG_PORT", "DAGSTER_PG_USER", "DAGSTER_PG_PASSWORD", "DAGSTER_PG_DB"):
                mp.setenv(k, env[k])
            yield dep
            if dep._instance is not None:
                dep._instance.dispose()
    finally:
        cluster.stop()
        postgres_server.drop_database(urlsplit(instance_db).path.lstrip("/"))
        postgres_server.drop_database(urlsplit(warehouse_db).path.lstrip("/"))


def _failure_message(dep: Deployment, run_id: str) -> str:
    (entry,) = dep.events(run_id, DagsterEventType.RUN_FAILURE)
    data = entry.dagster_event.event_specific_data
    error = getattr(data, "error", None)
    return f"{entry.dagster_event.message} {error.to_string() if error else ''}"


@pytest.fixture(scope="module")
def first_runs(deployment, s3_strict_server):
    """One run worker executes, in order: the reference run on the default executor (its own
    lake prefix), three runs whose shared services fail, a run missing a landing file, and the
    run on Dask."""
    closed = str(_free_port())
    specs = [
        {"label": "reference", "job": JOB, "tags": RANGE, "run_config": {**MULTIPROCESS, **QUIET},
         "env": {"QUANT_LAKE_URL": f"s3://{deployment.bucket}/lake-default"}},
        {"label": "instance_down", "job": JOB, "tags": RANGE, "run_config": QUIET, "env": {"DAGSTER_PG_PORT": closed}},
        {"label": "s3_refused", "job": JOB, "tags": RANGE, "run_config": QUIET, "env": {"AWS_ENDPOINT_URL": s3_strict_server}},
        {"label": "scheduler_down", "job": JOB, "tags": RANGE, "env": {"QUANT_PREFLIGHT_TIMEOUT_S": "2"},
         "run_config": {**QUIET, "execution": {"config": {"dask": {"cluster": {"existing": {"address": f"tcp://127.0.0.1:{closed}"}}}}}}},
        {"label": "missing_file", "job": JOB, "tags": {"dagster/partition": MISSING_DAY}, "run_config": QUIET},
        {"label": "dask", "job": JOB, "tags": RANGE, "run_config": QUIET},
    ]
    return deployment.run(specs), closed


def _started_steps(dep: Deployment, run_id: str) -> set[str]:
    return {e.dagster_event.step_key for e in dep.events(run_id, DagsterEventType.STEP_START)}


def test_dask_run_equals_the_default_executor_byte_for_byte(deployment, first_runs):
    results, _ = first_runs
    assert results["reference"]["success"], deployment.logs()
    assert results["dask"]["success"], deployment.logs() + deployment.cluster.log_tail()
    run_id = results["dask"]["run_id"]
    steps = {"market__day_aggs", "market__daily_bars", "market__daily_filtered", WAREHOUSE_STEP}
    assert _started_steps(deployment, run_id) == steps

    # Every step ran in a Dask worker process, none in the run worker.
    worker_pids = set(deployment.cluster.worker_pids().values())
    started = deployment.events(run_id, DagsterEventType.STEP_WORKER_STARTED)
    step_pids = {e.dagster_event.step_key: int(e.dagster_event.event_specific_data.metadata["pid"].value) for e in started}
    assert set(step_pids) == steps
    assert set(step_pids.values()) <= worker_pids, (step_pids, worker_pids)
    (preflight,) = [
        e for e in deployment.events(run_id, DagsterEventType.ENGINE_EVENT) if "Preflight for the dask executor" in (e.message or "")
    ]
    assert "passed" in preflight.message

    reference, distributed = deployment.lake("lake-default"), deployment.lake("lake-dask")
    days = [d.isoformat() for d in cal.trading_days(FIRST, LAST)]
    for asset in ("day_aggs", "daily_bars", "daily_filtered"):
        assert {f"market/{asset}/{d}.parquet" for d in days} <= set(reference)
    assert sorted(distributed) == sorted(reference)
    assert [k for k in reference if reference[k] != distributed[k]] == []

    # The load on a worker wrote the warehouse; its check compared it with the lake.
    checks = deployment.events(run_id, DagsterEventType.ASSET_CHECK_EVALUATION)
    verdicts = {e.dagster_event.event_specific_data.check_name: e.dagster_event.event_specific_data.passed for e in checks}
    assert verdicts["rows_match_lake"] is True


@pytest.mark.parametrize(
    ("label", "names"),
    [
        ("instance_down", ["Dagster instance storage (PostgreSQL)", "does not answer"]),
        ("s3_refused", ["S3 lake s3://", "refused the credentials", "InvalidAccessKeyId"]),
        ("scheduler_down", ["Dask scheduler tcp://127.0.0.1:", "does not answer"]),
    ],
)
def test_a_service_that_fails_stops_the_run_before_any_step(deployment, first_runs, label, names):
    results, closed = first_runs
    run = results[label]
    assert not run["success"]
    assert _started_steps(deployment, run["run_id"]) == set()
    message = _failure_message(deployment, run["run_id"])
    assert "Preflight failed" in message and "no step was run" in message
    for name in names:
        assert name in message, message
    if label != "s3_refused":
        assert f":{closed}" in message
    assert "testing" not in message  # the dummy secret key never shows


def test_a_failed_step_skips_downstream_on_dask(deployment, first_runs):
    results, _ = first_runs
    run_id = results["missing_file"]["run_id"]
    assert not results["missing_file"]["success"]
    assert _started_steps(deployment, run_id) == {"market__day_aggs"}
    (failure,) = deployment.events(run_id, DagsterEventType.STEP_FAILURE)
    assert "missing_file" in failure.dagster_event.event_specific_data.error.message
    # Dagster's own orchestration: what reads a failed step is not run (on stale lake files).
    not_run = {e.step_key for e in deployment.instance.all_logs(run_id) if "Not executing" in (e.user_message or "")}
    assert not_run == {"market__daily_bars", "market__daily_filtered", WAREHOUSE_STEP}


def _wait_for_step_pid(dep: Deployment, tags: dict[str, str], step_key: str, timeout_s: float = 180) -> tuple[str, int]:
    from dagster import RunsFilter

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        runs = dep.instance.get_runs(RunsFilter(tags=tags), limit=1)
        if runs:
            for e in dep.events(runs[0].run_id, DagsterEventType.STEP_START):
                if e.dagster_event.step_key == step_key:
                    for s in dep.events(runs[0].run_id, DagsterEventType.STEP_WORKER_STARTED):
                        if s.dagster_event.step_key == step_key:
                            return runs[0].run_id, int(s.dagster_event.event_specific_data.metadata["pid"].value)
        time.sleep(0.3)
    raise TimeoutError(f"step {step_key} never started:\n{dep.logs()}")


def test_a_killed_worker_fails_its_step_a_rerun_completes_and_termination_restarts_the_worker(deployment, first_runs):
    import psycopg

    results, _ = first_runs
    assert results["dask"]["success"]
    warehouse = deployment.env["QUANT_WAREHOUSE_URL"]
    # Hold the table the load writes: the load step waits on it, inside a Dask worker.
    holder = psycopg.connect(warehouse)
    holder.execute("LOCK TABLE market_daily_bars IN ACCESS EXCLUSIVE MODE")
    tags = {**RANGE, "quant_assets_tests/case": f"killed-{uuid.uuid4().hex[:8]}"}
    terminated = {**RANGE, "quant_assets_tests/case": f"terminated-{uuid.uuid4().hex[:8]}"}
    proc = deployment.launch(
        [
            {"label": "killed", "job": JOB, "tags": tags, "run_config": QUIET},
            {"label": "rerun", "job": JOB, "reexecute": True, "wait": True},
            {"label": "terminated", "job": JOB, "tags": terminated, "run_config": QUIET, "wait": True},
        ],
        stdin=True,
    )
    try:
        run_id, pid = _wait_for_step_pid(deployment, {"quant_assets_tests/case": tags["quant_assets_tests/case"]}, WAREHOUSE_STEP)
        assert pid in deployment.cluster.worker_pids().values()
        time.sleep(1.0)  # the load is waiting for the lock
        os.kill(pid, signal.SIGKILL)
        killed = json.loads(proc.stdout.readline())
    finally:
        holder.close()
    assert killed["run_id"] == run_id and not killed["success"]
    (failure,) = deployment.events(run_id, DagsterEventType.STEP_FAILURE)
    assert failure.dagster_event.step_key == WAREHOUSE_STEP
    message = failure.dagster_event.event_specific_data.error.message
    assert "died mid-step" in message and "Re-execute the run from failure" in message, message
    # The other branch finished on the surviving worker.
    successes = {e.dagster_event.step_key for e in deployment.events(run_id, DagsterEventType.STEP_SUCCESS)}
    assert successes == {"market__day_aggs", "market__daily_bars", "market__daily_filtered"}

    deployment.cluster.wait_for_workers(2)  # the nanny restarted the killed worker
    proc.stdin.write("go\n")
    proc.stdin.flush()
    rerun = json.loads(proc.stdout.readline())
    assert rerun["success"], deployment.logs()
    assert _started_steps(deployment, rerun["run_id"]) == {WAREHOUSE_STEP}
    reference, distributed = deployment.lake("lake-default"), deployment.lake("lake-dask")
    assert sorted(distributed) == sorted(reference)
    assert [k for k in reference if reference[k] != distributed[k]] == []
    with psycopg.connect(warehouse) as conn:
        rows = conn.execute("SELECT count(*) FROM market_daily_bars WHERE date BETWEEN %s AND %s", (FIRST, LAST)).fetchone()[0]
    lake_rows = sum(pl.read_parquet(io.BytesIO(v)).height for k, v in reference.items() if k.startswith("market/daily_bars/"))
    assert rows == lake_rows > 0

    # Terminating a run (the run worker gets SIGINT / SIGTERM) cancels its running step's task and
    # restarts the worker process that runs it: a thread cannot be interrupted.
    holder = psycopg.connect(warehouse)
    holder.execute("LOCK TABLE market_daily_bars IN ACCESS EXCLUSIVE MODE")
    try:
        proc.stdin.write("go\n")
        proc.stdin.flush()
        run_id, pid = _wait_for_step_pid(deployment, {"quant_assets_tests/case": terminated["quant_assets_tests/case"]}, WAREHOUSE_STEP)
        time.sleep(1.0)
        proc.send_signal(signal.SIGINT)
        stopped = json.loads(proc.stdout.readline())
    finally:
        holder.close()
    proc.wait(timeout=60)
    assert stopped["run_id"] == run_id and not stopped["success"]
    assert stopped["status"] in ("CANCELED", "FAILURE")
    messages = [e.message or "" for e in deployment.events(run_id, DagsterEventType.ENGINE_EVENT)]
    assert any(m.startswith(f"Cancelled step {WAREHOUSE_STEP}'s Dask task and restarted the worker") for m in messages), messages
    deadline = time.monotonic() + 60
    while pid in deployment.cluster.worker_pids().values() and time.monotonic() < deadline:
        time.sleep(0.5)
    assert pid not in deployment.cluster.worker_pids().values()
    deployment.cluster.wait_for_workers(2)
