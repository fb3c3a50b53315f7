"""How a run executes its steps, chosen by configuration, never by a code change.

``quant_executor`` is the executor of every job in the code location. Its run config is one of:

- ``multiprocess`` (the default): Dagster's multiprocess executor, one process per step on the
  machine that runs the run (identical to Dagster's default executor and its options);
- ``in_process``: every step in the run's own process;
- ``dask``: every step is a task on a Dask (``distributed``) cluster: the scheduler at
  ``cluster.existing.address``, or a ``LocalCluster`` that the run starts on loopback
  (``cluster.local``, LocalCluster's own arguments). The ``cluster`` section is dagster-dask's,
  and a step tagged ``dagster-dask/resource_requirements`` asks Dask for those worker resources;
- ``k8s``: every step is a Kubernetes Job (dagster-k8s's ``k8s_job_executor``, with its own
  config), the per-step option for large backfills under the ``K8sRunLauncher``.

``QUANT_EXECUTOR`` (multiprocess, in_process, dask, k8s) picks the default when the code location
loads; with ``dask``, ``QUANT_DASK_SCHEDULER=tcp://host:8786`` names the scheduler (unset: a
LocalCluster of ``QUANT_DASK_WORKERS`` worker processes). A run picks another in the launchpad::

    execution:
      config:
        dask:
          cluster:
            existing:
              address: tcp://dask-scheduler:8786

On ``dask`` and ``k8s`` the steps are orchestrated by Dagster's step-delegating executor, as on
every distributed executor Dagster ships: a failed step or a failed blocking check skips what
is downstream of it, op retry policies and ``retries`` apply, concurrency pools (the
``warehouse`` pool) hold across workers, and a step whose worker died is failed with the reason
(Dask re-runs a task whose worker died, but a step that had started is never run twice in one
run: re-execute the run from failure, by hand or with Dagster's run retries). Before any step
runs, :mod:`quant_assets.execution.preflight` checks every shared service from the orchestrating process
and, on Dask, from every worker.
"""

import dataclasses
import os
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from dagster import Field, Float, IntSource, Permissive, Selector, StringSource, executor
from dagster._core.definitions.executor_definition import (
    IN_PROC_CONFIG,
    MULTI_PROC_CONFIG,
    _core_in_process_executor_creation,
    _core_multiprocess_executor_creation,
    multiple_process_executor_requirements,
)
from dagster._core.events import DagsterEvent, DagsterEventType, EngineEventData
from dagster._core.execution.retries import RetryMode, get_retries_config
from dagster._core.execution.step_dependency_config import StepDependencyConfig
from dagster._core.execution.tags import get_tag_concurrency_limits_config
from dagster._core.executor.base import Executor
from dagster._core.executor.step_delegating import CheckStepHealthResult, StepDelegatingExecutor, StepHandler, StepHandlerContext

from quant_assets.execution import preflight
from quant_assets.lib import settings

# dagster-dask's tag: a step asks Dask for worker resources, e.g. '{"memory_gb": 16}'.
DASK_RESOURCE_REQUIREMENTS_KEY = "dagster-dask/resource_requirements"
# One step at a time per worker process: Dagster captures a step's stdout/stderr for the whole
# process, and steps are not written to share one.
LOCAL_CLUSTER_DEFAULTS = {"threads_per_worker": 1, "processes": True, "host": "127.0.0.1", "dashboard_address": None}


def _default_cluster() -> dict:
    address = settings.dask_scheduler()
    if address:
        return {"existing": {"address": {"env": "QUANT_DASK_SCHEDULER"}}}
    return {"local": {"n_workers": settings.dask_local_workers()}}


DASK_CONFIG = Field(
    {
        "cluster": Field(
            Selector(
                {
                    "existing": Field(
                        {"address": Field(StringSource, description="The scheduler, e.g. tcp://dask-scheduler:8786.")},
                        description="Connect to a running scheduler; its workers run the steps.",
                    ),
                    "local": Field(
                        Permissive(
                            {
                                "n_workers": Field(
                                    int, is_required=False, description="Worker processes (default QUANT_DASK_WORKERS, 2)."
                                ),
                            }
                        ),
                        is_required=False,
                        description="Start a LocalCluster on loopback for this run (distributed.LocalCluster "
                        "arguments; one thread per worker process).",
                    ),
                }
            ),
            default_value=_default_cluster(),
            description="Where the steps run (dagster-dask's cluster section: existing or local).",
        ),
        "retries": get_retries_config(),
        "max_concurrent": Field(
            IntSource, is_required=False, description="Most steps of this run on the cluster at once (default: no limit)."
        ),
        "tag_concurrency_limits": get_tag_concurrency_limits_config(),
        "poll_interval_s": Field(
            Float, default_value=0.5, description="Seconds between reads of the run's events from the instance."
        ),
        "health_check_interval_s": Field(
            int, default_value=2, description="Seconds between checks that each running step's Dask task is alive."
        ),
    },
    description="Each step is a task on a Dask cluster.",
)

