"""A real ``trilink run`` (broker, sensors, three ally services): its progress lines, the live
page URLs, the closing summary, and the HTML report built from that run's own report."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.pipeline.test_report_html import check_page
from trilink.cli import main
from trilink.pipeline import RunReport

pytestmark = pytest.mark.integration


def test_run_shows_progress_pages_summary_and_writes_the_html_report(
    run_broker: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    json_path = tmp_path / "run.json"
    html_path = tmp_path / "run.html"
    status = main(["run", "single_srbm", "--fast", "--report", str(json_path), "--html", str(html_path)])
    out, err = capsys.readouterr()
    assert status == 0, (out, err)

    report = RunReport.model_validate_json(json_path.read_text())
    assert report.complete and set(report.allies) == {"US", "JP", "KR"}

    # the three live pages, one per ally service's HTTP port
    pages = dict(line.split() for line in out.splitlines() if line.startswith("  ") and "http://" in line)
    assert set(pages) == {"US", "JP", "KR"}
    assert all(u.startswith("http://127.0.0.1:") and u.endswith("/") for u in pages.values())
    assert len(set(pages.values())) == 3

    # progress: not a terminal here, so whole lines on stderr with the delivered counts
    progress = [line for line in err.splitlines() if line.startswith(f"run {report.run_id} ")]
    assert progress, err
    assert "\r" not in err and "\x1b[" not in err
    final = progress[-1]
    sent = report.published.sent
    assert f"sent {sent:,}/{sent:,} (100%)" in final, final
    for ally, rep in report.allies.items():
        assert f"{ally} {rep.delivered_total():,}" in final, final

    # the closing summary: one row per ally with its own delivered and withheld counts
    rows = {line.split()[0]: line.split() for line in out.splitlines() if line[:3] in ("US ", "JP ", "KR ")}
    for ally, rep in report.allies.items():
        assert rows[ally][1:4] == [
            str(rep.delivered_total()),
            str(report.expected_deliveries[ally]),
            str(sum(rep.counts.withheld.values())),
        ]
    assert f"HTML report: {html_path.resolve()}" in out

    check_page(report, html_path.read_text(encoding="utf-8"))
