"""The real Dagster stack for end-to-end tests: ``dagster dev`` (webserver, daemon, code server)
on a free loopback port, with a temporary DAGSTER_HOME holding the project's own instance
configuration and the project's ``workspace.yaml``. Driven through the webserver's GraphQL API.
Every process it starts is stopped, also when the test fails.

Dagster's backfill daemon sleeps a fixed 30 s between iterations (no instance setting changes
it); the stack's daemon process runs its iterations every ``BACKFILL_INTERVAL_S`` instead, through
a ``sitecustomize`` that acts only in that process. Everything else runs as configured.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
LOCATION = "quant_assets"
BACKFILL_INTERVAL_S = 3
_DAEMON_SITE = f"""import sys

if "dagster._daemon" in getattr(sys, "orig_argv", ()):
    import dagster._daemon.controller

    dagster._daemon.controller.DEFAULT_DAEMON_INTERVAL_SECONDS = {BACKFILL_INTERVAL_S}
"""
REPOSITORY = "__repository__"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def instance_yaml(source: Path, *, poll_interval_s: int = 2) -> str:
    """The project's instance configuration with monitoring polled, and queued runs dequeued,
    fast enough for a test."""
    text = source.read_text()
    text = text.replace("  class: QueuedRunCoordinator\n", "  class: QueuedRunCoordinator\n  config:\n    dequeue_interval_seconds: 1\n", 1)
    text = re.sub(r"poll_interval_seconds: \d+", f"poll_interval_seconds: {poll_interval_s}", text)
    text = re.sub(r"free_slots_after_run_end_seconds: \d+", f"free_slots_after_run_end_seconds: {poll_interval_s}", text)
    return text


class DagsterStack:
    def __init__(self, home: Path, env: dict[str, str], log_path: Path):
        self.home = home
        self.env = env
        self.log_path = log_path
        self.port = free_port()
        self.proc: subprocess.Popen | None = None
        self._log = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout_s: float = 240.0) -> DagsterStack:
        self._log = open(self.log_path, "wb")
        site = self.log_path.parent / "daemon_site"
        site.mkdir(exist_ok=True)
        (site / "sitecustomize.py").write_text(_DAEMON_SITE)
        env = {**self.env, "PYTHONPATH": os.pathsep.join(p for p in (str(site), self.env.get("PYTHONPATH", "")) if p)}
        self.proc = subprocess.Popen(
            [str(Path(sys.executable).parent / "quant-assets"), "dev", "-h", "127.0.0.1", "-p", str(self.port)],
            cwd=REPO,
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # one process group: the stop below reaches every child
        )
        deadline = time.monotonic() + timeout_s
        last: Exception | None = None
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"dagster dev exited with {self.proc.returncode}:\n{self.log_tail()}")
            try:
                status = self.location_status()
                if status == "LOADED":
                    return self
                if status == "FAILED":
                    raise RuntimeError(f"the code location failed to load:\n{self.log_tail()}")
            except (OSError, RuntimeError, ValueError) as exc:  # not listening yet, or still starting
                last = exc
            time.sleep(1.0)
        raise TimeoutError(f"dagster dev did not come up in {timeout_s}s (last: {last}):\n{self.log_tail()}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
                self.proc.wait(timeout=30)
            except (subprocess.TimeoutExpired, ProcessLookupError):
                try:
                    os.killpg(self.proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                self.proc.wait(timeout=30)
        if self._log is not None:
            self._log.close()

    def log_tail(self, n: int = 4000) -> str:
        try:
            return self.log_path.read_bytes()[-n:].decode(errors="replace")
        except OSError:
            return ""

    # ------------------------------------------------------------------ GraphQL

    def graphql(self, query: str, variables: dict | None = None) -> dict:
        import httpx

        try:
            response = httpx.post(f"{self.url}/graphql", json={"query": query, "variables": variables or {}}, timeout=60)
        except httpx.TransportError as exc:
            raise OSError(f"webserver at {self.url} not reachable: {exc}") from exc
        response.raise_for_status()
        body = response.json()
        if body.get("errors"):
            raise RuntimeError(f"GraphQL errors: {body['errors']}")
        return body["data"]

    def client(self):
        from dagster_graphql import DagsterGraphQLClient

        return DagsterGraphQLClient("127.0.0.1", port_number=self.port, timeout=60)

    def location_status(self) -> str | None:
        data = self.graphql(
            "{ workspaceOrError { ... on Workspace { locationEntries { name loadStatus "
            "locationOrLoadError { __typename } } } } }"
        )
        for entry in data["workspaceOrError"]["locationEntries"]:
            if entry["name"] == LOCATION:
                if entry["locationOrLoadError"] and entry["locationOrLoadError"]["__typename"] == "PythonError":
                    return "FAILED"
                return entry["loadStatus"]
        return None

    def wait_run(self, run_id: str, timeout_s: float = 240.0, until=("SUCCESS", "FAILURE", "CANCELED")) -> str:
        deadline = time.monotonic() + timeout_s
        status = None
        while time.monotonic() < deadline:
            data = self.graphql(
                "query($id: ID!) { runOrError(runId: $id) { ... on Run { status } } }", {"id": run_id}
            )
            status = data["runOrError"].get("status")
            if status in until:
                return status
            time.sleep(1.0)
        raise TimeoutError(f"run {run_id} still {status} after {timeout_s}s:\n{self.log_tail()}")

    def runs(self, tags: dict[str, str] | None = None) -> list[dict]:
        data = self.graphql(
            "query($f: RunsFilter) { runsOrError(filter: $f) { ... on Runs { results { runId status jobName "
            "tags { key value } } } } }",
            {"f": {"tags": [{"key": k, "value": v} for k, v in (tags or {}).items()]}},
        )
        out = []
        for r in data["runsOrError"]["results"]:
            r["tags"] = {t["key"]: t["value"] for t in r["tags"]}
            out.append(r)
        return out

    def launch_backfill(self, asset_keys: list[list[str]], first: str, last: str) -> str:
        """A backfill of exactly ``first..last`` of each asset (no expansion through mappings)."""
        data = self.graphql(
            "mutation($p: LaunchBackfillParams!) { launchPartitionBackfill(backfillParams: $p) { "
            "__typename ... on LaunchBackfillSuccess { backfillId } ... on PythonError { message } "
            "... on InvalidStepError { invalidStepKey } ... on PartitionSetNotFoundError { message } } }",
            {
                "p": {
                    "partitionsByAssets": [
                        {"assetKey": {"path": k}, "partitions": {"range": {"start": first, "end": last}}}
                        for k in asset_keys
                    ]
                }
            },
        )
        result = data["launchPartitionBackfill"]
        if result["__typename"] != "LaunchBackfillSuccess":
            raise RuntimeError(f"backfill not launched: {result}")
        return result["backfillId"]

    def wait_backfill(self, backfill_id: str, timeout_s: float = 300.0) -> str:
        deadline = time.monotonic() + timeout_s
        status = None
        while time.monotonic() < deadline:
            data = self.graphql(
                "query($id: String!) { partitionBackfillOrError(backfillId: $id) { ... on PartitionBackfill { status } } }",
                {"id": backfill_id},
            )
            status = data["partitionBackfillOrError"].get("status")
            if status in ("COMPLETED", "COMPLETED_SUCCESS", "COMPLETED_FAILED", "FAILED", "CANCELED"):
                return status
            time.sleep(1.5)
        raise TimeoutError(f"backfill {backfill_id} still {status} after {timeout_s}s:\n{self.log_tail()}")

    def set_sensor(self, name: str, on: bool) -> str:
        selector = {"repositoryLocationName": LOCATION, "repositoryName": REPOSITORY, "sensorName": name}
        if on:
            data = self.graphql(
                "mutation($s: SensorSelector!) { startSensor(sensorSelector: $s) { __typename "
                "... on Sensor { sensorState { status } } ... on PythonError { message } } }",
                {"s": selector},
            )
            return data["startSensor"]["__typename"]
        sensor_id = self.graphql(
            "query($s: SensorSelector!) { sensorOrError(sensorSelector: $s) { ... on Sensor { id sensorState { id selectorId } } } }",
            {"s": selector},
        )["sensorOrError"]["sensorState"]
        data = self.graphql(
            "mutation($id: String!, $sid: String!) { stopSensor(id: $id, jobSelectorId: $sid) { __typename } }",
            {"id": sensor_id["id"], "sid": sensor_id["selectorId"]},
        )
        return data["stopSensor"]["__typename"]
