"""Which landing-zone files need work: the planning behind the landing sensor.

A publication is a file's bytes, identified by its ETag (S3's content hash; for a local folder a
stat signature that every write changes). Timestamps are never trusted: a file dated a year
ahead, a file copied in late with an old date, or new bytes with an unchanged date are all just
publications. What has been done is read from the Dagster instance (the ETag each partition was
last materialized from), so a re-publish is seen even if it happened while nothing was watching.

The cursor only saves work and double work: it keeps one short digest per (file kind, month) of
the files that were dealt with, and the re-publishes requested but not built yet. A month whose digest is unchanged is skipped without asking the instance; a
month with a new, changed, removed or still-waiting file is looked at again. A file whose
partition does not exist yet (the day is not over, or ``QUANT_END_DATE`` has not reached it)
waits, and is picked up on the first tick after its partition appears. Ten years of day and
minute files give a cursor of about 5 KB.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping

from quant_assets.lib.sources import polygon

CURSOR_VERSION = 2


@dataclasses.dataclass(frozen=True)
class LandingFile:
    key: str
    kind: str  # "day" | "minute"
    day: dt.date
    etag: str

    @property
    def partition(self) -> str:
        return self.day.isoformat()

    @property
    def group(self) -> str:
        return f"{self.kind[0]}{self.day:%Y-%m}"


def parse_listing(objects: Iterable) -> list[LandingFile]:
    """Flat files among listed objects (anything else in the landing zone is not ours)."""
    out = []
    for obj in objects:
        parsed = polygon.parse_key(obj.key)
        if parsed is not None:
            out.append(LandingFile(obj.key, parsed[0], parsed[1], obj.etag))
    return out


def _digest(files: Iterable[LandingFile]) -> str:
    h = hashlib.blake2b(digest_size=5)
    for f in sorted(files, key=lambda f: f.key):
        h.update(f.key.encode())
        h.update(b"\0")
        h.update(f.etag.encode())
        h.update(b"\n")
    return h.hexdigest()


def decode_cursor(cursor: str | None) -> dict[str, str]:
    """The per-group digests of a cursor ({} for none, or one this version cannot read)."""
    return _decode(cursor)[0]


def _decode(cursor: str | None) -> tuple[dict[str, str], set[str]]:
    if not cursor:
        return {}, set()
    try:
        state = json.loads(cursor)
    except json.JSONDecodeError:
        return {}, set()
    if not isinstance(state, dict) or state.get("v") != CURSOR_VERSION:
        return {}, set()  # an older cursor: look at everything once
    return dict(state.get("g", {})), set(state.get("p", []))


def encode_cursor(groups: Mapping[str, str], in_flight: Iterable[str] = ()) -> str:
    state: dict = {"v": CURSOR_VERSION, "g": dict(sorted(groups.items()))}
    pending = sorted(in_flight)
    if pending:
        state["p"] = pending
    return json.dumps(state, separators=(",", ":"))


def _publication(f: LandingFile) -> str:
    """A re-publish requested and not yet built: kept in the cursor so that a second look at its
    month (another file arrived) does not request it again. New files need no such memory: their
    run key (kind, day, ETag) makes Dagster launch each of them once."""
    return f"{f.kind[0]}:{f.partition}:{f.etag}"


@dataclasses.dataclass
class LandingPlan:
    new: list[LandingFile]  # never materialized: run its day
    republished: list[LandingFile]  # materialized from other bytes: rerun it and what reads it
    # Roots of one rebuild: the re-published files, plus new files dated on or after the earliest
    # of them (their day reads the re-published one, so it must run after it, not beside it).
    rebuild: list[LandingFile]
    observe: list[LandingFile]  # a data version the instance has not recorded yet
    waiting: list[LandingFile]  # its partition does not exist yet
    ignored: list[tuple[LandingFile, str]]  # can never be a partition (weekend, before history)
    examined: int
    cursor: str


Lookup = Callable[[list[LandingFile]], tuple[Mapping[tuple[str, str], str], Mapping[tuple[str, str], str]]]


def plan(
    files: list[LandingFile],
    cursor: str | None,
    *,
    partition_exists: Callable[[dt.date], bool],
    never_a_partition: Callable[[dt.date], str | None],
    lookup: Lookup,
) -> LandingPlan:
    """Decide what the listed ``files`` require.

    ``lookup(files)`` returns two maps keyed by ``(kind, partition)``: the ETag each partition was
    last materialized from, and the last ETag observed for it. ``never_a_partition(day)`` gives a
    reason when a date can never be a partition.
    """
    previous, in_flight = _decode(cursor)
    by_group: dict[str, list[LandingFile]] = defaultdict(list)
    for f in files:
        by_group[f.group].append(f)
    digests = {g: _digest(fs) for g, fs in by_group.items()}
    dirty = sorted(g for g, d in digests.items() if previous.get(g) != d)

    ignored: list[tuple[LandingFile, str]] = []
    waiting: list[LandingFile] = []
    ready: list[LandingFile] = []
    for g in dirty:
        for f in by_group[g]:
            reason = never_a_partition(f.day)
            if reason:
                ignored.append((f, reason))
            elif not partition_exists(f.day):
                waiting.append(f)
            else:
                ready.append(f)

    materialized, observed = lookup(ready) if ready else ({}, {})
    new, republished, observe = [], [], []
    examined_slots = {(f.kind[0], f.partition) for f in ready}
    # Forget requests whose file was looked at again (built since, or replaced by newer bytes).
    still_in_flight = {p for p in in_flight if tuple(p.split(":")[:2]) not in examined_slots}
    for f in ready:
        slot = (f.kind, f.partition)
        if observed.get(slot) != f.etag:
            observe.append(f)
        done = materialized.get(slot)
        if done == f.etag:
            continue
        if done is None:
            new.append(f)
        else:
            still_in_flight.add(_publication(f))
            if _publication(f) not in in_flight:
                republished.append(f)

    rebuild: list[LandingFile] = []
    if republished:
        earliest = min(f.day for f in republished)
        moved = [f for f in new if f.day >= earliest]
        new = [f for f in new if f.day < earliest]
        rebuild = republished + moved
        still_in_flight |= {_publication(f) for f in moved}
    else:
        # A new file that went into an earlier rebuild is in flight: do not run it beside it.
        new = [f for f in new if _publication(f) not in in_flight]
        still_in_flight |= {_publication(f) for f in ready if _publication(f) in in_flight and materialized.get((f.kind, f.partition)) != f.etag}

    waiting_keys = {f.key for f in waiting}
    groups = {}
    for g, d in digests.items():
        if g in dirty:
            groups[g] = _digest(f for f in by_group[g] if f.key not in waiting_keys)
        else:
            groups[g] = d
    cursor_out = encode_cursor(groups, still_in_flight)
    return LandingPlan(new, republished, rebuild, observe, waiting, ignored, len(ready) + len(waiting), cursor_out)
