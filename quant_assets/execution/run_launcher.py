"""A run launcher that lets Dagster's run monitoring see a dead run worker.

Dagster's default launcher starts each run in a local process but cannot tell the monitoring
daemon whether that process is still alive, so a run killed with ``kill -9`` (or by the OOM
killer) stays STARTED for ever and keeps its concurrency slots (the ``warehouse`` pool: every
later load waits). This launcher is the default launcher plus a health check: the run's worker
is the process that reported the run's start; when that process is gone (or its PID now belongs
to a younger process), the worker has died and monitoring marks the run failed, which frees its
slots (``run_monitoring.free_slots_after_run_end_seconds`` in ``dagster.yaml``).

It only judges workers on its own host; for a run started elsewhere it answers "running" and
leaves the verdict to ``max_runtime_seconds``. Configure it in ``dagster.yaml``::

    run_launcher:
      module: quant_assets.execution.run_launcher
      class: MonitoredRunLauncher
"""

from __future__ import annotations

import socket

import psutil
from dagster import DagsterEventType, DagsterRun
from dagster._core.launcher import CheckRunHealthResult, LaunchRunContext, WorkerStatus
from dagster._core.launcher.default_run_launcher import DefaultRunLauncher

HOST_TAG = "quant_assets/run_host"
# A process created this long after the run started cannot be the run's worker.
PID_REUSE_TOLERANCE_S = 2.0


def worker_of(instance, run_id: str) -> tuple[int, float] | None:
    """(pid, start timestamp) of the process that reported the run's start, if it has."""
    records = instance.get_records_for_run(run_id, of_type=DagsterEventType.RUN_START, limit=1).records
    if not records:
        return None
    entry = records[0].event_log_entry
    pid = entry.dagster_event.pid if entry.dagster_event else None
    return (int(pid), float(entry.timestamp)) if pid else None


def worker_alive(pid: int, started: float) -> bool:
    try:
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            return False
        return proc.create_time() <= started + PID_REUSE_TOLERANCE_S
    except psutil.NoSuchProcess:
        return False


class MonitoredRunLauncher(DefaultRunLauncher):
    """Dagster's default launcher with a worker health check for run monitoring."""

    def launch_run(self, context: LaunchRunContext) -> None:
        self._instance.add_run_tags(context.dagster_run.run_id, {HOST_TAG: socket.gethostname()})
        super().launch_run(context)

    @property
    def supports_check_run_worker_health(self) -> bool:
        return True

    def check_run_worker_health(self, run: DagsterRun) -> CheckRunHealthResult:
        host = run.tags.get(HOST_TAG)
        if host is not None and host != socket.gethostname():
            return CheckRunHealthResult(WorkerStatus.RUNNING, f"worker runs on {host}; not judged from here")
        worker = worker_of(self._instance, run.run_id)
        if worker is None:
            return CheckRunHealthResult(WorkerStatus.RUNNING, "the worker has not reported its start yet")
        pid, started = worker
        if worker_alive(pid, started):
            return CheckRunHealthResult(WorkerStatus.RUNNING)
        return CheckRunHealthResult(
            WorkerStatus.FAILED, f"the run worker (pid {pid}) is gone: killed or crashed without reporting"
        )
