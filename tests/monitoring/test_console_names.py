"""The console templates (deploy/prometheus/consoles/, console_libraries/) against the metric
contract: every metric, recorded series, job, hop and channel they name is one of
trilink/monitoring/names.py and discovery.py, and the addresses `trilink monitoring up`
prints name consoles that ship."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.monitoring.test_names import referenced_names
from trilink.monitoring import names as n
from trilink.monitoring.discovery import KNOWN_JOBS
from trilink.monitoring.prometheus import (
    CONFIG_DIR,
    CONSOLE_LIBRARIES_DIR,
    CONSOLES_DIR,
    console_urls,
)

pytestmark = [pytest.mark.unit, pytest.mark.monitoring]

TEMPLATES = sorted((CONFIG_DIR / CONSOLES_DIR).glob("*.html")) + sorted(
    (CONFIG_DIR / CONSOLE_LIBRARIES_DIR).glob("*.lib")
)
# label="value" inside the templates' PromQL, written with escaped quotes in Go strings.
LABEL_VALUE = re.compile(r'[{ ,](job|hop|channel|kind)=\\?"([^"\\%{]+)\\?"')


def test_the_consoles_ship() -> None:
    names = {path.name for path in TEMPLATES}
    assert {
        "index.html",
        "trilink-overview.html",
        "trilink-ally.html",
        "trilink-hub.html",
        "trilink.lib",
    } <= names


@pytest.mark.parametrize("path", TEMPLATES, ids=lambda p: p.name)
def test_templates_use_only_known_names(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    names = referenced_names(text)
    if path.name.startswith("trilink-"):
        assert names, f"{path.name} queries no trilink series"
    assert names <= n.known_series_names(), sorted(names - n.known_series_names())
    allowed = {
        "job": set(KNOWN_JOBS),
        "hop": set(n.ALLY_HOPS),
        "channel": set(n.CHANNELS),
        "kind": set(n.KINDS),
    }
    for label, value in LABEL_VALUE.findall(text):
        assert value in allowed[label], f"{path.name}: {label}={value!r}"


def test_no_ally_is_written_into_a_template() -> None:
    """Allies come from the data (the announced targets), so a new ally needs no console edit."""
    for path in TEMPLATES:
        text = path.read_text(encoding="utf-8")
        for ally in n.ALLIES:
            assert not re.search(rf'ally=\\?"{ally}\\?"', text), f"{path.name} names {ally}"


def test_console_urls_name_shipped_consoles_for_every_ally() -> None:
    urls = console_urls("http://127.0.0.1:9090/")
    assert list(urls) == ["overview", "hub", *n.ALLIES]
    assert urls["hub"] == "http://127.0.0.1:9090/consoles/trilink-hub.html"
    assert urls["overview"] == "http://127.0.0.1:9090/consoles/trilink-overview.html"
    assert urls["KR"] == "http://127.0.0.1:9090/consoles/trilink-ally.html?ally=KR"
    shipped = {path.name for path in TEMPLATES}
    for url in urls.values():
        assert url.rsplit("/", 1)[1].split("?")[0] in shipped
