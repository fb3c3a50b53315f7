"""Test session setup: hermetic environment, real servers, shared fixtures.

The session never touches the repository's ``dagster_home/`` or ``data/``, nor a production
lake, landing zone, warehouse or vendor API configured in the caller's environment: those
variables are replaced for the whole session (collection included) and restored at the end.
"""

from __future__ import annotations

import os
import shutil
import tempfile

import pytest

# Cleared so that a developer's production settings cannot leak into a test.
_CLEARED_ENV = (
    "QUANT_LANDING_URL",
    "QUANT_LAKE_URL",
    "QUANT_WAREHOUSE_URL",
    "QUANT_SQL_DIR",
    "QUANT_START_DATE",
    "QUANT_END_DATE",
    "DAGSTER_PG_HOST",
    "DAGSTER_PG_PORT",
    "DAGSTER_PG_USER",
    "DAGSTER_PG_PASSWORD",
    "DAGSTER_PG_DB",
    "FMP_API_KEY",
    "POLYGON_API_KEY",
)

_session_state: dict[str, object] = {}


def _isolate_environment() -> None:
    root = tempfile.mkdtemp(prefix="quant-tests-")
    dagster_home = os.path.join(root, "dagster_home")
    data_dir = os.path.join(root, "data")
    os.makedirs(dagster_home)
    os.makedirs(data_dir)
    with open(os.path.join(dagster_home, "dagster.yaml"), "w") as fh:
        fh.write("telemetry:\n  enabled: false\n")
    overrides: dict[str, str | None] = {"DAGSTER_HOME": dagster_home, "QUANT_DATA_DIR": data_dir}
    overrides.update({name: None for name in _CLEARED_ENV})
    _session_state["saved"] = {name: os.environ.get(name) for name in overrides}
    _session_state["root"] = root
    for name, value in overrides.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


# Before the fixture modules below are imported, in case they read the environment at import.
_isolate_environment()

from quant_assets_tests.fixtures import *  # noqa: E402, F403
from quant_assets_tests.servers import *  # noqa: E402, F403
from quant_assets_tests.http_fake import *  # noqa: E402, F403


def pytest_configure(config: pytest.Config) -> None:
    # The Dagster warnings the project accepted (quant_assets/warnings_policy.py) stay silent in
    # the suite too; any other Dagster beta/preview warning fails it (pyproject.toml).
    from quant_assets.warnings_policy import ACCEPTED

    for category, message in ACCEPTED:
        config.addinivalue_line("filterwarnings", f"ignore:{message}:{category.__module__}.{category.__qualname__}")
    # A private temporary root: pytest's shared numbered folders are pruned by every other
    # pytest process of the same user, which can remove a running session's files.
    if not config.option.basetemp:
        config.option.basetemp = os.path.join(str(_session_state["root"]), "pytest")


def pytest_unconfigure(config: pytest.Config) -> None:
    saved = _session_state.pop("saved", {})
    for name, value in saved.items():  # type: ignore[union-attr]
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value
    root = _session_state.pop("root", None)
    if root:
        shutil.rmtree(str(root), ignore_errors=True)
