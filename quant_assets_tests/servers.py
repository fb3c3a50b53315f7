"""Real servers for the tests: a throwaway PostgreSQL cluster, an S3 endpoint (moto), a strict S3
endpoint that refuses every credential, and a Dask cluster started with the ``dask`` command.

The servers are session-scoped and bound to 127.0.0.1 on free ports (a Dask cluster is started
by the module that needs it, in the environment it needs). When one cannot be started the
tests that need it are skipped with the reason, except under ``CI=true``, where a missing server
is a failure: CI must never pass by skipping them.

``QUANT_TEST_PG_URL=postgresql://user:pass@host:port/db`` uses an existing server instead of
starting one; the tests then create (and drop) their own databases on it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import glob
import os
import re
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest

__all__ = [
    "DaskCluster",
    "PostgresServer",
    "postgres_database",
    "postgres_server",
    "s3_bucket",
    "s3_server",
    "s3_strict_server",
]


def server_unavailable(reason: str) -> None:
    """Skip the requesting test, or fail it in CI."""
    if os.environ.get("CI", "").strip().lower() == "true":
        pytest.fail(f"{reason} (CI=true: these tests must run, not skip)", pytrace=False)
    pytest.skip(reason)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --------------------------------------------------------------------------- PostgreSQL

_DBNAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


@dataclasses.dataclass
class PostgresServer:
    host: str
    port: int
    user: str
    dbname: str
    url: str
    password: str | None = None
    external: bool = False

    def connect(self, dbname: str | None = None, **kwargs):
        import psycopg

        return psycopg.connect(self.database_url(dbname or self.dbname), **kwargs)

    def database_url(self, name: str) -> str:
        parts = urlsplit(self.url)
        return urlunsplit(parts._replace(path=f"/{name}"))

    def create_database(self, name: str) -> str:
        """Create an empty database (dropping one left over under that name); return its URL."""
        if not _DBNAME.match(name):
            raise ValueError(f"database name {name!r} must match {_DBNAME.pattern}")
        with self.connect(autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.database_url(name)

    def drop_database(self, name: str) -> None:
        if not _DBNAME.match(name):
            raise ValueError(f"database name {name!r} must match {_DBNAME.pattern}")
        with self.connect(autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _postgres_bindir() -> Path | None:
    candidates: list[Path] = []
    if os.environ.get("QUANT_TEST_PG_BINDIR"):
        candidates.append(Path(os.environ["QUANT_TEST_PG_BINDIR"]))
    pg_config = shutil.which("pg_config")
    if pg_config:
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            out = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True, timeout=10, check=False)
            if out.returncode == 0 and out.stdout.strip():
                candidates.append(Path(out.stdout.strip()))

    def version(path: str) -> tuple[int, ...]:
        return tuple(int(n) for n in re.findall(r"\d+", Path(path).parent.name))

    candidates += [Path(p) for p in sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=version, reverse=True)]
    candidates += [Path(p) for p in sorted(glob.glob("/usr/pgsql-*/bin"), reverse=True)]
    initdb = shutil.which("initdb")
    if initdb:
        candidates.append(Path(initdb).parent)
    for bindir in candidates:
        if (bindir / "initdb").is_file() and (bindir / "pg_ctl").is_file():
            return bindir
    return None


class _LocalCluster:
    """A cluster in a temp dir, run as the ``postgres`` user when we are root (initdb refuses root)."""

    def __init__(self, bindir: Path):
        self.bindir = bindir
        self.as_root = os.geteuid() == 0
        # Outside pytest's tmp: that tree is 0700 root, and the server runs as another user.
        self.dir = Path(tempfile.mkdtemp(prefix="quant-pg-"))
        self.data = self.dir / "data"
        self.logfile = self.dir / "postgres.log"
        self.port = 0
        self.started = False

    def _run(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        cmd = [str(self.bindir / args[0]), *args[1:]]
        if self.as_root:
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=self.dir, check=False)

    def start(self) -> str | None:
        """Start the cluster; return None, or the reason it could not start."""
        if self.as_root:
            if shutil.which("runuser") is None:
                return "running as root and `runuser` is not available"
            try:
                shutil.chown(self.dir, user="postgres", group="postgres")
            except (LookupError, OSError) as exc:
                return f"running as root and cannot hand the cluster dir to user postgres: {exc}"
        init = self._run(
            "initdb",
            "-D",
            str(self.data),
            "-U",
            "postgres",
            "-A",
            "trust",
            "-E",
            "UTF8",
            "--no-locale",
            "--no-sync",
        )
        if init.returncode != 0:
            return f"initdb failed: {init.stderr.strip() or init.stdout.strip()}"
        last_error = ""
        for _ in range(3):  # the free port can be taken between probing and binding
            self.port = _free_port()
            options = (
                f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c fsync=off"
                " -c synchronous_commit=off -c full_page_writes=off"
            )
            start = self._run(
                "pg_ctl",
                "-D",
                str(self.data),
                "-l",
                str(self.logfile),
                "-w",
                "-t",
                "60",
                "-o",
                options,
                "start",
                timeout=90,
            )
            if start.returncode == 0:
                self.started = True
                return None
            last_error = start.stderr.strip() or start.stdout.strip()
            with contextlib.suppress(OSError):
                last_error += "\n" + self.logfile.read_text()[-2000:]
        return f"pg_ctl start failed: {last_error}"

    def stop(self) -> None:
        try:
            if self.started:
                self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop", timeout=60)
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)


def _server_from_url(url: str) -> PostgresServer:
    parts = urlsplit(url)
    return PostgresServer(
        host=parts.hostname or "localhost",
        port=parts.port or 5432,
        user=parts.username or "postgres",
        dbname=parts.path.lstrip("/") or "postgres",
        url=url,
        password=parts.password,
        external=True,
    )


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    url = os.environ.get("QUANT_TEST_PG_URL")
    if url:
        server = _server_from_url(url)
        try:
            server.connect(connect_timeout=10).close()
        except Exception as exc:  # noqa: BLE001  (whatever the cause, the reason is reported)
            server_unavailable(f"QUANT_TEST_PG_URL is set but the server does not answer: {exc}")
        yield server
        return

    bindir = _postgres_bindir()
    if bindir is None:
        server_unavailable(
            "PostgreSQL binaries (initdb, pg_ctl) not found; install postgresql or set QUANT_TEST_PG_URL"
        )
    cluster = _LocalCluster(bindir)
    try:
        reason = cluster.start()
        if reason:
            server_unavailable(f"cannot start a PostgreSQL test cluster: {reason}")
        yield PostgresServer(
            host="127.0.0.1",
            port=cluster.port,
            user="postgres",
            dbname="postgres",
            url=f"postgresql://postgres@127.0.0.1:{cluster.port}/postgres",
        )
    finally:
        cluster.stop()


@pytest.fixture
def postgres_database(postgres_server: PostgresServer) -> Iterator[str]:
    """The URL of a fresh, empty database, dropped after the test."""
    name = f"qa_test_{uuid.uuid4().hex[:16]}"
    url = postgres_server.create_database(name)
    yield url
    # Pooled connections a test leaves open must not block the drop (FORCE ends them).
    postgres_server.drop_database(name)


# --------------------------------------------------------------------------- S3


_AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}
# Real credentials or a profile in the environment must never reach the fake endpoint's clients.
_AWS_ENV_CLEARED = ("AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN", "AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3")


@pytest.fixture(scope="session")
def s3_server() -> Iterator[str]:
    """The endpoint URL of an in-process S3 (moto) on loopback, with dummy AWS credentials set."""
    with pytest.MonkeyPatch.context() as mp:
        for key, value in _AWS_ENV.items():
            mp.setenv(key, value)
        for key in _AWS_ENV_CLEARED:
            mp.delenv(key, raising=False)
        try:
            from moto.server import ThreadedMotoServer
        except ImportError as exc:
            server_unavailable(f"moto[server] is not installed: {exc}")
        server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        try:
            server.start()
            host, port = server.get_host_and_port()
        except Exception as exc:  # noqa: BLE001
            server_unavailable(f"cannot start the moto S3 server: {exc}")
        try:
            yield f"http://{host}:{port}"
        finally:
            server.stop()


@pytest.fixture
def s3_bucket(s3_server: str):
    """``(endpoint_url, bucket_name, client)`` for a fresh, empty bucket, emptied and removed after."""
    import boto3

    client = boto3.client("s3", endpoint_url=s3_server, region_name="us-east-1")
    bucket = f"quant-test-{uuid.uuid4().hex[:20]}"
    client.create_bucket(Bucket=bucket)
    yield s3_server, bucket, client
    paginator = client.get_paginator("list_objects_v2")
    for page in paginator.paginate(Bucket=bucket):
        keys = [{"Key": obj["Key"]} for obj in page.get("Contents", [])]
        if keys:
            client.delete_objects(Bucket=bucket, Delete={"Objects": keys})
    client.delete_bucket(Bucket=bucket)


@pytest.fixture(scope="session")
def s3_strict_server() -> Iterator[str]:
    """An S3 endpoint (moto, in its own process) that checks credentials: it refuses every key,
    as S3 refuses a revoked or mistyped one (403 InvalidAccessKeyId)."""
    import sys
    import time

    import httpx

    port = _free_port()
    env = {**os.environ, "INITIAL_NO_AUTH_ACTION_COUNT": "0"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                server_unavailable(f"the moto S3 server exited with {proc.returncode}")
            try:
                httpx.get(url, timeout=2)
                break
            except httpx.TransportError:
                if time.monotonic() > deadline:
                    server_unavailable("the moto S3 server did not start within 60 s")
                time.sleep(0.2)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


# --------------------------------------------------------------------------- Dask


class DaskCluster:
    """A ``distributed`` scheduler and worker processes on loopback, started with the ``dask``
    command line as a deployment would (each worker under a nanny, which restarts it when it
    dies), in the environment ``env``. One thread per worker: Dagster steps need their own
    process. ``preload`` modules are imported by each worker as it starts."""

    def __init__(self, env: dict[str, str], workdir: Path, *, workers: int = 2, preload: tuple[str, ...] = ()):
        self.env = env
        self.workdir = Path(workdir)
        self.n_workers = workers
        self.preload = preload
        self.scheduler_file = self.workdir / "scheduler.json"
        self.procs: list[subprocess.Popen] = []
        self.address = ""

    def _spawn(self, args: list[str], log: str) -> subprocess.Popen:
        import sys

        out = open(self.workdir / log, "wb")
        dask = str(Path(sys.executable).parent / "dask")
        proc = subprocess.Popen(
            [dask, *args], env=self.env, cwd=self.workdir, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
        out.close()
        self.procs.append(proc)
        return proc

    def start(self, timeout_s: float = 180.0) -> DaskCluster:
        import json
        import time

        self.workdir.mkdir(parents=True, exist_ok=True)
        self._spawn(
            ["scheduler", "--host", "127.0.0.1", "--port", "0", "--no-dashboard", "--scheduler-file", str(self.scheduler_file)],
            "scheduler.log",
        )
        deadline = time.monotonic() + timeout_s
        while not self.scheduler_file.exists():
            if time.monotonic() > deadline or self.procs[0].poll() is not None:
                raise RuntimeError(f"the Dask scheduler did not start:\n{self.log_tail()}")
            time.sleep(0.2)
        self.address = json.loads(self.scheduler_file.read_text())["address"]
        preload = [a for m in self.preload for a in ("--preload", m)]
        for i in range(self.n_workers):
            self._spawn(
                [
                    "worker", self.address, "--nthreads", "1", "--nworkers", "1", "--host", "127.0.0.1",
                    "--no-dashboard", "--local-directory", str(self.workdir / f"worker-{i}"), "--name", f"worker-{i}",
                    *preload,
                ],
                f"worker-{i}.log",
            )
        from distributed import Client

        with Client(self.address, timeout="60s") as client:
            client.wait_for_workers(self.n_workers, timeout=max(1.0, deadline - time.monotonic()))
        return self

    def worker_pids(self) -> dict[str, int]:
        """Worker address -> pid of the worker process (not its nanny)."""
        import os as _os

        from distributed import Client

        with Client(self.address, timeout="30s") as client:
            return client.run(_os.getpid)

    def wait_for_workers(self, n: int, timeout_s: float = 120.0) -> None:
        from distributed import Client

        with Client(self.address, timeout="30s") as client:
            client.wait_for_workers(n, timeout=timeout_s)

    def log_tail(self, n: int = 3000) -> str:
        parts = []
        for log in sorted(self.workdir.glob("*.log")):
            parts.append(f"--- {log.name}\n{log.read_bytes()[-n:].decode(errors='replace')}")
        return "\n".join(parts)

    def stop(self) -> None:
        import signal

        for proc in reversed(self.procs):
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGTERM)
        for proc in reversed(self.procs):
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=20)
