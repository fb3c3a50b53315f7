"""The code location image (deploy/Dockerfile) is correct by construction: built from uv.lock
alone, no dev dependencies, no secret, an unprivileged user, a build context that holds what the
build copies and nothing local. ``docker build`` cannot run here; with ``QUANT_TEST_IMAGE=1`` the
build's two ``uv sync`` steps are replayed on the build context and the result loads the code
location with the runtime dependencies only."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
DOCKERFILE = REPO / "deploy" / "Dockerfile"
IGNORE = REPO / "deploy" / "Dockerfile.dockerignore"
SECRET_NAME = re.compile(r"(PASSWORD|SECRET|TOKEN|API_KEY|ACCESS_KEY|CREDENTIAL|PRIVATE)", re.IGNORECASE)
SECRET_VALUE = re.compile(r"(AKIA[0-9A-Z]{12,}|postgres(ql)?://[^/\s]*:[^@/\s]+@|-----BEGIN)")


def parse_dockerfile(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) in order; continuation lines joined, comments dropped."""
    out, buf = [], ""
    for raw in text.splitlines():
        line = raw.strip()
        if not buf and (not line or line.startswith("#")):
            continue
        if buf and line.startswith("#"):
            continue
        if line.endswith("\\"):
            buf += line[:-1] + " "
            continue
        buf += line
        instr, _, args = buf.strip().partition(" ")
        out.append((instr.upper(), args.strip()))
        buf = ""
    assert not buf, "dangling line continuation"
    return out


def stages(instructions):
    """[(stage name, base image, [instructions])]; ARG defaults substituted in FROM."""
    args = {}
    result = []
    for instr, rest in instructions:
        if instr == "ARG" and not result:
            name, _, default = rest.partition("=")
            args[name] = default
        elif instr == "FROM":
            words = rest.split()
            image = re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], words[0])
            name = words[2] if len(words) > 2 and words[1].upper() == "AS" else str(len(result))
            result.append((name, image, []))
        elif result:
            result[-1][2].append((instr, rest))
    return result


def _pattern(p: str) -> re.Pattern:
    p = p.strip().rstrip("/")
    out = ""
    i = 0
    while i < len(p):
        if p.startswith("**/", i):
            out += "(.*/)?"
            i += 3
        elif p.startswith("**", i):
            out += ".*"
            i += 2
        elif p[i] == "*":
            out += "[^/]*"
            i += 1
        elif p[i] == "?":
            out += "[^/]"
            i += 1
        else:
            out += re.escape(p[i])
            i += 1
    return re.compile(out + "$")


def dockerignore(text: str):
    """A matcher with Docker's rules: the last matching pattern wins, and a pattern matching a
    parent folder matches what is inside it."""
    rules = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        negate = line.startswith("!")
        rules.append((negate, _pattern(line.lstrip("!"))))

    def ignored(path: str) -> bool:
        parts = path.strip("/").split("/")
        prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
        verdict = False
        for negate, rx in rules:
            if any(rx.match(p) for p in prefixes):
                verdict = not negate
        return verdict

    return ignored


def build_context() -> list[str]:
    """The files `docker build -f deploy/Dockerfile .` would send, from the tracked tree."""
    ignored = dockerignore(IGNORE.read_text())
    try:
        listing = subprocess.run(
            ["git", "ls-files", "--cached", "--others", "--exclude-standard"], cwd=REPO, capture_output=True, text=True, check=True
        ).stdout.split()
    except (OSError, subprocess.CalledProcessError):  # an export without .git
        listing = [p.relative_to(REPO).as_posix() for p in REPO.rglob("*") if p.is_file() and ".venv" not in p.parts]
    return [f for f in listing if not ignored(f)]


@pytest.fixture(scope="module")
def image():
    return stages(parse_dockerfile(DOCKERFILE.read_text()))


def test_bases_are_pinned_and_match_the_project(image):
    project = tomllib.loads((REPO / "pyproject.toml").read_text())
    makefile = (REPO / "Makefile").read_text()
    uv_pin = re.search(r'"uv==([0-9.]+)"', makefile).group(1)
    bases = {name: base for name, base, _ in image}
    assert bases["uv"] == f"ghcr.io/astral-sh/uv:{uv_pin}"  # the uv the Makefile pins
    assert bases["build"] == bases["runtime"] == "python:3.11-slim-bookworm"
    # The interpreter of the image satisfies the project's requires-python and the lock.
    assert project["project"]["requires-python"] == ">=3.11"
    assert 'requires-python = ">=3.11"' in (REPO / "uv.lock").read_text()
    for base in bases.values():
        assert ":" in base and not base.endswith(":latest"), base
    assert image[-1][0] == "runtime"


def test_dependencies_come_from_the_lock_only(image):
    runs = [rest for _, _, body in image for instr, rest in body if instr == "RUN"]
    syncs = [r for r in runs if "uv sync" in r]
    assert len(syncs) == 2
    for sync in syncs:
        words = shlex.split(sync.split("uv sync", 1)[1])
        assert "--frozen" in words and "--no-dev" in words, sync
    assert "--no-install-project" in shlex.split(syncs[0].split("uv sync", 1)[1])
    assert not any(re.search(r"\bpip3? install\b|\buv pip\b|\buv add\b|\buv lock\b", r) for r in runs), runs
    # The lock layer is built from the lock alone, before any source is copied.
    build = next(body for name, _, body in image if name == "build")
    copies = [rest for instr, rest in build if instr == "COPY"]
    assert copies[1] == "pyproject.toml uv.lock ./"
    first_sync = next(i for i, (instr, rest) in enumerate(build) if "uv sync" in rest)
    assert [rest for instr, rest in build[:first_sync] if instr == "COPY"][-1] == "pyproject.toml uv.lock ./"


