"""The wheel works outside the repository (issue #14 item 5).

Builds the wheel from a copy of the working tree, installs it with its pinned dependencies
(``constraints.txt``, from PyPI or pip's cache) into a fresh virtual environment in a
temporary folder, and runs the installed ``trilink`` from a temporary working directory, so
nothing can be found through the repository: every data file must come from the wheel.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass
from importlib.util import find_spec
from pathlib import Path

import pytest

from schemas.avro import SCHEMA_NAME
from tests import REPO_ROOT

pytestmark = [pytest.mark.integration, pytest.mark.timeout(420)]

#: Not copied into the build tree: environments, caches, run state and earlier build output
#: (setuptools reuses a stale ``build/`` or ``*.egg-info/`` it finds).
_NOT_SOURCE = shutil.ignore_patterns(
    ".git",
    ".venv",
    ".trilink",
    "build",
    "dist",
    "*.egg-info",
    "__pycache__",
    ".mypy_cache",
    ".ruff_cache",
    ".pytest_cache",
    ".hypothesis",
    "reports",
)

#: One flight solved by the installed and by the development ``trilink trajectory``.
#: Top-level commands ``trilink --help`` must list.
COMMANDS = {
    "up",
    "down",
    "status",
    "topics",
    "smoke",
    "schemas",
    "trajectory",
    "sensors",
    "ally",
    "run",
    "demo",
    "record",
    "replay",
    "loadtest",
    "monitoring",
}
#: The packages the wheel installs.
PACKAGES = ("trilink", "schemas", "producers", "consumers", "deploy")
TRAJECTORY_ARGS = [
    "trajectory",
    "--site",
    "39.0,125.7",
    "--range-km",
    "1000",
    "--azimuth-deg",
    "90",
    "--json",
]


@dataclass(frozen=True)
class Installed:
    """A fresh environment with the wheel installed, and a working directory outside the repo."""

    venv: Path
    workdir: Path
    site_packages: Path

    @property
    def trilink(self) -> str:
        return str(self.venv / "bin" / "trilink")

    @property
    def python(self) -> str:
        return str(self.venv / "bin" / "python")


def _clean_env() -> dict[str, str]:
    """The caller's environment without trilink settings or Python paths that could reach the repo."""
    return {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("TRILINK_", "PYTHON", "VIRTUAL_ENV")) and k != "KAFKA_HOME"
    }


def _run(args: list[str], cwd: Path, timeout_s: float = 120.0) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        args, cwd=cwd, env=_clean_env(), capture_output=True, text=True, timeout=timeout_s, check=False
    )