K8S_CONFIG = Field(
    Permissive(),
    default_value={},
    description="Each step is a Kubernetes Job: dagster-k8s's k8s_job_executor and its config (job_namespace, "
    "step_k8s_config, max_concurrent, retries, ...), checked when the run starts.",
)


def default_execution_config() -> dict:
    kind = settings.executor_kind()
    if kind == "dask":
        return {"dask": {"cluster": _default_cluster()}}
    return {kind: {}}


def _requirements(config: Mapping[str, Any]):
    return [] if "in_process" in config else multiple_process_executor_requirements()


@executor(
    name="quant_executor",
    config_schema=Field(
        Selector({"multiprocess": MULTI_PROC_CONFIG, "in_process": IN_PROC_CONFIG, "dask": DASK_CONFIG, "k8s": K8S_CONFIG}),
        default_value=default_execution_config(),
        description="multiprocess (Dagster's default), in_process, dask or k8s; the default comes from QUANT_EXECUTOR.",
    ),
    requirements=_requirements,
)
def quant_executor(init_context) -> Executor:
    """Dagster's multiprocess / in-process executor, or the distributed ones (Dask, Kubernetes
    Jobs), by run config; see the module docstring."""
    ((kind, config),) = init_context.executor_config.items()
    if kind == "in_process":
        return _core_in_process_executor_creation(config)
    if kind == "multiprocess":
        return _core_multiprocess_executor_creation(config)
    if kind == "dask":
        return _dask_executor(config)
    return _k8s_executor(config, init_context)


# --------------------------------------------------------------------------- the distributed path


class DistributedExecutor(Executor):
    """A step-delegating executor that first checks every shared service (and, on Dask, every
    worker), and refuses to start any step when one fails."""

    def __init__(
        self,
        kind: str,
        retries: RetryMode,
        build: Callable[[Any], StepDelegatingExecutor],
        connect: Callable[[], Any] | None = None,
        step_dependency_config: StepDependencyConfig | None = None,
    ):
        self.kind = kind
        self._retries = retries
        self._build = build
        self._connect = connect
        self._step_dependency_config = step_dependency_config or StepDependencyConfig.default()

    @property
    def retries(self) -> RetryMode:
        return self._retries

    @property
    def step_dependency_config(self) -> StepDependencyConfig:
        return self._step_dependency_config

    def execute(self, plan_context, execution_plan) -> Iterator[DagsterEvent]:
        run = plan_context.dagster_run
        job_def = plan_context.job.get_definition()
        loc, checks = preflight.check_run(job_def, plan_context.run_config, plan_context.instance)
        session = None
        try:
            if self._connect is not None and all(c.ok for c in checks):
                try:
                    session = self._connect()
                except preflight.PreflightError as exc:
                    checks += exc.failures
                else:
                    checks += session.preflight(
                        plan_context.reconstructable_job.get_python_origin(),
                        run.asset_selection,
                        plan_context.run_config,
                        plan_context.instance.get_ref(),
                        loc,
                    )
            _report(plan_context, self.kind, checks)
            preflight.raise_on_failures(checks)
            inner = self._build(session)
            yield from inner.execute(plan_context, execution_plan)
        finally:
            if session is not None:
                session.close()


def _report(plan_context, kind: str, checks: list[preflight.Check]) -> None:
    failed = [c for c in checks if not c.ok]
    metadata = {f"{'ok' if c.ok else 'FAILED'}: {c.service} {c.location}"[:200]: c.detail for c in checks}
    message = (
        f"Preflight for the {kind} executor failed: " + "; ".join(c.describe() for c in failed)
        if failed
        else f"Preflight for the {kind} executor passed: {len(checks)} check(s)."
    )
    DagsterEvent.engine_event(plan_context, message, EngineEventData(metadata=metadata))


# --------------------------------------------------------------------------- Dask


