"""The fast codec's guard (:func:`schemas._fast.models_digest`) follows what the fast path
restates from the models, not the bytes of their source file: prose edits keep it, rule edits
change it (so the fast path switches off until it is reviewed again)."""

from __future__ import annotations

import importlib.util
import re
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from schemas import _fast, models

pytestmark = pytest.mark.unit

SOURCE = Path(models.__file__).read_text(encoding="utf-8")


@pytest.fixture
def digest_of(tmp_path: Path) -> Iterator[Callable[[str], str]]:
    loaded: list[str] = []

    def digest(text: str) -> str:
        name = f"trilink_models_variant_{len(loaded)}"
        path = tmp_path / f"{name}.py"
        path.write_text(text, encoding="utf-8")
        spec = importlib.util.spec_from_file_location(name, path)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module  # pydantic resolves the models' annotations through it
        loaded.append(name)
        spec.loader.exec_module(module)
        return _fast.models_digest(module)

    yield digest
    for name in loaded:
        sys.modules.pop(name, None)


def _edit(old: str, new: str) -> str:
    assert old in SOURCE, old
    return SOURCE.replace(old, new, 1)


def _first_description() -> str:
    match = re.search(r'description="[^"]+"', SOURCE)
    assert match is not None
    return match.group(0)


PROSE_EDITS = {
    "an unchanged copy": ("", ""),
    "a comment": ("class GeoPoint(_Model):", "# a new comment\n\n\nclass GeoPoint(_Model):"),
    "a docstring": ('"""Shared config: immutable', '"""Shared config (reworded): immutable'),
    "a field description": (_first_description(), 'description="other words"'),
}

RULE_EDITS = {
    "a bound": ("MAX_TEXT_CHARS = 280", "MAX_TEXT_CHARS = 281"),
    "a validator": (
        "if self.semi_minor_m > self.semi_major_m:",
        "if self.semi_minor_m >= self.semi_major_m:",
    ),
    "an enum symbol": ('US = "US"', 'US = "USA"'),
    "the model config": ("allow_inf_nan=False", "allow_inf_nan=True"),
}


@pytest.mark.parametrize("edit", PROSE_EDITS.values(), ids=list(PROSE_EDITS))
def test_prose_edits_keep_the_digest(digest_of: Callable[[str], str], edit: tuple[str, str]) -> None:
    assert digest_of(_edit(*edit) if edit[0] else SOURCE) == _fast.models_digest()


@pytest.mark.parametrize("edit", RULE_EDITS.values(), ids=list(RULE_EDITS))
def test_rule_edits_change_the_digest(digest_of: Callable[[str], str], edit: tuple[str, str]) -> None:
    assert digest_of(_edit(*edit)) != _fast.models_digest()


def test_the_digest_is_the_reviewed_one() -> None:
    assert _fast.models_digest() == _fast.REVIEWED_MODELS_DIGEST
    assert _fast.ENABLED
