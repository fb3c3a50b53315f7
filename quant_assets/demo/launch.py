"""Launch runs against the workspace's code location, as the UI or a backfill would.

A run created here carries the code location's origin and job snapshot, so the Dagster UI lists
it under its job and can re-execute it. It executes in this process (the code is already
imported), with the in-process executor.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from dagster import AssetKey, DagsterInstance, DagsterRun, DagsterRunStatus

RANGE_START = "dagster/asset_partition_range_start"
RANGE_END = "dagster/asset_partition_range_end"
PARTITION = "dagster/partition"
IMPLICIT_ASSET_JOB = "__ASSET_JOB"
IN_PROCESS = {"execution": {"config": {"in_process": {}}}}
# The terminal shows one line per run; every event stays in the run's log in the UI.
QUIET = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}


@dataclasses.dataclass
class RunSpec:
    """One run: a named job (or the implicit asset job), an optional asset selection, and a
    single partition or an inclusive range of partition keys."""

    label: str
    job_name: str = IMPLICIT_ASSET_JOB
    assets: Sequence[AssetKey] | None = None
    first: str | None = None
    last: str | None = None
    run_config: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    tags: Mapping[str, str] = dataclasses.field(default_factory=dict)

    def partition_tags(self) -> dict[str, str]:
        if self.first is None:
            return {}
        if self.last is None or self.last == self.first:
            return {PARTITION: self.first}
        return {RANGE_START: self.first, RANGE_END: self.last}


def backfill_specs(label: str, job_name: str, keys: Sequence[str], per_run: int | None, **kwargs: Any) -> list[RunSpec]:
    """The runs a backfill of ``keys`` launches under ``BackfillPolicy.multi_run(per_run)``: one
    run per consecutive slice of at most ``per_run`` keys (``None``: one run for the whole
    range), labelled "label 1/3", "label 2/3", ..."""
    keys = list(keys)
    if not keys:
        return []
    size = per_run or len(keys)
    chunks = [keys[i : i + size] for i in range(0, len(keys), size)]
    return [
        RunSpec(label if len(chunks) == 1 else f"{label} {n}/{len(chunks)}", job_name, first=c[0], last=c[-1], **kwargs)
        for n, c in enumerate(chunks, 1)
    ]


def default_workspace_file() -> Path:
    return Path(__file__).resolve().parents[2] / "workspace.yaml"


class WorkspaceLauncher:
    """Opens the workspace once (it starts the code location's server) and runs specs through it."""

    def __init__(self, instance: DagsterInstance, workspace_file: Path | None = None, location: str = "quant_assets"):
        self.instance = instance
        self.workspace_file = Path(workspace_file or default_workspace_file())
        self.location_name = location
        self._stack = contextlib.ExitStack()

    def __enter__(self) -> WorkspaceLauncher:
        from dagster._core.workspace.context import WorkspaceProcessContext
        from dagster._core.workspace.load_target import WorkspaceFileTarget

        process = self._stack.enter_context(
            WorkspaceProcessContext(
                self.instance,
                WorkspaceFileTarget(paths=[str(self.workspace_file)]),
                code_server_log_level="WARNING",
            )
        )
        self.context = process.create_request_context()
        errors = self.context.get_code_location_error(self.location_name)
        if errors is not None:
            raise RuntimeError(f"code location {self.location_name!r} failed to load: {errors.message}")
        self.location = self.context.get_code_location(self.location_name)
        (self.repository,) = self.location.get_repositories().values()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stack.close()

    def create(self, spec: RunSpec) -> DagsterRun:
        from dagster._core.definitions.selector import JobSubsetSelector
        from dagster._core.utils import make_new_run_id

        selector = JobSubsetSelector(
            location_name=self.location_name,
            repository_name=self.repository.name,
            job_name=spec.job_name,
            op_selection=None,
            asset_selection=list(spec.assets) if spec.assets else None,
        )
        remote_job = self.location.get_job(selector)
        run_config = {**IN_PROCESS, **QUIET, **spec.run_config}
        plan = self.location.get_execution_plan(
            remote_job, run_config, step_keys_to_execute=None, known_state=None, instance=self.instance
        )
        return self.instance.create_run(
            job_name=spec.job_name,
            run_id=make_new_run_id(),
            run_config=run_config,
            resolved_op_selection=None,
            step_keys_to_execute=plan.execution_plan_snapshot.step_keys_to_execute,
            op_selection=None,
            status=DagsterRunStatus.NOT_STARTED,
            root_run_id=None,
            parent_run_id=None,
            tags={**remote_job.tags, **spec.partition_tags(), **spec.tags},
            job_snapshot=remote_job.job_snapshot,
            execution_plan_snapshot=plan.execution_plan_snapshot,
            parent_job_snapshot=remote_job.parent_job_snapshot,
            remote_job_origin=remote_job.get_remote_origin(),
            job_code_origin=remote_job.get_python_origin(),
            asset_selection=frozenset(spec.assets) if spec.assets else None,
            asset_check_selection=None,
            asset_graph=self.repository.asset_graph,
        )

    def execute(self, spec: RunSpec) -> DagsterRun:
        """Create the run and execute it here; returns the finished run."""
        from dagster._core.execution.api import execute_run
        from dagster._utils.hosted_user_process import recon_job_from_origin

        run = self.create(spec)
        recon = recon_job_from_origin(run.job_code_origin)
        execute_run(recon, run, self.instance)
        return self.instance.get_run_by_id(run.run_id)

    def execute_all(self, specs: Sequence[RunSpec]) -> Iterator[DagsterRun]:
        for spec in specs:
            yield self.execute(spec)