@dataclasses.dataclass
class DaskSession:
    """A client on the run's Dask cluster (and the LocalCluster the run started, if any)."""

    client: Any
    address: str
    cluster: Any = None

    def preflight(self, job_origin, asset_selection, run_config, instance_ref, loc) -> list[preflight.Check]:
        checks = []
        for address, info in sorted(self.client.scheduler_info(n_workers=-1)["workers"].items()):
            if int(info.get("nthreads", 1)) != 1:
                checks.append(
                    preflight._fail(
                        "Dask worker",
                        address,
                        f"runs {info.get('nthreads')} threads; steps need one thread per worker process "
                        "(start workers with --nthreads 1, and --nworkers for more processes)",
                    )
                )
        if checks:
            return checks
        return preflight.check_workers(self.client, job_origin, asset_selection, run_config, instance_ref, loc)

    def close(self) -> None:
        try:
            self.client.close()
        finally:
            if self.cluster is not None:
                self.cluster.close()


def _dask_executor(config: Mapping[str, Any]) -> DistributedExecutor:
    ((cluster_kind, cluster_config),) = config["cluster"].items()
    local_kwargs: dict[str, Any] = {}
    if cluster_kind == "local":
        local_kwargs = {**LOCAL_CLUSTER_DEFAULTS, "n_workers": settings.dask_local_workers(), **(cluster_config or {})}
        if int(local_kwargs["threads_per_worker"]) != 1:
            raise ValueError("dask cluster.local: threads_per_worker must be 1 (one step at a time per worker process)")

    def connect() -> DaskSession:
        if cluster_kind == "existing":
            address = cluster_config["address"]
            return DaskSession(preflight.connect_scheduler(address), address)
        from distributed import LocalCluster

        cluster = LocalCluster(**local_kwargs)
        try:
            return DaskSession(preflight.connect_scheduler(cluster.scheduler_address), cluster.scheduler_address, cluster)
        except BaseException:
            cluster.close()
            raise

    def build(session: DaskSession) -> StepDelegatingExecutor:
        return StepDelegatingExecutor(
            DaskStepHandler(session.client, session.address),
            retries=RetryMode.from_config(config["retries"]),
            sleep_seconds=float(config["poll_interval_s"]),
            check_step_health_interval_seconds=int(config["health_check_interval_s"]),
            max_concurrent=config.get("max_concurrent"),
            tag_concurrency_limits=config.get("tag_concurrency_limits"),
            # Dask re-runs a task whose worker died: the re-run must not execute a started step again.
            should_verify_step=True,
        )

    return DistributedExecutor("dask", RetryMode.from_config(config["retries"]), build, connect)


def run_step(payload: str) -> dict:
    """The Dask task of one step: Dagster's own step worker (``dagster api execute_step``), run
    in the worker process. Its events go straight to the Dagster instance."""
    from dagster import DagsterInstance
    from dagster._cli.api import _execute_step_command_body
    from dagster._grpc.types import ExecuteStepArgs
    from dagster._serdes import deserialize_value
    from distributed import get_worker

    args = deserialize_value(payload, ExecuteStepArgs)
    started = finished = False
    with DagsterInstance.from_ref(args.instance_ref) as instance:
        run = instance.get_run_by_id(args.run_id)
        if run is None:
            raise LookupError(f"run {args.run_id} is not in the Dagster instance this worker reaches")
        for event in _execute_step_command_body(args, instance, run):
            if event.event_type == DagsterEventType.STEP_START:
                started = True
            if event.is_step_success or event.is_step_failure or event.is_step_up_for_retry or event.is_resource_init_failure:
                finished = True
    return {"started": started, "finished": finished, "worker": get_worker().address, "pid": os.getpid()}


def _processing_on(key: str, dask_scheduler=None) -> str | None:
    task = dask_scheduler.tasks.get(key)
    return task.processing_on.address if task is not None and task.processing_on is not None else None


