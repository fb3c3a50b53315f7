"""LocalStore and S3Store (against a real S3 endpoint on loopback) behave the same way."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from quant_assets.lib import storage
from quant_assets.lib.storage import LocalStore, ObjectInfo, S3Store, StoreError, open_store


@pytest.fixture(params=["local", "s3"])
def store(request, tmp_path):
    if request.param == "local":
        return LocalStore(tmp_path / "store")
    _, bucket, client = request.getfixturevalue("s3_bucket")
    return open_store(f"s3://{bucket}/lake/root", client)


def _listing(store, prefix: str = "") -> list[tuple[str, int]]:
    return sorted((info.key, info.size) for info in store.list(prefix))


def test_round_trip(store):
    payload = bytes(range(256)) * 3
    store.write_bytes("us_stocks_sip/day_aggs_v1/2024/01/2024-01-02.csv.gz", payload)

    assert store.read_bytes("us_stocks_sip/day_aggs_v1/2024/01/2024-01-02.csv.gz") == payload
    assert store.exists("us_stocks_sip/day_aggs_v1/2024/01/2024-01-02.csv.gz") is True
    assert store.exists("us_stocks_sip/day_aggs_v1/2024/01/2024-01-03.csv.gz") is False

    store.write_bytes("us_stocks_sip/day_aggs_v1/2024/01/2024-01-02.csv.gz", b"replaced")
    assert store.read_bytes("us_stocks_sip/day_aggs_v1/2024/01/2024-01-02.csv.gz") == b"replaced"

    store.delete("us_stocks_sip/day_aggs_v1/2024/01/2024-01-02.csv.gz")
    assert store.exists("us_stocks_sip/day_aggs_v1/2024/01/2024-01-02.csv.gz") is False
    store.delete("us_stocks_sip/day_aggs_v1/2024/01/2024-01-02.csv.gz")  # deleting twice is fine


def test_empty_object(store):
    store.write_bytes("empty.bin", b"")
    assert store.read_bytes("empty.bin") == b""
    assert _listing(store) == [("empty.bin", 0)]


def test_list_filters_by_prefix_and_reports_sizes(store):
    store.write_bytes("a/1.bin", b"abc")
    store.write_bytes("a/2.bin", b"abcde")
    store.write_bytes("ab/3.bin", b"abcdefg")
    store.write_bytes("b/4.bin", b"x")
    store.write_bytes("a/deeper/5.bin", b"12")

    assert _listing(store, "a/") == [("a/1.bin", 3), ("a/2.bin", 5), ("a/deeper/5.bin", 2)]
    # A prefix is a string prefix, not a folder name.
    assert _listing(store, "a") == [("a/1.bin", 3), ("a/2.bin", 5), ("a/deeper/5.bin", 2), ("ab/3.bin", 7)]
    assert _listing(store, "a/2") == [("a/2.bin", 5)]
    assert _listing(store, "b/") == [("b/4.bin", 1)]
    assert _listing(store, "nothing/") == []
    assert _listing(store) == [
        ("a/1.bin", 3),
        ("a/2.bin", 5),
        ("a/deeper/5.bin", 2),
        ("ab/3.bin", 7),
        ("b/4.bin", 1),
    ]
    for info in store.list():
        assert isinstance(info, ObjectInfo)
        assert info.last_modified > 1_600_000_000
        assert info.etag


def test_etag_changes_when_content_is_rewritten(store):
    store.write_bytes("k.bin", b"aaaa")
    (first,) = store.list("k.bin")
    store.write_bytes("k.bin", b"bbbb")  # same size, new content, immediately after
    (second,) = store.list("k.bin")
    assert (first.key, first.size) == (second.key, second.size) == ("k.bin", 4)
    assert second.etag != first.etag
    # Untouched objects keep theirs, so a sensor can key on (key, etag).
    (again,) = store.list("k.bin")
    assert again.etag == second.etag


def test_missing_key_raises_file_not_found_naming_it(store):
    with pytest.raises(FileNotFoundError) as err:
        store.read_bytes("landing/missing/2024-01-02.csv.gz")
    assert "landing/missing/2024-01-02.csv.gz" in str(err.value)


@pytest.mark.parametrize("key", ["../escape.bin", "a/../../escape.bin", "a/./b.bin", "a/..", "..\\escape.bin"])
def test_keys_with_dot_segments_are_rejected(store, key):
    for operation in (
        lambda: store.write_bytes(key, b"x"),
        lambda: store.read_bytes(key),
        lambda: store.exists(key),
        lambda: store.delete(key),
        lambda: list(store.list(key)),
    ):
        with pytest.raises(StoreError, match="invalid storage key"):
            operation()
    assert _listing(store) == []


def test_leading_slash_is_relative_to_the_root(store):
    store.write_bytes("/rooted/x.bin", b"1")
    assert _listing(store) == [("rooted/x.bin", 1)]


# --------------------------------------------------------------------------- local specifics


def _all_files(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())


def test_local_write_leaves_no_temporary_files(tmp_path):
    store = LocalStore(tmp_path)
    for i in range(5):
        store.write_bytes(f"day/{i}.csv", f"row {i}\n".encode())
    store.write_bytes("day/0.csv", b"rewritten\n")
    assert _all_files(tmp_path) == [f"day/{i}.csv" for i in range(5)]
    assert (tmp_path / "day/0.csv").read_bytes() == b"rewritten\n"
    assert store.local_path("day/3.csv") == tmp_path / "day/3.csv"


def test_local_failed_rename_keeps_old_content(tmp_path, monkeypatch):
    store = LocalStore(tmp_path)
    store.write_bytes("bars.parquet", b"old content")

    def failing_replace(src, dst):
        raise OSError("simulated crash before the rename")

    monkeypatch.setattr(storage.os, "replace", failing_replace)
    with pytest.raises(OSError, match="simulated crash"):
        store.write_bytes("bars.parquet", b"new content that never lands")
    monkeypatch.undo()

    assert store.read_bytes("bars.parquet") == b"old content"
    assert _all_files(tmp_path) == ["bars.parquet"]


def test_local_failed_write_keeps_old_content(tmp_path):
    store = LocalStore(tmp_path)
    store.write_bytes("bars.parquet", b"old content")
    with pytest.raises(TypeError):
        store.write_bytes("bars.parquet", object())  # type: ignore[arg-type]  # fails mid-write
    assert store.read_bytes("bars.parquet") == b"old content"
    assert _all_files(tmp_path) == ["bars.parquet"]


def test_local_list_skips_in_flight_writes(tmp_path):
    store = LocalStore(tmp_path)
    store.write_bytes("d/real.csv", b"12345")
    (tmp_path / "d" / ".real.csv.abc123.tmp").write_bytes(b"partial")
    assert _listing(store, "d/") == [("d/real.csv", 5)]


def test_open_store_local_forms(tmp_path):
    plain = open_store(str(tmp_path / "landing"))
    as_url = open_store((tmp_path / "landing").as_uri())
    assert isinstance(plain, LocalStore) and isinstance(as_url, LocalStore)
    plain.write_bytes("x/y.txt", b"hello")
    assert as_url.read_bytes("x/y.txt") == b"hello"
    assert (tmp_path / "landing" / "x" / "y.txt").read_bytes() == b"hello"
    assert plain.url == str((tmp_path / "landing").resolve())


# --------------------------------------------------------------------------- S3 specifics


def test_s3_store_honours_the_prefix(s3_bucket):
    _, bucket, client = s3_bucket
    client.put_object(Bucket=bucket, Key="outside.txt", Body=b"o")
    client.put_object(Bucket=bucket, Key="lake/rootless.txt", Body=b"s")  # shares the string prefix
    client.put_object(Bucket=bucket, Key="lake/root/seeded.txt", Body=b"seed")

    store = open_store(f"s3://{bucket}/lake/root/", client)
    assert isinstance(store, S3Store)
    assert store.url == f"s3://{bucket}/lake/root"
    assert store.local_path("seeded.txt") is None

    store.write_bytes("x/y.txt", b"hello")
    assert client.get_object(Bucket=bucket, Key="lake/root/x/y.txt")["Body"].read() == b"hello"
    assert _listing(store) == [("seeded.txt", 4), ("x/y.txt", 5)]
    assert _listing(store, "x/") == [("x/y.txt", 5)]
    assert store.read_bytes("seeded.txt") == b"seed"

    store.delete("x/y.txt")
    keys = sorted(o["Key"] for o in client.list_objects_v2(Bucket=bucket)["Contents"])
    assert keys == ["lake/root/seeded.txt", "lake/rootless.txt", "outside.txt"]


def test_s3_store_without_prefix_sees_the_whole_bucket(s3_bucket):
    _, bucket, client = s3_bucket
    store = open_store(f"s3://{bucket}", client)
    store.write_bytes("a/b.txt", b"ab")
    client.put_object(Bucket=bucket, Key="c.txt", Body=b"c")
    assert store.url == f"s3://{bucket}"
    assert _listing(store) == [("a/b.txt", 2), ("c.txt", 1)]


def test_s3_missing_key_names_bucket_and_full_key(s3_bucket):
    _, bucket, client = s3_bucket
    store = open_store(f"s3://{bucket}/pre", client)
    with pytest.raises(FileNotFoundError, match=f"s3://{bucket}/pre/nope.bin"):
        store.read_bytes("nope.bin")


class _SmallPages:
    """A boto3 client whose list_objects_v2 paginator returns two keys per page."""

    def __init__(self, client):
        self._client = client
        self.pages = 0

    def __getattr__(self, name):
        return getattr(self._client, name)

    def get_paginator(self, operation):
        paginator = self._client.get_paginator(operation)
        outer = self

        class Paginator:
            def paginate(self, **kwargs):
                for page in paginator.paginate(**kwargs, PaginationConfig={"PageSize": 2}):
                    outer.pages += 1
                    yield page

        return Paginator()


def test_s3_list_follows_every_page(s3_bucket):
    _, bucket, client = s3_bucket
    for i in range(7):
        client.put_object(Bucket=bucket, Key=f"many/k{i}", Body=b"x" * i)
    small_pages = _SmallPages(client)
    store = open_store(f"s3://{bucket}/many", small_pages)
    assert _listing(store) == [(f"k{i}", i) for i in range(7)]
    assert small_pages.pages == 4


def test_open_store_rejects_s3_url_without_bucket():
    with pytest.raises(StoreError, match="not an s3:// URL"):
        open_store("s3:///prefix-only", s3_client=object())


def test_s3_server_sets_dummy_credentials(s3_server):
    assert os.environ["AWS_ACCESS_KEY_ID"] == "testing"
    assert os.environ["AWS_DEFAULT_REGION"] == "us-east-1"
    assert s3_server.startswith("http://127.0.0.1:")


def test_temporary_files_of_dead_writers_are_swept(tmp_path):
    import subprocess
    import sys
    import time as _time

    from quant_assets.lib import storage

    folder = tmp_path / "lake" / "market" / "daily_bars"
    folder.mkdir(parents=True)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead_pid = int(dead.stdout)
    alive = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        host = storage._HOST
        left = folder / f".2024-01-02.parquet.{host}~{dead_pid}.abc123.tmp"
        running = folder / f".2024-01-03.parquet.{host}~{alive.pid}.def456.tmp"
        foreign_old = folder / ".2024-01-04.parquet.otherhost~42.ghi789.tmp"
        foreign_new = folder / ".2024-01-05.parquet.otherhost~43.jkl012.tmp"
        for p in (left, running, foreign_old, foreign_new):
            p.write_bytes(b"half a parquet file")
        old = _time.time() - storage.FOREIGN_TEMP_MAX_AGE_S - 60
        import os

        os.utime(foreign_old, (old, old))
        store = storage.LocalStore(tmp_path / "lake")
        store.write_bytes("market/daily_bars/2024-01-08.parquet", b"new")
        assert not left.exists() and not foreign_old.exists()
        assert running.exists() and foreign_new.exists()
        assert store.read_bytes("market/daily_bars/2024-01-08.parquet") == b"new"
        assert [o.key for o in store.list("market/")] == ["market/daily_bars/2024-01-08.parquet"]
    finally:
        alive.kill()
        alive.wait()


def test_a_pid_reused_by_a_younger_process_is_not_the_writer(tmp_path):
    import os

    from quant_assets.lib import storage

    me = f".x.parquet.{storage._HOST}~{os.getppid()}.zz.tmp"
    # The parent process is alive but started long before "now + 100 s": not a reuse, kept.
    assert storage._dead_writer(me, mtime=1e12, now=1e12) is False
    # A file written before the live process with that PID started was left by someone else.
    assert storage._dead_writer(me, mtime=0.0, now=1.0) is True
