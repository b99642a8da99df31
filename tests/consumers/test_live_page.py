"""The ally's live page, server side: what ``/``, ``/static/...``, ``/areas.json`` and ``/latency``
serve from a real service (real broker), and that the page's files ship as package data.
The page in a browser is tested in ``test_live_page_browser.py``."""

from __future__ import annotations

import fnmatch
import json
import re
import tomllib
from collections.abc import Callable

import pytest

from consumers.livepage import STATIC_FILES, live_page_assets
from consumers.service import AllyService
from schemas.areas import shipped_area_file
from schemas.models import EventKind
from tests import REPO_ROOT
from tests.consumers.support import Producer, event, http_get, unique_key, wait_for

MakeService = Callable[..., AllyService]


@pytest.mark.unit
def test_every_file_of_the_page_is_package_data() -> None:
    """A wheel carries the page: each served file matches a package-data pattern of consumers."""
    pyproject = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())
    patterns = pyproject["tool"]["setuptools"]["package-data"]["consumers"]
    for name in STATIC_FILES:
        assert (REPO_ROOT / "consumers" / "web" / name).is_file(), name
        assert any(fnmatch.fnmatch(f"web/{name}", p) for p in patterns), name


@pytest.mark.unit
def test_page_refers_only_to_files_it_serves() -> None:
    """No CDN, nothing the service does not serve: every URL in the page's HTML and script is local."""
    assets = live_page_assets()
    html = assets["/"].body.decode()
    script = assets["/static/app.js"].body.decode()
    refs = set(re.findall(r'(?:href|src)="([^"]+)"', html))
    refs |= set(re.findall(r'fetch\("([^"?]+)', script))
    refs |= set(re.findall(r'EventSource\("([^"]+)"', script))
    assert {"/static/app.js", "/static/style.css", "/areas.json", "/latency", "/stream", "/healthz"} <= refs
    refs.discard("data:,")  # the empty icon: no /favicon.ico request
    for ref in refs:
        assert ref.startswith("/") and not ref.startswith("//"), ref
        assert ref in assets or ref in {"/latency", "/stream", "/healthz"}, ref


@pytest.mark.unit
def test_coastlines_cover_the_region_and_stay_small() -> None:
    land = json.loads(live_page_assets()["/static/vendor/world_atlas/land-50m-region.json"].body)
    assert land["bbox"] == [110.0, 18.0, 180.0, 56.0]
    points = [p for ring in land["rings"] for p in ring]
    lon0, lat0, lon1, lat1 = land["bbox"]
    assert all(lon0 <= lon <= lon1 and lat0 <= lat <= lat1 for lon, lat in points)
    # Honshu, Kyushu, Hokkaido and the Korean peninsula are all drawn: a coast point near each
    for lon, lat in [(139.8, 35.6), (130.4, 33.6), (141.3, 43.1), (129.0, 35.1), (125.7, 39.0)]:
        assert any(abs(lon - x) < 0.5 and abs(lat - y) < 0.5 for x, y in points), (lon, lat)
    assert len(live_page_assets()["/static/vendor/world_atlas/land-50m-region.json"].body) < 100_000


@pytest.mark.integration
def test_service_serves_its_live_page(make_service: MakeService, kafka_bootstrap: str) -> None:
    service = make_service("JP")
    port = service.http_port
    assert port

    status, body = http_get(port, "/")
    assert status == 200 and b'<svg id="map"' in body and b"/static/app.js" in body
    for name in STATIC_FILES:
        status, served = http_get(port, f"/static/{name}")
        assert status == 200, name
        assert served == (REPO_ROOT / "consumers" / "web" / name).read_bytes(), name

    status, body = http_get(port, "/areas.json")
    assert status == 200
    areas = json.loads(body)["areas"]
    shipped = shipped_area_file().areas
    assert set(areas) == set(shipped) >= {"JP_EEZ", "JP_TERRITORY", "KR_EEZ", "KR_TERRITORY"}
    assert areas["JP_EEZ"]["nation"] == "JP"
    assert [tuple(v) for v in areas["KR_EEZ"]["rings"][0]] == list(shipped["KR_EEZ"].rings[0])

    # only the listed files: no path into the package, no directory listing, no crop script
    for path in (
        "/static/../service.py",
        "/static/%2e%2e/service.py",
        "/static/vendor/world_atlas/crop.py",
        "/static/",
        "/static/vendor",
        "/index.htm",
    ):
        assert http_get(port, path)[0] == 404, path

    # /latency: the ledger's per-hop rows, growing as events arrive
    producer = Producer(kafka_bootstrap)
    try:
        key = unique_key("live")
        for sequence in range(3):
            producer.send_event(event(key, sequence, kind=EventKind.TRACK_UPDATE))
        producer.flush()
    finally:
        producer.close()
    assert wait_for(lambda: service.count("received") >= 3, 20)

    def merged_rows() -> dict[tuple[str, str], dict[str, float]]:
        status, body = http_get(port, "/latency")
        assert status == 200
        return {(r["hop"], r["channel"]): r for r in json.loads(body)["rows"] if r["kind"] == "*"}

    def all_three_counted() -> bool:
        # receive_to_deliver [kafka] is sampled when the broker acknowledges the ally topic's
        # write, which can come after all three were received: wait for both hops.
        rows = merged_rows()
        return all(
            rows.get(hop, {}).get("count", 0) >= 3
            for hop in (("append_to_receive", "none"), ("receive_to_deliver", "kafka"))
        )

    assert wait_for(all_three_counted, 20)
    rows = merged_rows()
    assert rows[("send_to_append", "none")]["count"] >= 3
    assert rows[("receive_to_deliver", "kafka")]["count"] >= 3
    for row in rows.values():
        assert 0 <= row["p50_ms"] <= row["p99_ms"] <= row["max_ms"]