class DaskStepHandler(StepHandler):
    """Launches each step as a task on the Dask cluster and reports its health from the task."""

    def __init__(self, client, address: str):
        self._client = client
        self._address = address
        self._futures: dict[tuple[str, int], Any] = {}

    @property
    def name(self) -> str:
        return "DaskStepHandler"

    @staticmethod
    def _step(ctx: StepHandlerContext) -> tuple[str, int]:
        (step_key,) = ctx.execute_step_args.step_keys_to_execute
        known = ctx.execute_step_args.known_state
        attempt = known.get_retry_state().get_attempt_count(step_key) if known else 0
        return step_key, attempt

    def _task_key(self, ctx: StepHandlerContext) -> str:
        step_key, attempt = self._step(ctx)
        return f"dagster-step-{ctx.execute_step_args.run_id}-{step_key}-{attempt}"

    def launch_step(self, step_handler_context: StepHandlerContext) -> Iterator[DagsterEvent]:
        import json

        from dagster._serdes import serialize_value

        ctx = step_handler_context
        step_key, attempt = self._step(ctx)
        key = self._task_key(ctx)
        requirements = ctx.step_tags[step_key].get(DASK_RESOURCE_REQUIREMENTS_KEY)
        future = self._client.submit(
            run_step,
            serialize_value(ctx.execute_step_args),
            key=key,
            pure=False,
            retries=0,
            resources=json.loads(requirements) if requirements else None,
        )
        self._futures[(step_key, attempt)] = future
        yield DagsterEvent.step_worker_starting(
            ctx.get_step_context(step_key),
            message=f'Executing step "{step_key}" on the Dask cluster at {self._address} (task {key}).',
            metadata={"dask_scheduler": self._address, "dask_task": key},
        )

    def check_step_health(self, step_handler_context: StepHandlerContext) -> CheckStepHealthResult:
        step_key, attempt = self._step(step_handler_context)
        future = self._futures.get((step_key, attempt))
        if future is None:
            return CheckStepHealthResult.unhealthy(f"no Dask task was launched for step {step_key} by this run worker")
        status = future.status
        if status == "pending":
            return CheckStepHealthResult.healthy()
        if status == "finished":
            result = future.result()
            if result["started"] or result["finished"]:
                return CheckStepHealthResult.healthy()
            return CheckStepHealthResult.unhealthy(
                f"the Dask worker running step {step_key} died mid-step (killed, or out of memory); Dask ran "
                f"the task again on {result['worker']}, which does not run a started step twice in one run. "
                "Re-execute the run from failure."
            )
        if status == "error":
            exc = future.exception()
            if type(exc).__name__ == "KilledWorker":
                return CheckStepHealthResult.unhealthy(
                    f"every Dask worker that ran step {step_key} died (killed, or out of memory): {exc}"
                )
            return CheckStepHealthResult.unhealthy(f"step {step_key}'s Dask task failed: {type(exc).__name__}: {exc}")
        return CheckStepHealthResult.unhealthy(f"step {step_key}'s Dask task is {status} (the scheduler lost it)")

    def terminate_step(self, step_handler_context: StepHandlerContext) -> Iterator[DagsterEvent]:
        step_key, attempt = self._step(step_handler_context)
        future = self._futures.get((step_key, attempt))
        if future is None or future.done():
            return
        key = self._task_key(step_handler_context)
        worker = self._client.run_on_scheduler(_processing_on, key)
        future.cancel()
        message = f"Cancelled step {step_key}'s Dask task"
        if worker:
            # A running task cannot be interrupted in its thread: restart its worker process (the
            # nanny starts a fresh one).
            self._client.restart_workers([worker], raise_for_error=False)
            message += f" and restarted the worker that ran it ({worker})"
        yield DagsterEvent.engine_event(
            step_handler_context.get_step_context(step_key), message + ".", EngineEventData()
        )


# --------------------------------------------------------------------------- Kubernetes


def _k8s_executor(config: Mapping[str, Any], init_context) -> DistributedExecutor:
    from dagster._config import process_config
    from dagster._core.errors import DagsterInvalidConfigError
    from dagster._core.executor.init import InitExecutorContext
    from dagster_k8s import k8s_job_executor

    result = process_config(k8s_job_executor.config_schema.config_type, dict(config))
    if not result.success:
        raise DagsterInvalidConfigError("Invalid k8s executor config (dagster-k8s's k8s_job_executor)", result.errors, config)
    processed = result.value

    def build(_session) -> StepDelegatingExecutor:
        try:
            return k8s_job_executor.executor_creation_fn(
                InitExecutorContext(
                    job=init_context.job, executor_def=k8s_job_executor, executor_config=processed, instance=init_context.instance
                )
            )
        except Exception as exc:
            raise preflight.PreflightError(
                [preflight._fail("Kubernetes API", "(in-cluster or kubeconfig)", f"cannot be configured: {preflight._first_line(exc)}")]
            ) from exc

    return DistributedExecutor(
        "k8s",
        RetryMode.from_config(processed["retries"]),
        build,
        step_dependency_config=StepDependencyConfig.from_config(processed.get("step_dependency_config")),
    )


def executor_choices() -> tuple[str, ...]:
    """The branches a run config's ``execution.config`` may name."""
    return tuple(quant_executor.config_schema.config_type.fields)
