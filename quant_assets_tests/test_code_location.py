"""The code location as Dagster loads it (``dagster dev -w workspace.yaml``), and the conventions
every asset, check, job, schedule and sensor of every domain follows."""

import subprocess
import sys

from dagster import DagsterInstance

from quant_assets.definitions import DOMAINS, defs
from quant_assets.defs.metadata import COLUMN_SCHEMA, OWNERS
from quant_assets_tests.dagster_stack import REPO


def test_workspace_loads_the_code_location_without_errors(tmp_path, monkeypatch):
    from quant_assets.demo.launch import WorkspaceLauncher

    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path))
    (tmp_path / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    with DagsterInstance.get() as instance, WorkspaceLauncher(instance, REPO / "workspace.yaml") as launcher:
        remote_keys = {node.key for node in launcher.repository.asset_graph.asset_nodes}
    assert {k for k in defs.resolve_asset_graph().get_all_asset_keys()} == remote_keys
    for domain in DOMAINS:
        name = domain.__name__.rsplit(".", 1)[-1]
        assert any(k.path[0] == name for k in remote_keys), f"domain {name} has no asset in the code location"


def test_loading_prints_no_warning():
    proc = subprocess.run(
        [sys.executable, "-W", "always", "-c", "import quant_assets.definitions as d; d.defs.resolve_all_job_defs()"],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=REPO,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Warning" not in proc.stderr, proc.stderr[-3000:]


def _assets():
    graph = defs.resolve_asset_graph()
    return [graph.get(k) for k in graph.get_all_asset_keys()]


def test_every_asset_is_documented_owned_and_typed():
    problems = []
    for node in _assets():
        key = node.key.to_user_string()
        domain = node.key.path[0]
        if domain not in OWNERS:
            problems.append(f"{key}: key does not start with a domain")
            continue
        if node.group_name != domain:
            problems.append(f"{key}: group {node.group_name} is not its domain")
        if list(node.owners) != OWNERS[domain]:
            problems.append(f"{key}: owners {node.owners}")
        if not (node.description or "").strip() or len(node.description) < 60:
            problems.append(f"{key}: no real description")
        if not node.kinds:
            problems.append(f"{key}: no kinds")
        if node.is_materializable:
            if not node.code_version:
                problems.append(f"{key}: no code_version")
            if node.tags.get("domain") != domain or "layer" not in node.tags:
                problems.append(f"{key}: tags {dict(node.tags)}")
            schema = node.metadata.get(COLUMN_SCHEMA)
            if schema is not None:
                undocumented = [c.name for c in schema.schema.columns if not (c.description or "").strip()]
                if undocumented:
                    problems.append(f"{key}: undocumented columns {undocumented}")
    assert not problems, "\n".join(problems)


def test_every_job_schedule_sensor_and_check_has_a_description():
    repo = defs.get_repository_def()
    missing = [f"job {j.name}" for j in repo.get_all_jobs() if not j.name.startswith("__") and not j.description]
    missing += [f"schedule {s.name}" for s in repo.schedule_defs if not s.description]
    missing += [f"sensor {s.name}" for s in repo.sensor_defs if not s.description]
    graph = defs.resolve_asset_graph()
    for check_key in graph.asset_check_keys:
        spec = graph.get_check_spec(check_key)
        if not (spec.description or "").strip():
            missing.append(f"check {check_key.to_user_string()}")
    assert not missing, "\n".join(missing)


def _configured_nodes():
    seen = {}
    for node in defs.resolve_asset_graph().assets_defs:
        op = node.node_def if node.is_executable else None
        if op is not None and getattr(op, "config_schema", None) is not None and op.config_schema.as_field().config_type.kind.name == "STRICT_SHAPE":
            seen[op.name] = op
    return sorted(seen.items())


def test_launchpad_config_shows_plain_types_with_defaults():
    nodes = _configured_nodes()
    assert {"market__day_aggs", "market__daily_filtered", "market__minute_features"} <= {n for n, _ in nodes}
    problems = []
    for name, op in nodes:
        for field_name, field in op.config_schema.config_type.fields.items():
            type_name = str(field.config_type.given_name or field.config_type.key)
            if "Source" in type_name:
                problems.append(f"{name}.{field_name} is typed {type_name}")
            if not field.default_provided:
                problems.append(f"{name}.{field_name} has no default")
            if not field.description:
                problems.append(f"{name}.{field_name} has no description")
    assert not problems, "\n".join(problems)
