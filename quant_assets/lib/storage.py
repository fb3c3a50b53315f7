"""Object storage behind the landing zone and the lake: a local folder or ``s3://bucket/prefix``.

Both stores speak in keys relative to their root ("us_stocks_sip/day_aggs_v1/2024/01/...").
Writes are atomic: a local write goes to a temporary file in the same folder and is renamed
into place; an S3 PUT is atomic by construction. Readers therefore never see half a file.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import re
import socket
import stat
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Iterator, Protocol
from urllib.parse import urlparse

import psutil


@dataclasses.dataclass(frozen=True)
class ObjectInfo:
    """One stored object. ``etag`` changes whenever the content is re-published."""

    key: str
    size: int
    last_modified: float  # Unix seconds
    etag: str


class Store(Protocol):
    url: str

    def read_bytes(self, key: str) -> bytes: ...

    def write_bytes(self, key: str, data: bytes) -> None: ...

    def exists(self, key: str) -> bool: ...

    def delete(self, key: str) -> None: ...

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]: ...

    def stat(self, key: str) -> ObjectInfo | None: ...

    def local_path(self, key: str) -> Path | None: ...


class StoreError(RuntimeError):
    pass


def _clean_key(key: str) -> str:
    key = key.replace("\\", "/").lstrip("/")
    if any(part in ("..", ".") for part in key.split("/")):
        raise StoreError(f"invalid storage key {key!r}")
    return key


_HOST = socket.gethostname().replace(".", "_")
_WRITER = f"{_HOST}~{os.getpid()}"
_TEMP = re.compile(r"^\..+\.(?P<host>[^.~]+)~(?P<pid>\d+)\.[^.]+\.tmp$")
# A temporary file of another host, or of an unknown writer, is left this long before removal.
FOREIGN_TEMP_MAX_AGE_S = 24 * 3600
_swept: set[Path] = set()
_swept_lock = threading.Lock()


def _dead_writer(name: str, mtime: float, now: float) -> bool:
    m = _TEMP.match(name)
    if m is None or m.group("host") != _HOST:
        return now - mtime > FOREIGN_TEMP_MAX_AGE_S
    pid = int(m.group("pid"))
    if pid == os.getpid():
        return False
    try:
        proc = psutil.Process(pid)
        # A live process that started after the file was written reuses a dead writer's PID.
        return proc.status() == psutil.STATUS_ZOMBIE or proc.create_time() > mtime + 1.0
    except psutil.NoSuchProcess:
        return True


def sweep_dead_writers(folder: Path, *, force: bool = False) -> list[Path]:
    """Remove temporary files in ``folder`` whose writer is dead (once per folder and process
    unless ``force``). Returns what was removed."""
    folder = Path(folder)
    with _swept_lock:
        if folder in _swept and not force:
            return []
        _swept.add(folder)
    removed = []
    now = time.time()
    try:
        entries = list(os.scandir(folder))
    except FileNotFoundError:
        return []
    for entry in entries:
        if not (entry.name.startswith(".") and entry.name.endswith(".tmp")):
            continue
        try:
            if _dead_writer(entry.name, entry.stat().st_mtime, now):
                os.unlink(entry.path)
                removed.append(Path(entry.path))
        except FileNotFoundError:
            continue
    return removed


class LocalStore:
    """A folder on local disk."""

    def __init__(self, root: str | os.PathLike[str]):
        self.root = Path(root).expanduser().resolve()
        self.url = str(self.root)

    def _path(self, key: str) -> Path:
        return self.root / _clean_key(key)

    def local_path(self, key: str) -> Path | None:
        return self._path(key)

    def read_bytes(self, key: str) -> bytes:
        path = self._path(key)
        try:
            return path.read_bytes()
        except FileNotFoundError:
            raise FileNotFoundError(f"{path} does not exist") from None

    @contextlib.contextmanager
    def atomic_path(self, key: str) -> Iterator[Path]:
        """A temporary path beside ``key``'s file; renamed onto it when the block succeeds, removed
        when it fails, so readers see the old file or the new one, never half of one. The
        temporary name carries the writer's host and PID, so the first write into a folder can
        remove what writers that died mid-write (``kill -9``) left behind."""
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        sweep_dead_writers(path.parent)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.{_WRITER}.", suffix=".tmp", dir=path.parent)
        os.close(fd)
        try:
            yield Path(tmp)
            os.replace(tmp, path)
        except BaseException:
            try:
                os.unlink(tmp)
            except FileNotFoundError:
                pass
            raise

    def write_bytes(self, key: str, data: bytes) -> None:
        with self.atomic_path(key) as tmp:
            tmp.write_bytes(data)

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def delete(self, key: str) -> None:
        try:
            self._path(key).unlink()
        except FileNotFoundError:
            pass

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        prefix = _clean_key(prefix) if prefix else ""
        # Walk only the folder the prefix names, then filter by the remaining name prefix.
        base = self.root / prefix if prefix.endswith("/") or not prefix else (self.root / prefix).parent
        if not base.is_dir():
            return
        for dirpath, dirnames, filenames in os.walk(base):
            dirnames.sort()
            for name in sorted(filenames):
                if name.startswith(".") and name.endswith(".tmp"):
                    continue  # an in-flight atomic write
                full = Path(dirpath) / name
                key = full.relative_to(self.root).as_posix()
                if not key.startswith(prefix):
                    continue
                info = self._info(key, full)
                if info is not None:
                    yield info

    def stat(self, key: str) -> ObjectInfo | None:
        return self._info(_clean_key(key), self._path(key))

    @staticmethod
    def _info(key: str, path: Path) -> ObjectInfo | None:
        """The file's identity. Its ETag changes with every write, whatever the timestamps say:
        a rewrite updates the inode change time (which ``touch``/``utime`` cannot set back), and a
        rename-into-place brings a new inode."""
        try:
            st = path.stat()
        except FileNotFoundError:
            return None
        if not stat.S_ISREG(st.st_mode):
            return None
        etag = f"{st.st_size:x}-{st.st_mtime_ns:x}-{st.st_ctime_ns:x}-{st.st_ino:x}"
        return ObjectInfo(key, st.st_size, st.st_mtime, etag)


class S3Store:
    """``s3://bucket/prefix`` through a boto3 client (endpoint and keys from the usual AWS variables)."""

    def __init__(self, bucket: str, prefix: str, client: Any):
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.client = client
        self.url = f"s3://{bucket}/{self.prefix}" if self.prefix else f"s3://{bucket}"

    def _key(self, key: str) -> str:
        key = _clean_key(key)
        return f"{self.prefix}/{key}" if self.prefix else key

    def local_path(self, key: str) -> Path | None:
        return None

    def read_bytes(self, key: str) -> bytes:
        full = self._key(key)
        try:
            obj = self.client.get_object(Bucket=self.bucket, Key=full)
        except self.client.exceptions.NoSuchKey:
            raise FileNotFoundError(f"s3://{self.bucket}/{full} does not exist") from None
        return obj["Body"].read()

    def stat(self, key: str) -> ObjectInfo | None:
        full = self._key(key)
        try:
            head = self.client.head_object(Bucket=self.bucket, Key=full)
        except Exception as exc:  # botocore ClientError 404
            code = getattr(exc, "response", {}).get("Error", {}).get("Code")
            if code in ("404", "NoSuchKey", "NotFound"):
                return None
            raise
        return ObjectInfo(
            key=_clean_key(key),
            size=int(head["ContentLength"]),
            last_modified=head["LastModified"].timestamp(),
            etag=str(head.get("ETag", "")).strip('"'),
        )

    def write_bytes(self, key: str, data: bytes) -> None:
        self.client.put_object(Bucket=self.bucket, Key=self._key(key), Body=data)

    def exists(self, key: str) -> bool:
        try:
            self.client.head_object(Bucket=self.bucket, Key=self._key(key))
            return True
        except Exception as exc:  # botocore ClientError 404
            code = getattr(exc, "response", {}).get("Error", {}).get("Code")
            if code in ("404", "NoSuchKey", "NotFound"):
                return False
            raise

    def delete(self, key: str) -> None:
        self.client.delete_object(Bucket=self.bucket, Key=self._key(key))

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        full_prefix = self._key(prefix) if prefix else (f"{self.prefix}/" if self.prefix else "")
        strip = len(self.prefix) + 1 if self.prefix else 0
        paginator = self.client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.bucket, Prefix=full_prefix):
            for obj in page.get("Contents", []):
                yield ObjectInfo(
                    key=obj["Key"][strip:],
                    size=int(obj["Size"]),
                    last_modified=obj["LastModified"].timestamp(),
                    etag=str(obj.get("ETag", "")).strip('"'),
                )


def parse_s3_url(url: str) -> tuple[str, str]:
    parsed = urlparse(url)
    if parsed.scheme != "s3" or not parsed.netloc:
        raise StoreError(f"not an s3:// URL: {url!r}")
    return parsed.netloc, parsed.path.lstrip("/")


def open_store(url: str, s3_client: Any | None = None) -> Store:
    """A store for a local path / ``file://`` URL, or ``s3://bucket/prefix`` (needs ``s3_client``)."""
    if url.startswith("s3://"):
        bucket, prefix = parse_s3_url(url)
        if s3_client is None:
            import boto3

            s3_client = boto3.client("s3")
        return S3Store(bucket, prefix, s3_client)
    if url.startswith("file://"):
        url = urlparse(url).path
    return LocalStore(url)
