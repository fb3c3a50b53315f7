"""The SQL warehouse: a DuckDB file by default, PostgreSQL in production, behind one small API.

URLs
    ``duckdb:///relative/path.duckdb``, ``duckdb:////absolute/path.duckdb`` (SQLAlchemy's
    convention: the path is whatever follows the third slash), ``duckdb:///:memory:``,
    ``postgresql://user:password@host:port/db`` (``postgres://`` and a ``+driver`` suffix such
    as ``postgresql+psycopg2://`` are accepted too).

Placeholders
    SQL is written once, in psycopg's style, and runs on both backends: ``%s`` for positional
    parameters, ``%(name)s`` for named ones, ``%%`` for a literal percent sign when parameters
    are given. For DuckDB they are translated to ``?`` / ``$name``.

JSON
    DDL declares JSON columns as ``JSONB`` (PostgreSQL). DuckDB has no JSONB type, so before it
    runs DDL that mentions JSONB the warehouse creates ``JSONB`` as an alias of DuckDB's ``JSON``.
    Load JSON columns as polars strings holding JSON text; both backends reject malformed JSON.
    Queries return JSON columns as their text on both backends (PostgreSQL normalises JSONB's
    spacing and key order).

NULL and NaN
    They stay distinct on both backends: a polars null is stored as SQL NULL, a float NaN as
    the IEEE value NaN (and comes back as NaN, not null). ``+/-inf`` round-trip as well.

Concurrency
    DuckDB allows one writing process per file, and Dagster runs each run in its own process, so
    a file-backed warehouse opens the file for the duration of one call only and waits (up to
    ``lock_timeout`` seconds) while another process holds it. ``:memory:`` keeps one connection,
    otherwise its contents would vanish between calls. PostgreSQL keeps one connection per
    ``Warehouse`` and reconnects when it breaks.

The password never appears in ``repr``, in ``url`` or in the errors raised here.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import os
import re
import threading
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any, Literal
from urllib.parse import parse_qsl, quote, unquote, urlencode, urlsplit, urlunsplit

import polars as pl

__all__ = [
    "SchemaMigrationError",
    "Warehouse",
    "WarehouseError",
    "default_sql_dir",
    "mask_url",
    "quote_identifier",
]

log = logging.getLogger(__name__)

_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_MASK = "***"
# Arbitrary but fixed: serialises concurrent apply_ddl calls against one PostgreSQL database.
_MIGRATION_LOCK_KEY = 0x71A_5C4E_4D41
_COPY_CHUNK_ROWS = 200_000


class WarehouseError(RuntimeError):
    pass


class SchemaMigrationError(WarehouseError):
    pass


# --------------------------------------------------------------------------- identifiers and URLs


def _check_identifier(name: object) -> str:
    if not isinstance(name, str) or not _IDENTIFIER.match(name):
        raise ValueError(f"invalid SQL identifier {name!r}: expected [A-Za-z_][A-Za-z0-9_]*")
    return name


def quote_column(name: object) -> str:
    """A validated, double-quoted column name."""
    return f'"{_check_identifier(name)}"'


def quote_identifier(name: object) -> str:
    """A validated, double-quoted ``table`` or ``schema.table``."""
    if not isinstance(name, str):
        raise ValueError(f"invalid SQL identifier {name!r}")
    parts = name.split(".")
    if len(parts) > 2:
        raise ValueError(f"invalid SQL identifier {name!r}: at most schema.table")
    return ".".join(quote_column(part) for part in parts)


_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*://)(.*)$", re.DOTALL)


def _split_userinfo(url: str) -> tuple[str, str | None, str | None, str] | None:
    """``(scheme://, user, password, rest after '@')`` of a URL with credentials, else None.

    The credentials end at the LAST '@': a password may hold '/', '?', '#' or '@' that were never
    percent-encoded, and a plain URL parser would then take part of it for the host or the path
    (and print it).
    """
    m = _SCHEME.match(url)
    if not m:
        return None
    scheme, rest = m.groups()
    at = rest.rfind("@")
    if at < 0:
        return None
    userinfo, host = rest[:at], rest[at + 1 :]
    user, sep, password = userinfo.partition(":")
    return scheme, user, (password if sep else None), host


def normalize_url(url: str) -> str:
    """``url`` with user and password percent-encoded, so every parser reads them the same way
    (an encoded password stays as it is)."""
    parts = _split_userinfo(url)
    if parts is None:
        return url
    scheme, user, password, host = parts
    userinfo = quote(unquote(user or ""), safe="")
    if password is not None:
        userinfo += ":" + quote(unquote(password), safe="")
    return f"{scheme}{userinfo}@{host}"


def mask_url(url: str) -> str:
    """``url`` with any password replaced by ``***``, however the URL is written."""
    parts = _split_userinfo(url)
    if parts is not None and parts[2]:
        scheme, user, _, host = parts
        url = f"{scheme}{user}:{_MASK}@{host}"
    try:
        parsed = urlsplit(url)
    except ValueError:
        return "<unparseable URL>"
    if not parsed.query:
        return url
    pairs = parse_qsl(parsed.query, keep_blank_values=True)
    if not any(k.lower() == "password" for k, _ in pairs):
        return url
    query = urlencode([(k, _MASK if k.lower() == "password" else v) for k, v in pairs], safe="*")
    return urlunsplit(parsed._replace(query=query))


def _secrets_in(url: str) -> list[str]:
    """Every spelling of every secret in ``url`` (raw, decoded, encoded), longest first."""
    secrets: set[str] = set()
    parts = _split_userinfo(url)
    if parts is not None and parts[2]:
        raw = parts[2]
        secrets |= {raw, unquote(raw), quote(unquote(raw), safe="")}
    try:
        query = urlsplit(url).query
    except ValueError:
        query = ""
    for key, value in parse_qsl(query, keep_blank_values=True):
        if key.lower() == "password" and value:
            secrets |= {value, quote(value, safe="")}
    return sorted((s for s in secrets if s), key=len, reverse=True)


def _duckdb_path(url: str) -> str:
    if not url.startswith("duckdb:///"):
        raise ValueError(f"invalid DuckDB URL {url!r}: expected duckdb:///path or duckdb:///:memory:")
    path = url[len("duckdb:///") :]
    if not path:
        raise ValueError(f"invalid DuckDB URL {url!r}: no path")
    return path


# --------------------------------------------------------------------------- placeholders

# psycopg itself does not look inside string literals or comments: a placeholder is a
# placeholder wherever it stands, and the translation follows suit.
_PLACEHOLDER_SCAN = re.compile(r"%%|%\((?P<name>[^)]*)\)[sbt]|%[sbt]|%")


def _to_duckdb(sql: str, params: Sequence[Any] | Mapping[str, Any] | None) -> tuple[str, Any]:
    """Translate psycopg placeholders to DuckDB's; without parameters ``%`` is left alone."""
    if params is None:
        return sql, None
    named = isinstance(params, Mapping)
    if not named and (isinstance(params, (str, bytes)) or not isinstance(params, Sequence)):
        raise TypeError(f"params must be a sequence or a mapping, not {type(params).__name__}")
    seen: list[str] = []

    def replace(m: re.Match[str]) -> str:
        token = m.group(0)
        if token == "%%":
            return "%"
        name = m.group("name")
        if name is not None:
            if not named:
                raise TypeError(f"%({name})s placeholder needs a mapping of parameters")
            if not _IDENTIFIER.match(name):
                raise ValueError(f"invalid parameter name {name!r}")
            seen.append(name)
            return f"${name}"
        if token != "%":
            if named:
                raise TypeError("%s placeholder needs a sequence of parameters")
            seen.append("")
            return "?"
        raise ValueError("stray '%' in SQL with parameters; write '%%' for a literal percent sign")

    translated = _PLACEHOLDER_SCAN.sub(replace, sql)
    if named:
        missing = sorted(set(seen) - set(params))
        if missing:
            raise KeyError(f"missing SQL parameters: {', '.join(missing)}")
        # DuckDB rejects named parameters that the statement does not use.
        return translated, {k: v for k, v in params.items() if k in seen}
    if len(seen) != len(params):
        raise TypeError(f"SQL has {len(seen)} placeholders but {len(params)} parameters were given")
    return translated, list(params)


# --------------------------------------------------------------------------- PostgreSQL results

# Result columns get an explicit dtype so that an empty result keeps its schema; the rest
# (numeric -> Decimal, json, ...) are inferred from the Python values psycopg returns.
_PG_DTYPES: dict[int, pl.DataType] = {
    16: pl.Boolean(),
    17: pl.Binary(),
    19: pl.String(),
    20: pl.Int64(),
    21: pl.Int16(),
    23: pl.Int32(),
    25: pl.String(),
    700: pl.Float32(),
    701: pl.Float64(),
    1042: pl.String(),
    1043: pl.String(),
    1082: pl.Date(),
    1083: pl.Time(),
    1114: pl.Datetime("us"),
    1184: pl.Datetime("us", "UTC"),
    114: pl.String(),  # json, loaded as text (see _JSON_TYPES)
    3802: pl.String(),  # jsonb
}
_JSON_TYPES = ("json", "jsonb")
_JSONB_WORD = re.compile(r"\bjsonb\b", re.IGNORECASE)

# Types COPY ... (FORMAT csv) reads back exactly from polars' CSV writer.
_CSV_SAFE = (
    pl.Boolean,
    pl.Int8,
    pl.Int16,
    pl.Int32,
    pl.Int64,
    pl.UInt8,
    pl.UInt16,
    pl.UInt32,
    pl.UInt64,
    pl.Float32,
    pl.Float64,
    pl.Decimal,
    pl.String,
    pl.Categorical,
    pl.Enum,
    pl.Date,
    pl.Datetime,
    pl.Time,
    pl.Null,
)


def _pg_frame(description: Sequence[Any], rows: list[tuple[Any, ...]]) -> pl.DataFrame:
    schema = [(col.name, _PG_DTYPES.get(col.type_code)) for col in description]
    return pl.DataFrame(rows, schema=schema, orient="row", infer_schema_length=None)


# --------------------------------------------------------------------------- DDL folder


def default_sql_dir() -> Path:
    """``$QUANT_SQL_DIR`` when set, else the repository's ``sql/`` next to the package."""
    env = os.environ.get("QUANT_SQL_DIR")
    if env:
        return Path(env).expanduser()
    return Path(__file__).resolve().parents[2] / "sql"


def _checksum(text: str) -> str:
    # Line endings are normalised so that a checkout with CRLF does not look like an edit.
    return hashlib.sha256(text.replace("\r\n", "\n").encode("utf-8")).hexdigest()


# --------------------------------------------------------------------------- the warehouse


class Warehouse:
    """A DuckDB or PostgreSQL database holding the research tables (see the module docstring)."""

    dialect: Literal["duckdb", "postgres"]

    def __init__(self, url: str, *, lock_timeout: float = 120.0):
        if not isinstance(url, str) or not url:
            raise ValueError("warehouse URL must be a non-empty string")
        self._secrets = _secrets_in(url)
        url = normalize_url(url)
        self._raw_url = url
        self._lock = threading.RLock()
        self._lock_timeout = lock_timeout
        self._conn: Any = None
        scheme = url.split(":", 1)[0].lower()
        if scheme == "duckdb":
            self.dialect = "duckdb"
            self._duckdb_path = _duckdb_path(url)
            self._pg_url = ""
        elif scheme.split("+", 1)[0] in ("postgresql", "postgres"):
            self.dialect = "postgres"
            self._duckdb_path = ""
            # libpq knows postgresql:// and postgres:// but not SQLAlchemy's +driver suffix.
            self._pg_url = "postgresql" + url[len(scheme) :]
        else:
            raise ValueError(f"unsupported warehouse URL {mask_url(url)!r}: expected duckdb:/// or postgresql://")

    @property
    def url(self) -> str:
        """The URL with its password masked."""
        return mask_url(self._raw_url)

    def __repr__(self) -> str:
        return f"Warehouse({self.url!r})"

    def __enter__(self) -> Warehouse:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                try:
                    self._conn.close()
                finally:
                    self._conn = None

    # ----------------------------------------------------------------------- connections

    def _scrub(self, message: str) -> str:
        for secret in self._secrets:
            message = message.replace(secret, _MASK)
        return message

    def _open_duckdb(self) -> Any:
        import duckdb

        path = self._duckdb_path
        if path == ":memory:":
            return duckdb.connect(":memory:")
        Path(path).expanduser().parent.mkdir(parents=True, exist_ok=True)
        deadline = time.monotonic() + self._lock_timeout
        delay = 0.02
        while True:
            try:
                return duckdb.connect(str(Path(path).expanduser()))
            except duckdb.IOException as exc:
                if "lock" not in str(exc).lower():
                    raise
                if time.monotonic() >= deadline:
                    raise WarehouseError(
                        f"DuckDB file {path} stayed locked by another process for {self._lock_timeout:.0f} s: {exc}"
                    ) from None
                time.sleep(delay)
                delay = min(delay * 2, 0.5)

    @contextmanager
    def _duckdb(self) -> Iterator[Any]:
        with self._lock:
            if self._duckdb_path == ":memory:":
                if self._conn is None:
                    self._conn = self._open_duckdb()
                yield self._conn
                return
            con = self._open_duckdb()
            try:
                yield con
            finally:
                con.close()

    @contextmanager
    def _postgres(self) -> Iterator[Any]:
        import psycopg

        with self._lock:
            if self._conn is None or self._conn.closed or self._conn.broken:
                try:
                    self._conn = psycopg.connect(self._pg_url, autocommit=True)
                except psycopg.Error as exc:
                    self._conn = None
                    raise WarehouseError(f"cannot connect to {self.url}: {self._scrub(str(exc))}") from None
                _json_as_text(self._conn)
            yield self._conn

    # ----------------------------------------------------------------------- statements

    def execute(self, sql: str, params: Sequence[Any] | Mapping[str, Any] | None = None) -> None:
        """Run a statement (several ``;``-separated ones when ``params`` is None)."""
        if self.dialect == "duckdb":
            with self._duckdb() as con:
                con.execute(*_to_duckdb(sql, params))
        else:
            with self._postgres() as conn:
                conn.execute(sql, params)

    def query(self, sql: str, params: Sequence[Any] | Mapping[str, Any] | None = None) -> pl.DataFrame:
        """The rows of a query as a polars DataFrame (typed even when empty)."""
        if self.dialect == "duckdb":
            with self._duckdb() as con:
                sql, params = _to_duckdb(sql, params)
                rel = con.sql(sql, params=params)
                return rel.pl() if rel is not None else pl.DataFrame()
        with self._postgres() as conn, conn.cursor() as cur:
            cur.execute(sql, params)
            if cur.description is None:
                return pl.DataFrame()
            return _pg_frame(cur.description, cur.fetchall())

    # ----------------------------------------------------------------------- loads

    def replace_rows(self, table: str, df: pl.DataFrame, where: Mapping[str, object]) -> int:
        """Delete the rows matching ``where`` (column = value, ``None`` = IS NULL) and insert ``df``.

        One transaction, so re-loading a partition is idempotent and readers never see it half
        written. Every row of ``df`` must belong to the slice ``where`` names, otherwise a second
        load would not delete what the first one wrote. Returns the number of rows inserted.
        """
        qtable = quote_identifier(table)
        if not where:
            raise ValueError("replace_rows needs at least one column in `where`; use replace_table")
        conditions, params = [], []
        for column, value in where.items():
            _check_in_frame(df, column)
            s = df.get_column(column)
            try:
                outside = df.height - int(s.is_null().sum() if value is None else s.eq_missing(value).sum())
            except pl.exceptions.PolarsError as exc:
                raise ValueError(f"cannot compare column {column!r} with {value!r}: {exc}") from None
            if outside:
                raise ValueError(f"{outside} row(s) of the DataFrame have {column} != {value!r}")
            if value is None:
                conditions.append(f"{quote_column(column)} IS NULL")
            else:
                conditions.append(f"{quote_column(column)} = %s")
                params.append(value)
        return self._replace(qtable, df, " AND ".join(conditions), params)

    def replace_range(self, table: str, df: pl.DataFrame, column: str, lo: Any, hi: Any) -> int:
        """Delete the rows with ``lo <= column <= hi`` and insert ``df``, in one transaction.

        For range backfills: every row of ``df`` must lie inside the window. Returns the number
        of rows inserted.
        """
        qtable = quote_identifier(table)
        qcolumn = quote_column(column)
        if lo is None or hi is None:
            raise ValueError("replace_range needs both bounds")
        if lo > hi:
            raise ValueError(f"empty range: {lo!r} > {hi!r}")
        _check_in_frame(df, column)
        try:
            inside = df.get_column(column).is_between(lo, hi).fill_null(False)
        except pl.exceptions.PolarsError as exc:
            raise ValueError(f"cannot compare column {column!r} with {lo!r}..{hi!r}: {exc}") from None
        outside = df.height - int(inside.sum())
        if outside:
            raise ValueError(f"{outside} row(s) of the DataFrame have {column} outside {lo!r}..{hi!r}")
        return self._replace(qtable, df, f"{qcolumn} BETWEEN %s AND %s", [lo, hi])

    def count_by(self, table: str, column: str, lo: Any, hi: Any) -> dict[Any, int]:
        """``{value: rows}`` of ``table`` grouped by ``column`` for ``lo <= column <= hi``."""
        qcolumn = quote_column(column)
        got = self.query(
            f"SELECT {qcolumn} AS k, count(*) AS n FROM {quote_identifier(table)} "
            f"WHERE {qcolumn} BETWEEN %s AND %s GROUP BY {qcolumn}",
            (lo, hi),
        )
        return {k: int(n) for k, n in got.iter_rows()}

    def replace_table(self, table: str, df: pl.DataFrame) -> int:
        """Replace every row of ``table`` with ``df`` in one transaction (unpartitioned tables)."""
        return self._replace(quote_identifier(table), df, None, [])

    def _replace(self, qtable: str, df: pl.DataFrame, condition: str | None, params: list[Any]) -> int:
        if not isinstance(df, pl.DataFrame):
            raise TypeError(f"expected a polars DataFrame, got {type(df).__name__}")
        columns = ", ".join(quote_column(c) for c in df.columns)
        if not columns:
            raise ValueError("the DataFrame has no columns")
        delete = f"DELETE FROM {qtable}" + (f" WHERE {condition}" if condition else "")
        if self.dialect == "duckdb":
            with self._duckdb() as con:
                # Registered outside the transaction: a failed INSERT aborts it, and an aborted
                # transaction would refuse the unregister and hide the real error.
                source = f"_quant_src_{uuid.uuid4().hex}"
                con.register(source, df.to_arrow())
                try:
                    with _duckdb_transaction(con):
                        con.execute(*_to_duckdb(delete, params if condition else None))
                        deleted = con.fetchone()
                        if df.height:
                            con.execute(f"INSERT INTO {qtable} ({columns}) SELECT {columns} FROM {source}")
                finally:
                    con.unregister(source)
            deleted_rows = int(deleted[0]) if deleted else 0
        else:
            _check_copyable(df)
            copy_sql = f"COPY {qtable} ({columns}) FROM STDIN (FORMAT csv, NULL '\\N')"
            with self._postgres() as conn, conn.transaction(), conn.cursor() as cur:
                cur.execute(delete, params if condition else None)
                deleted_rows = cur.rowcount
                if df.height:
                    with cur.copy(copy_sql) as copy:
                        for chunk in df.iter_slices(_COPY_CHUNK_ROWS):
                            # non_numeric quoting keeps a string "\N" apart from the NULL marker
                            # and an empty string apart from NULL.
                            copy.write(
                                chunk.write_csv(include_header=False, null_value="\\N", quote_style="non_numeric")
                            )
        log.debug("%s: deleted %d row(s), inserted %d", qtable, deleted_rows, df.height)
        return df.height

    # ----------------------------------------------------------------------- DDL

    def apply_ddl(self, sql_dir: str | os.PathLike[str] | None = None) -> list[str]:
        """Run the ``*.sql`` files of ``sql_dir`` not yet applied, in name order; return their names.

        Each file runs in its own transaction together with its row in ``schema_migrations``, so a
        failing file leaves nothing behind. A file edited after it was applied is an error: write
        a new file instead. Files must not contain transaction control statements.
        """
        directory = Path(sql_dir).expanduser() if sql_dir is not None else default_sql_dir()
        if not directory.is_dir():
            raise WarehouseError(f"DDL folder {directory} does not exist (set QUANT_SQL_DIR?)")
        scripts = []
        for path in sorted(directory.glob("*.sql"), key=lambda p: p.name):
            if path.is_file():
                text = path.read_text(encoding="utf-8")
                scripts.append((path.name, text, _checksum(text)))

        create = (
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            " filename TEXT PRIMARY KEY, checksum TEXT NOT NULL, applied_at TIMESTAMP NOT NULL)"
        )
        record = "INSERT INTO schema_migrations (filename, checksum, applied_at) VALUES (%s, %s, %s)"
        applied_now: list[str] = []
        if self.dialect == "duckdb":
            # The file lock (or, in memory, self._lock) keeps other writers out for the whole run.
            with self._duckdb() as con:
                con.execute(create)
                recorded = dict(con.execute("SELECT filename, checksum FROM schema_migrations").fetchall())
                _check_unchanged(scripts, recorded)
                if any(_JSONB_WORD.search(text) for name, text, _ in scripts if name not in recorded):
                    _duckdb_jsonb_alias(con)
                for name, text, checksum in scripts:
                    if name in recorded:
                        continue
                    try:
                        with _duckdb_transaction(con):
                            if text.strip():
                                con.execute(text)
                            con.execute(*_to_duckdb(record, [name, checksum, _utcnow()]))
                    except Exception as exc:
                        raise SchemaMigrationError(f"{name} failed: {exc}") from exc
                    applied_now.append(name)
        else:
            import psycopg

            with self._postgres() as conn:
                conn.execute("SELECT pg_advisory_lock(%s)", [_MIGRATION_LOCK_KEY])
                try:
                    conn.execute(create)
                    recorded = dict(conn.execute("SELECT filename, checksum FROM schema_migrations").fetchall())
                    _check_unchanged(scripts, recorded)
                    for name, text, checksum in scripts:
                        if name in recorded:
                            continue
                        try:
                            with conn.transaction():
                                if text.strip():
                                    conn.execute(text)
                                conn.execute(record, [name, checksum, _utcnow()])
                        except psycopg.Error as exc:
                            raise SchemaMigrationError(f"{name} failed: {exc}") from exc
                        applied_now.append(name)
                finally:
                    if not conn.broken:
                        conn.execute("SELECT pg_advisory_unlock(%s)", [_MIGRATION_LOCK_KEY])
        for name in applied_now:
            log.info("applied %s", name)
        return applied_now


@contextmanager
def _duckdb_transaction(con: Any) -> Iterator[None]:
    con.execute("BEGIN TRANSACTION")
    try:
        yield
        con.execute("COMMIT")
    except BaseException:
        # After a failed COMMIT there may be no transaction left to roll back; the original
        # error is the one worth raising.
        with suppress(Exception):
            con.execute("ROLLBACK")
        raise


def _duckdb_jsonb_alias(con: Any) -> None:
    """Let PostgreSQL DDL with JSONB columns run on DuckDB: JSONB becomes an alias of JSON."""
    exists = con.execute("SELECT 1 FROM duckdb_types() WHERE lower(type_name) = 'jsonb' LIMIT 1").fetchone()
    if not exists:
        con.execute("CREATE TYPE JSONB AS JSON")


def _json_as_text(conn: Any) -> None:
    """JSON and JSONB results as their text, like DuckDB returns them (not parsed Python objects)."""
    from psycopg.types.string import TextLoader

    for name in _JSON_TYPES:
        conn.adapters.register_loader(name, TextLoader)


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


def _check_unchanged(scripts: list[tuple[str, str, str]], recorded: Mapping[str, str]) -> None:
    changed = [name for name, _, checksum in scripts if name in recorded and recorded[name] != checksum]
    if changed:
        raise SchemaMigrationError(
            f"already-applied DDL file(s) changed since they were applied: {', '.join(changed)}. "
            "Applied files are immutable: revert the edit and put the change in a new, "
            "later-numbered file."
        )


def _check_in_frame(df: pl.DataFrame, column: str) -> None:
    _check_identifier(column)
    if not isinstance(df, pl.DataFrame):
        raise TypeError(f"expected a polars DataFrame, got {type(df).__name__}")
    if column not in df.columns:
        raise ValueError(f"column {column!r} is missing from the DataFrame")


def _check_copyable(df: pl.DataFrame) -> None:
    for name, dtype in df.schema.items():
        if not isinstance(dtype, _CSV_SAFE) and dtype not in _CSV_SAFE:
            raise TypeError(f"column {name!r} has type {dtype}, which the PostgreSQL loader does not support")
