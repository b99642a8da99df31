"""Finding Java and the Kafka jars: the failure paths a user meets first."""

from __future__ import annotations

import json
import os
import shutil
import zipfile
from pathlib import Path

import pytest

from trilink.errors import PlatformError
from trilink.platform import distribution
from trilink.platform.distribution import _cached, _sha256, locate, require_java

pytestmark = pytest.mark.unit


def _path_with_only(tmp_path: Path, *tools: str) -> str:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in tools:
        real = shutil.which(tool)
        assert real is not None, f"{tool} must exist on this machine for the test"
        (bin_dir / tool).symlink_to(real)
    return str(bin_dir)


def test_missing_java_says_what_to_install(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", _path_with_only(tmp_path))
    with pytest.raises(PlatformError) as err:
        require_java()
    assert err.value.reason == "java_missing"
    assert "Java 17" in err.value.message


def test_java_older_than_17_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "java"
    fake.write_text("#!/bin/sh\necho 'openjdk version \"11.0.2\" 2019-01-15' >&2\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", str(bin_dir))
    with pytest.raises(PlatformError) as err:
        require_java()
    assert err.value.reason == "java_too_old"


def test_missing_maven_points_to_kafka_home_and_bootstrap(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", _path_with_only(tmp_path, "java"))
    with pytest.raises(PlatformError) as err:
        locate(tmp_path / "empty-cache", kafka_home=None)
    assert err.value.reason == "maven_missing"
    assert "KAFKA_HOME" in err.value.message and "TRILINK_BOOTSTRAP" in err.value.message


def test_kafka_home_without_jars_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(PlatformError) as err:
        locate(tmp_path / "cache", kafka_home=tmp_path)
    assert err.value.reason == "kafka_home_invalid"


def test_kafka_home_with_a_release_layout_is_used(tmp_path: Path) -> None:
    (tmp_path / "libs").mkdir()
    (tmp_path / "libs" / "kafka_2.13-4.9.1.jar").write_bytes(b"")
    dist = locate(tmp_path / "cache", kafka_home=tmp_path)
    assert (dist.version, dist.source) == ("4.9.1", "KAFKA_HOME")


def test_a_corrupted_cached_jar_forgets_the_cache(tmp_path: Path) -> None:
    lib = tmp_path / "4.4.0" / "lib"
    lib.mkdir(parents=True)
    jar = lib / "kafka_2.13-4.4.0.jar"
    with zipfile.ZipFile(jar, "w") as zf:
        zf.writestr("a.txt", "hello")
    manifest = {"version": "4.4.0", "jars": {jar.name: _sha256(jar)}}
    (tmp_path / "4.4.0" / distribution.MANIFEST).write_text(json.dumps(manifest))
    cached = _cached(tmp_path)
    assert cached is not None and cached.version == "4.4.0"

    with jar.open("r+b") as fh:  # flip bytes in place, as a bad disk or an interrupted copy would
        fh.seek(10)
        fh.write(os.urandom(8))
    assert _cached(tmp_path) is None
    assert not (tmp_path / "4.4.0").exists(), "a corrupt copy is removed so it is resolved again"