def test_the_image_runs_as_an_unprivileged_user(image):
    runtime = image[-1][2]
    users = [rest for instr, rest in runtime if instr == "USER"]
    assert users == ["10001:10001"]
    last = [instr for instr, _ in runtime]
    assert last.index("USER") > max(i for i, instr in enumerate(last) if instr in ("RUN", "COPY"))
    (setup,) = [rest for instr, rest in runtime if instr == "RUN"]
    assert "useradd --system --uid 10001 --gid 10001" in setup and "--shell /usr/sbin/nologin" in setup
    env = " ".join(rest for instr, rest in runtime if instr == "ENV")
    # Where the unprivileged user writes: /tmp (a volume when the root filesystem is read-only).
    for setting in ("HOME=/tmp", "QUANT_DATA_DIR=/tmp/quant-assets", "NUMBA_CACHE_DIR=/tmp/numba-cache"):
        assert setting in env


def test_no_secret_is_baked_in(image):
    for _, _, body in image:
        for instr, rest in body:
            if instr in ("ENV", "ARG", "LABEL"):
                for name in re.findall(r"([A-Za-z_][A-Za-z0-9_]*)=", rest):
                    assert not SECRET_NAME.search(name), f"{instr} {name}"
            assert not SECRET_VALUE.search(rest), rest
            if instr == "COPY":
                assert not re.search(r"\.env\b|\.aws|credentials|\.pem|\.key\b|dagster_home|data/", rest), rest
    context = build_context()
    assert not [f for f in context if re.search(r"(^|/)(\.env|.*\.pem|.*\.key|credentials)$", f)]


def test_the_build_context_holds_what_the_build_copies_and_nothing_local(image):
    context = set(build_context())
    ignored = dockerignore(IGNORE.read_text())
    for name, _, body in image:
        for instr, rest in body:
            if instr != "COPY" or rest.startswith("--from="):
                continue
            *sources, _dest = shlex.split(rest)
            for src in sources:
                assert (REPO / src).exists(), src
                assert not ignored(src), f"{src} is copied but excluded from the build context"
    # What the project build needs: its metadata, its readme (pyproject's `readme`) and the package.
    project = tomllib.loads((REPO / "pyproject.toml").read_text())
    assert {"pyproject.toml", "uv.lock", project["project"]["readme"]} <= context
    assert "quant_assets/definitions.py" in context and "quant_assets/lib/smart_money/sp500_universe.csv" in context
    assert {p.relative_to(REPO).as_posix() for p in (REPO / "sql").glob("*.sql")} <= context
    # Nothing from a working copy's state or the tests.
    for path in (".venv/bin/python", "data/lake/x.parquet", "dagster_home/dagster.yaml", "benchmarks/.data/x",
                 "quant_assets/__pycache__/x.pyc", ".git/HEAD", "quant_assets_tests/conftest.py", ".env", "deploy/x.env"):
        assert ignored(path), path
    assert not [f for f in context if f.startswith(("quant_assets_tests/", "benchmarks/", ".ci/", "dagster_home/"))]


def test_the_default_command_serves_the_code_location(image):
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["dagster"]
    cmd = [rest for instr, rest in image[-1][2] if instr == "CMD"]
    import json

    argv = json.loads(cmd[-1])
    assert argv[:3] == ["dagster", "code-server", "start"]
    assert argv[argv.index("--module-name") + 1] == project["module_name"]
    assert argv[argv.index("--location-name") + 1] == project["code_location_name"]
    assert argv[argv.index("--port") + 1] == "3030"
    values = yaml.safe_load((REPO / "deploy" / "helm" / "values.yaml").read_text())
    (deployment,) = values["dagster-user-deployments"]["deployments"]
    assert deployment["dagsterApiGrpcArgs"] == ["-m", project["module_name"]]
    assert deployment["port"] == 3030


@pytest.mark.skipif(os.environ.get("QUANT_TEST_IMAGE") != "1", reason="replays the image build with uv (set QUANT_TEST_IMAGE=1)")
def test_the_build_steps_give_a_runtime_that_loads_the_code_location(tmp_path):
    uv = shutil.which("uv") or str(Path.home() / ".local" / "bin" / "uv")
    ctx = tmp_path / "context"
    for rel in build_context():
        (ctx / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / rel, ctx / rel)
    venv = tmp_path / "venv"
    env = {**os.environ, "UV_PROJECT_ENVIRONMENT": str(venv), "UV_LINK_MODE": "copy", "UV_PYTHON_DOWNLOADS": "never"}
    env.pop("VIRTUAL_ENV", None)
    for args in (["--no-install-project"], ["--no-editable"]):
        subprocess.run([uv, "sync", "--frozen", "--no-dev", "--python", sys.executable, *args], cwd=ctx, env=env, check=True)
    runtime_env = {
        "PATH": f"{venv / 'bin'}:/usr/bin:/bin",
        "HOME": str(tmp_path),
        "QUANT_SQL_DIR": str(ctx / "sql"),
        "QUANT_DATA_DIR": str(tmp_path / "data"),
        "NUMBA_CACHE_DIR": str(tmp_path / "numba"),
        "DAGSTER_HOME": str(tmp_path),
    }
    probe = (
        "import importlib.util, quant_assets, quant_assets.definitions as d; d.defs.resolve_all_job_defs();"
        "import dagster_k8s, distributed, lightgbm;"
        "assert importlib.util.find_spec('pytest') is None;"
        "print(quant_assets.__file__)"
    )
    out = subprocess.run([str(venv / "bin" / "python"), "-W", "error::DeprecationWarning:quant_assets", "-c", probe],
                         cwd=tmp_path, env=runtime_env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    assert str(venv) in out.stdout  # the installed package, not the source tree
