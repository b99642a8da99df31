"""The HTML report: one self-contained page with the summary and inline plots."""

from __future__ import annotations

import base64
import re
from datetime import UTC, datetime
from html.parser import HTMLParser
from pathlib import Path

import pytest

from tests.pipeline.support import run_report
from trilink.pipeline import RunReport, summarize
from trilink.report_html import render_html, write_html

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


class _Page(HTMLParser):
    """Collects what a reader of the page sees: text, image sources, table rows."""

    def __init__(self) -> None:
        super().__init__()
        self.images: list[str] = []
        self.rows: list[list[str]] = []
        self.text: list[str] = []
        self._row: list[str] | None = None
        self._cell: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "img":
            self.images.append(dict(attrs).get("src") or "")
        elif tag == "tr":
            self._row = []
        elif tag in ("td", "th"):
            self._cell = []

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self._row is not None and self._cell is not None:
            self._row.append("".join(self._cell).strip())
            self._cell = None
        elif tag == "tr" and self._row is not None:
            self.rows.append(self._row)
            self._row = None

    def handle_data(self, data: str) -> None:
        self.text.append(data)
        if self._cell is not None:
            self._cell.append(data)


def read_page(text: str) -> _Page:
    page = _Page()
    page.feed(text)
    page.close()
    return page


def check_page(report: RunReport, text: str) -> _Page:
    """What every report page must hold: the summary of each ally and decodable inline PNGs."""
    page = read_page(text)
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", text), "the page must not load anything"
    assert len(page.images) >= 3
    for src in page.images:
        assert src.startswith("data:image/png;base64,")
        assert base64.b64decode(src.split(",", 1)[1])[:8] == PNG_MAGIC
    summary = {row[0]: row for row in page.rows if row and row[0] in report.allies}
    for expected in summarize(report):
        row = summary[expected.ally]
        assert row[1] == str(expected.delivered) and row[2] == str(expected.expected)
        assert row[3] == str(expected.withheld)
        p99 = expected.end_to_end_p99_ms
        assert row[5] == ("-" if p99 is None else f"{p99:.2f}")
    return page


@pytest.mark.unit
def test_page_from_a_hand_made_report(tmp_path: Path) -> None:
    report = run_report()
    text = render_html(report, generated_at=datetime(2026, 12, 3, 12, 0, tzinfo=UTC))
    page = check_page(report, text)
    words = " ".join(page.text)
    assert "trilink run abc: pair" in words and "2026-12-03 12:00:00 UTC" in words
    assert "1/2" in words  # JP warned of one launch of two
    path = write_html(report, tmp_path / "deep" / "r.html")
    assert path.read_text(encoding="utf-8").startswith("<!DOCTYPE html>")


@pytest.mark.unit
def test_page_flags_an_incomplete_run_and_escapes_text() -> None:
    report = run_report().model_copy(update={"complete": False, "scenario": "<script>x</script>"})
    text = render_html(report)
    assert "INCOMPLETE" in text
    assert "<script>" not in text and "&lt;script&gt;" in text


@pytest.mark.unit
def test_saved_report_becomes_a_page_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from trilink.cli import main
    from trilink.settings import get_settings

    monkeypatch.setenv("TRILINK_STATE_DIR", str(tmp_path / "state"))
    get_settings.cache_clear()
    report = run_report()
    saved = tmp_path / "run.json"
    saved.write_text(report.model_dump_json(indent=2))
    try:
        assert main(["report-html", str(saved)]) == 0
        assert f"HTML report: {(tmp_path / 'run.html').resolve()}" in capsys.readouterr().out
        check_page(report, (tmp_path / "run.html").read_text(encoding="utf-8"))
        saved.write_text('{"scenario": "x"}')
        assert main(["report-html", str(saved), "--out", str(tmp_path / "bad.html")]) == 2
        assert "[invalid_config]" in capsys.readouterr().err
        assert main(["report-html", str(tmp_path / "missing.json")]) == 2
        assert "[missing_report]" in capsys.readouterr().err
    finally:
        get_settings.cache_clear()


@pytest.mark.unit
def test_page_of_a_run_through_the_hub_shows_the_hub() -> None:
    from consumers.hub import HubReport

    hub = HubReport.model_validate(
        {
            "instance_id": "hub-1",
            "group_id": "g-hub",
            "verify_body": True,
            "received": {"US": {"track_update": 12}},
            "released": {"US": {"track_update": 12}, "JP": {"track_update": 10}},
            "withheld": {"JP": {"track_update": 2}},
            "dead_letters": {},
            "delivery_failures": {},
            "latency": [],
            "error": None,
        }
    )
    report = run_report().model_copy(update={"topology": "hub", "hub": hub})
    page = read_page(render_html(report))
    words = " ".join(page.text)
    assert "Through the US hub" in words and "[hub] received 12" in words
    assert "Through the US hub" not in render_html(run_report())
