"""Dagster warnings we have read and accepted, silenced by exact class and message.

Every entry names the Dagster warning class and the one feature it is about; anything else
(a new deprecation, a beta feature we did not choose) still reaches the terminal.
"""

from __future__ import annotations

import warnings

from dagster import BetaWarning, SupersessionWarning

# (class, message regex): features we use on purpose, with the reason.
ACCEPTED: tuple[tuple[type[Warning], str], ...] = (
    # Range backfills of at most a year of sessions per run (a few days for minute files) are
    # how the market group bounds memory and keeps range writes atomic.
    (BetaWarning, r"Parameter `backfill_policy` of"),
    # Holidays and the first sessions of history have no upstream partition to map to.
    (BetaWarning, r"Parameter `allow_nonexistent_upstream_partitions` of"),
    # `make dev` runs `dagster dev -w workspace.yaml`, which loads the code location exactly as
    # the daemon and the deployed webserver do; `dg dev` would need a second project layout.
    (SupersessionWarning, r"Function `dev_command` is superseded"),
)


def install() -> None:
    for category, message in ACCEPTED:
        warnings.filterwarnings("ignore", category=category, message=message)


install()
