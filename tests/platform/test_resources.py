"""Shipped data files are package resources: found through the import system, not the repo layout."""

from __future__ import annotations

import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from trilink.errors import ConfigError
from trilink.resources import package_path

pytestmark = pytest.mark.unit


def test_a_path_inside_a_package_on_disk() -> None:
    import deploy

    assert package_path("deploy") == Path(deploy.__file__).parent
    assert package_path("deploy", "kafka", "pom.xml") == Path(deploy.__file__).parent / "kafka" / "pom.xml"
    assert package_path("deploy", "kafka", "pom.xml").is_file()


@pytest.fixture
def zipped_package(tmp_path: Path) -> Iterator[str]:
    name = "trilink_zipped_probe"
    archive = tmp_path / "probe.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr(f"{name}/__init__.py", "")
        zf.writestr(f"{name}/data.toml", "x = 1\n")
    sys.path.insert(0, str(archive))
    try:
        yield name
    finally:
        sys.path.remove(str(archive))
        sys.modules.pop(name, None)


def test_a_package_imported_from_a_zip_is_refused_with_a_reason(zipped_package: str) -> None:
    with pytest.raises(ConfigError) as caught:
        package_path(zipped_package, "data.toml")
    assert caught.value.reason == "resource_not_on_disk"
    assert zipped_package in caught.value.message