def _ok(proc: subprocess.CompletedProcess[str]) -> str:
    assert proc.returncode == 0, f"{proc.args} exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Installed]:
    root = tmp_path_factory.mktemp("wheel")
    source = root / "source"
    shutil.copytree(REPO_ROOT, source, ignore=_NOT_SOURCE)
    dist = root / "dist"
    build = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "--wheel-dir", str(dist)]
    if find_spec("setuptools") is not None:
        build.append("--no-build-isolation")  # the project venv's setuptools; no download
    _ok(_run([*build, str(source)], cwd=root, timeout_s=180))
    [wheel] = dist.glob("trilink-*.whl")

    venv = root / "venv"
    _ok(_run([sys.executable, "-m", "venv", "--without-pip", str(venv)], cwd=root))
    python = venv / "bin" / "python"
    install = [sys.executable, "-m", "pip", "--python", str(python), "install", "--quiet"]
    _ok(
        _run(
            [*install, "--constraint", str(REPO_ROOT / "constraints.txt"), str(wheel)],
            cwd=root,
            timeout_s=240,
        )
    )
    purelib = _ok(
        _run([str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"], cwd=root)
    )

    workdir = root / "work"
    workdir.mkdir()
    yield Installed(venv, workdir, Path(purelib.strip()))
    shutil.rmtree(root, ignore_errors=True)  # a few hundred MB of environment


def test_help_lists_the_commands(installed: Installed) -> None:
    out = _ok(_run([installed.trilink, "--help"], cwd=installed.workdir))
    listed = set(re.findall(r"^ {4}([a-z]+)\b", out, flags=re.MULTILINE))
    assert listed >= COMMANDS, f"missing {sorted(COMMANDS - listed)} in:\n{out}"


def test_schemas_check_reads_the_shipped_release(installed: Installed) -> None:
    out = _ok(_run([installed.trilink, "schemas", "check"], cwd=installed.workdir))
    # As many releases as the repository holds: the newest checked against all the others.
    newest = len(list((REPO_ROOT / "schemas" / "released" / SCHEMA_NAME).glob("v*.avsc")))
    assert newest >= 1
    assert f"ok: current v{newest} 0x" in out
    assert f"is fully compatible with {newest - 1} earlier version(s)" in out
    assert f"ok: schemas/models.py matches released v{newest}" in out


def test_trajectory_matches_the_development_tree(installed: Installed) -> None:
    proc = _run([installed.trilink, *TRAJECTORY_ARGS], cwd=installed.workdir)
    summary = json.loads(_ok(proc))
    assert summary["ground_range_km"] == pytest.approx(1000.0, abs=0.01)
    assert summary["launch"] == {"lat": 39.0, "lon": 125.7}
    assert summary["class_inferred"] is True
    assert summary["class"] in {"SRBM", "MRBM", "IRBM", "ICBM"}
    assert 0 < summary["apogee_km"] < 1000 and 0 < summary["flight_time_s"] < 3600
    # The same flight through the editable install in this repository: identical numbers,
    # so the installed missile-class data is the repository's.
    dev = subprocess.run(
        [str(Path(sys.executable).parent / "trilink"), *TRAJECTORY_ARGS],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert json.loads(_ok(dev)) == summary


def test_every_data_file_loads_from_site_packages(installed: Installed) -> None:
    """Each run-time data file resolves inside the installed packages, exists and parses."""
    script = textwrap.dedent(
        """
        import json
        from consumers.livepage import STATIC_FILES, live_page_assets
        from producers.catalog import MISSILE_CLASSES_FILE, SENSORS_FILE, load_catalog, load_missile_classes
        from producers.scenario import load_scenario, shipped_scenarios
        from schemas.areas import AREAS_RESOURCE, shipped_area_file
        from schemas.avro import RELEASED_DIR, load_released
        from trilink.monitoring.prometheus import CONFIG_DIR
        from trilink.platform.distribution import LOG4J_CONFIG, POM
        from trilink.platform.topics import load_topic_file
        from trilink.policy import POLICY_FILE, load_policy
        from trilink.replay.format import SHIPPED_DIR, read_recording, resolve_recordings
        from trilink.settings import Settings

        settings = Settings()
        files = {
            "policy": POLICY_FILE, "sensors": SENSORS_FILE, "classes": MISSILE_CLASSES_FILE,
            "areas": AREAS_RESOURCE, "released": RELEASED_DIR, "topics": settings.topics_file,
            "pom": POM, "log4j": LOG4J_CONFIG, "prometheus": CONFIG_DIR / "prometheus.yml",
            "recordings": SHIPPED_DIR,
        }
        loaded = {
            "policy": load_policy().hub.value,
            "sensors": len(load_catalog().sensors),
            "classes": len(load_missile_classes().classes),
            "areas": len(shipped_area_file().areas),
            "releases": len(load_released()),
            "topics": len(load_topic_file(settings.topics_file).topics),
            "scenarios": sorted(load_scenario(p.stem).name for p in shipped_scenarios()),
            "rules": sorted(p.name for p in (CONFIG_DIR / "rules").glob("*.yml")),
            "consoles": sorted(p.name for p in (CONFIG_DIR / "consoles").glob("*.html")),
            "console_libraries": sorted(p.name for p in (CONFIG_DIR / "console_libraries").glob("*.lib")),
            "live_page": sorted(path for path, asset in live_page_assets().items() if asset.body),
            "static_files": len(STATIC_FILES),
            "recordings": {p.name: len(read_recording(p).messages) for p in resolve_recordings([])},
            "pom_has_kafka": "kafka" in POM.read_text(),
        }
        print(json.dumps({
            "files": {k: str(v) for k, v in files.items()},
            "exists": {k: v.exists() for k, v in files.items()},
            "loaded": loaded,
            "state_dir": str(settings.state_dir),
        }))
        """
    )
    report = json.loads(_ok(_run([installed.python, "-c", script], cwd=installed.workdir)))
    site = str(installed.site_packages)
    for name, path in report["files"].items():
        assert path.startswith(site + os.sep), f"{name} resolves outside the installed packages: {path}"
    assert all(report["exists"].values()), report["exists"]
    loaded = report["loaded"]
    assert loaded["policy"] == "US"
    assert (
        min(loaded["sensors"], loaded["classes"], loaded["areas"], loaded["releases"], loaded["topics"]) > 0
    )
    assert loaded["pom_has_kafka"]
    # Everything the repository ships in these folders is in the wheel, not only the files named above.
    repo_scenarios = sorted(p.stem for p in (REPO_ROOT / "producers" / "scenarios").glob("*.toml"))
    assert len(loaded["scenarios"]) == len(repo_scenarios)
    assert loaded["rules"] == sorted(
        p.name for p in (REPO_ROOT / "deploy" / "prometheus" / "rules").glob("*.yml")
    )
    prometheus = REPO_ROOT / "deploy" / "prometheus"
    assert loaded["consoles"] == sorted(p.name for p in (prometheus / "consoles").glob("*.html"))
    assert loaded["console_libraries"] == sorted(
        p.name for p in (prometheus / "console_libraries").glob("*.lib")
    )
    # Every static file of the ally's live page, plus / and /areas.json, with a body.
    assert len(loaded["live_page"]) == loaded["static_files"] + 2
    repo_recordings = sorted(p.name for p in (REPO_ROOT / "trilink" / "replay" / "recordings").glob("*.avro"))
    assert sorted(loaded["recordings"]) == repo_recordings
    assert all(n > 0 for n in loaded["recordings"].values())
    # Run state goes to the working directory, never next to the installed code.
    assert report["state_dir"] == str(installed.workdir / ".trilink")


def test_installed_packages_do_not_come_from_the_repository(installed: Installed) -> None:
    script = f"import importlib\nfor name in {PACKAGES!r}: print(importlib.import_module(name).__file__)"
    out = _ok(_run([installed.python, "-c", script], cwd=installed.workdir))
    located = out.split()
    assert len(located) == len(PACKAGES)
    for path in located:
        assert path.startswith(str(installed.site_packages) + os.sep), path
