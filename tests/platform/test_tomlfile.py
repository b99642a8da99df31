"""One TOML reader for every loader: a missing file and bad TOML become the loader's typed error."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from producers.catalog import load_catalog, load_missile_classes
from producers.errors import CatalogError, ScenarioError
from producers.scenario import load_scenario
from trilink.errors import ConfigError, TrilinkError
from trilink.platform.topics import load_topic_file
from trilink.policy import PolicyError, load_policy, parse_policy
from trilink.tomlfile import parse_toml, read_toml

pytestmark = pytest.mark.unit

#: Each TOML loader, its error class and its reason codes for (unreadable, not TOML).
LOADERS: list[tuple[Callable[[Path], Any], type[TrilinkError], str, str]] = [
    (load_topic_file, ConfigError, "topics_file_missing", "topics_file_invalid"),
    (load_policy, PolicyError, "invalid_policy", "invalid_policy"),
    (load_scenario, ScenarioError, "missing_scenario", "invalid_scenario"),
    (load_catalog, CatalogError, "missing_catalog", "invalid_catalog"),
    (load_missile_classes, CatalogError, "missing_catalog", "invalid_catalog"),
]
IDS = [loader.__name__ for loader, *_ in LOADERS]


def test_read_toml_returns_the_document(tmp_path: Path) -> None:
    path = tmp_path / "ok.toml"
    path.write_text('name = "x"\n[table]\nn = 3\n', encoding="utf-8")
    assert read_toml(path, ConfigError, missing="m", invalid="i") == {"name": "x", "table": {"n": 3}}


def test_unreadable_and_bad_toml_raise_the_given_class_and_reason(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as missing:
        read_toml(tmp_path / "absent.toml", ConfigError, missing="gone", invalid="bad")
    assert missing.value.reason == "gone"
    assert missing.value.message.startswith(f"{tmp_path / 'absent.toml'}: ")

    with pytest.raises(ConfigError) as folder:
        read_toml(tmp_path, ConfigError, missing="gone", invalid="bad")
    assert folder.value.reason == "gone"

    with pytest.raises(PolicyError) as bad:
        parse_toml("key = = 1", "inline", PolicyError, invalid="bad")
    assert bad.value.reason == "bad"
    assert bad.value.message.startswith("inline: not TOML: ")


@pytest.mark.parametrize(("loader", "error", "missing", "invalid"), LOADERS, ids=IDS)
def test_every_loader_reports_a_missing_file_and_bad_toml(
    tmp_path: Path,
    loader: Callable[[Path], Any],
    error: type[TrilinkError],
    missing: str,
    invalid: str,
) -> None:
    absent = tmp_path / "absent.toml"
    with pytest.raises(error) as caught:
        loader(absent)
    assert caught.value.reason == missing
    assert str(absent) in caught.value.message

    broken = tmp_path / "broken.toml"
    broken.write_text("[unclosed\n", encoding="utf-8")
    with pytest.raises(error) as caught:
        loader(broken)
    assert caught.value.reason == invalid
    assert caught.value.message.startswith(f"{broken}: not TOML: ")


def test_policy_text_goes_through_the_same_parser() -> None:
    with pytest.raises(PolicyError) as caught:
        parse_policy("hub = ", "inline.toml")
    assert caught.value.reason == "invalid_policy"
    assert caught.value.message.startswith("inline.toml: not TOML: ")
