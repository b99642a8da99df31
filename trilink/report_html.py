"""The HTML report of a run (``make demo`` / ``trilink demo`` write one; ``trilink run --html``;
``trilink report-html RUN.json`` from a saved ``--report``).

One self-contained file (plots as base64 PNGs, styles inline, no script) made from the typed
run report alone (:class:`trilink.pipeline.RunReport`), so a saved ``--report`` JSON can be
turned into a page again: the per-ally summary (delivered, withheld, end-to-end p50/p99,
launch-to-first-warning), the per-hop latency of each ally, the first warnings of every launch
with the sensors' share (simulated clock) and the pipeline's share (wall clock) apart, and the
counts. Plots are drawn with matplotlib's object API (no pyplot state, no display needed).
"""

from __future__ import annotations

import argparse
import base64
import html
import io
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from consumers.ledger import HOP_ROWS
from trilink.pipeline import AllySummary, RunReport, summarize

if TYPE_CHECKING:
    from matplotlib.figure import Figure

#: Colours per ally, the same in every plot.
ALLY_COLOURS = {"US": "#1f4e9c", "JP": "#c0392b", "KR": "#2e8b57"}
_FALLBACK_COLOUR = "#555555"

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1100px; color: #222; }
h1 { font-size: 1.5em; } h2 { font-size: 1.2em; margin-top: 2em; border-bottom: 1px solid #ccc; }
table { border-collapse: collapse; margin: 0.5em 0; font-size: 0.92em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: right; }
th { background: #f2f2f2; } td.l, th.l { text-align: left; }
.bad { color: #b00; font-weight: bold; } .note { color: #555; font-size: 0.9em; }
img { max-width: 100%; border: 1px solid #eee; }
"""


def _colour(ally: str) -> str:
    return ALLY_COLOURS.get(ally, _FALLBACK_COLOUR)


def _png(fig: Figure) -> str:
    """The figure as an ``<img>`` with its PNG inline (base64)."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    data = base64.b64encode(buffer.getvalue()).decode("ascii")
    return f'<img alt="plot" src="data:image/png;base64,{data}">'


def _figure(width_in: float, height_in: float) -> Figure:
    from matplotlib.figure import Figure

    return Figure(figsize=(width_in, height_in), layout="constrained")


def latency_plot(report: RunReport) -> str:
    """p50 and p99 of every hop, one group of bars per hop, one colour per ally."""
    fig = _figure(10, 4.2)
    ax = fig.add_subplot()
    allies = list(report.allies)
    labels = [hop if channel == "none" else f"{hop}\n[{channel}]" for hop, channel in HOP_ROWS]
    width = 0.8 / max(len(allies), 1)
    for i, ally in enumerate(allies):
        rep = report.allies[ally]
        p50, p99 = [], []
        for hop, channel in HOP_ROWS:
            row = rep.latency_row(hop, channel)
            p50.append(0.0 if row is None else row.p50_ms)
            p99.append(0.0 if row is None else row.p99_ms)
        xs = [x + (i - (len(allies) - 1) / 2) * width for x in range(len(HOP_ROWS))]
        ax.bar(xs, p99, width, color=_colour(ally), alpha=0.35, label=f"{ally} p99")
        ax.bar(xs, p50, width, color=_colour(ally), label=f"{ally} p50")
    ax.set_xticks(range(len(HOP_ROWS)), labels, fontsize=8)
    ax.set_ylabel("milliseconds (wall clock)")
    ax.set_title("Latency per hop: p50 (solid) and p99 (light)")
    ax.legend(ncols=max(len(allies), 1), fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    return _png(fig)


def first_warning_plot(report: RunReport) -> str:
    """Per launch: launch -> first detection delivered, sensor share (s) and pipeline share (ms)."""
    fig = _figure(10, 5.5)
    sensor_ax, pipeline_ax = fig.subplots(2, 1, sharex=True)
    allies = list(report.allies)
    launches = report.launches
    width = 0.8 / max(len(allies), 1)
    for i, ally in enumerate(allies):
        sensor_s: list[float] = []
        pipeline_ms: list[float] = []
        for launch in launches:
            cell = launch.for_ally(ally)
            det = None if cell is None else cell.first_launch_detection
            sensor_s.append(float("nan") if det is None else det.sensor_share_s)
            pipeline_ms.append(
                float("nan") if det is None or det.pipeline_share_ms is None else det.pipeline_share_ms
            )
        xs = [x + (i - (len(allies) - 1) / 2) * width for x in range(len(launches))]
        sensor_ax.bar(xs, sensor_s, width, color=_colour(ally), label=ally)
        pipeline_ax.bar(xs, pipeline_ms, width, color=_colour(ally), label=ally)
    sensor_ax.set_ylabel("sensor share, s\n(simulated clock)")
    sensor_ax.set_title("Launch -> first launch detection delivered, per launch")
    pipeline_ax.set_ylabel("pipeline share, ms\n(wall clock)")
    pipeline_ax.set_xticks(
        range(len(launches)), [f"{x.launch}\n{x.missile_class}" for x in launches], fontsize=7
    )
    for ax in (sensor_ax, pipeline_ax):
        ax.grid(axis="y", alpha=0.3)
        ax.legend(fontsize=8, ncols=max(len(allies), 1))
    return _png(fig)


def counts_plot(report: RunReport) -> str:
    """Per ally: delivered (Kafka), withheld, duplicates suppressed, dead-lettered."""
    fig = _figure(10, 3.2)
    ax = fig.add_subplot()
    names = ("delivered", "withheld", "duplicates", "dead-lettered")
    allies = list(report.allies)
    width = 0.8 / max(len(allies), 1)
    for i, ally in enumerate(allies):
        c = report.allies[ally].counts
        values = [
            sum(c.delivered.get("kafka", {}).values()),
            sum(c.withheld.values()),
            c.duplicates_suppressed,
            sum(c.dead_letters.values()),
        ]
        xs = [x + (i - (len(allies) - 1) / 2) * width for x in range(len(names))]
        ax.bar(xs, values, width, color=_colour(ally), label=ally)
    ax.set_xticks(range(len(names)), names)
    ax.set_ylabel("events")
    ax.set_title("What each ally got")
    ax.legend(fontsize=8, ncols=max(len(allies), 1))
    ax.grid(axis="y", alpha=0.3)
    return _png(fig)


def _num(value: float | None, fmt: str) -> str:
    return "-" if value is None else format(value, fmt)


def _summary_table(rows: list[AllySummary]) -> str:
    head = (
        "<tr><th class=l>ally</th><th>delivered</th><th>expected</th><th>withheld</th>"
        "<th>end-to-end p50 ms</th><th>end-to-end p99 ms</th>"
        "<th>first warning median s</th><th>worst s</th><th>launches warned</th></tr>"
    )
    body = []
    for r in rows:
        short = ' class="bad"' if r.delivered < r.expected else ""
        body.append(
            f"<tr><td class=l>{html.escape(r.ally)}</td><td{short}>{r.delivered}</td><td>{r.expected}</td>"
            f"<td>{r.withheld}</td><td>{_num(r.end_to_end_p50_ms, '.2f')}</td>"
            f"<td>{_num(r.end_to_end_p99_ms, '.2f')}</td><td>{_num(r.first_warning_median_s, '.1f')}</td>"
            f"<td>{_num(r.first_warning_worst_s, '.1f')}</td><td>{r.launches_warned}/{r.launches}</td></tr>"
        )
    return f"<table>{head}{''.join(body)}</table>"


def _hop_tables(report: RunReport) -> str:
    parts = []
    for ally, rep in report.allies.items():
        rows = []
        for hop, channel in HOP_ROWS:
            row = rep.latency_row(hop, channel)
            if row is None:
                continue
            rows.append(
                f"<tr><td class=l>{html.escape(hop)}</td><td class=l>{html.escape(channel)}</td>"
                f"<td>{row.count}</td><td>{row.p50_ms:.2f}</td><td>{row.p90_ms:.2f}</td>"
                f"<td>{row.p99_ms:.2f}</td><td>{row.p99_9_ms:.2f}</td><td>{row.max_ms:.2f}</td></tr>"
            )
        parts.append(
            f"<h3>{html.escape(ally)}</h3><table><tr><th class=l>hop</th><th class=l>channel</th>"
            "<th>count</th><th>p50 ms</th><th>p90 ms</th><th>p99 ms</th><th>p99.9 ms</th><th>max ms</th></tr>"
            + "".join(rows)
            + "</table>"
        )
    return "".join(parts)


def _hub_block(report: RunReport) -> str:
    """The hub topology: the US hub's own counts and hops, as its text report prints them."""
    if report.hub is None:
        return ""
    text = html.escape("\n".join(report.hub.lines()))
    return f"<h2>Through the US hub</h2><pre>{text}</pre>"


def _delivery_block(report: RunReport) -> str:
    """The ally topics read back after the run, and the faults the run injected and survived."""
    parts = []
    if report.kills or report.restarts:
        restarted = ", ".join(f"{name} {n}x" for name, n in sorted(report.restarts.items())) or "none"
        parts.append(
            f"<p>Faults: killed {html.escape(', '.join(report.kills) or 'none on purpose')}; restarted "
            f"by the run's supervisor: {html.escape(restarted)}. A restarted service's counts and "
            "latencies cover its last process only; the ally topics cover the whole run.</p>"
        )
    if report.ally_topics:
        items = "".join(
            f"<li{'' if check.clean else ' class=bad'}>{html.escape(check.line(ally))}</li>"
            for ally, check in report.ally_topics.items()
        )
        parts.append(f"<p>Ally topics read back after the run (headers only):</p><ul>{items}</ul>")
    return "".join(parts)


def render_html(report: RunReport, *, generated_at: datetime | None = None) -> str:
    """The whole page (see the module docstring)."""
    when = (generated_at or datetime.now(UTC)).strftime("%Y-%m-%d %H:%M:%S UTC")
    p = report.published
    speed = "as fast as possible" if report.speed is None else f"x{report.speed:.3g}"
    state = (
        "complete"
        if report.complete
        else '<span class="bad">INCOMPLETE: an ally did not settle everything within the drain timeout, '
        "or its ally topic does not hold each released event exactly once</span>"
    )
    errors = [
        f"<li>{html.escape(ally)}: {html.escape(rep.error)}</li>"
        for ally, rep in report.allies.items()
        if rep.error
    ]
    title = f"trilink run {report.run_id}: {report.scenario}"
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>{_STYLE}</style></head>
<body>
<h1>{html.escape(title)}</h1>
<p>Scenario <b>{html.escape(report.scenario)}</b> ({speed}), run <code>{html.escape(report.run_id)}</code>
via <code>{html.escape(report.bootstrap)}</code>: published {p.acknowledged} of {p.sent} events
({p.failed} failed) in {p.wall_s:.1f} s; {state}. Generated {when}.</p>
{"<ul class=bad>" + "".join(errors) + "</ul>" if errors else ""}
{_hub_block(report)}
<h2>Summary</h2>
{_summary_table(summarize(report))}
{_delivery_block(report)}
<p class="note">Delivered = this run's events on the ally's Kafka topic, read back after the run. First warning = launch -> first
launch detection delivered: the sensor's share on the simulated clock plus the pipeline's share on
the wall clock, median and worst over the launches.</p>
<h2>Latency per hop</h2>
{latency_plot(report)}
{_hop_tables(report)}
<h2>First warnings per launch</h2>
{first_warning_plot(report)}
<h2>Counts</h2>
{counts_plot(report)}
</body></html>
"""


def write_html(report: RunReport, path: Path) -> Path:
    """Write the page to ``path`` (parents created); returns the path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_html(report), encoding="utf-8")
    return path


# ---------------------------------------------------------------------------------------- CLI


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "report-html",
        help="turn a saved run report (trilink run --report F.json) into the HTML report",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "report", type=Path, metavar="RUN.json", help="a report written by trilink run --report"
    )
    parser.add_argument(
        "--out", type=Path, metavar="FILE.html", help="where to write the page (default: RUN.json with .html)"
    )
    parser.set_defaults(handler=_handler)


def _handler(args: argparse.Namespace) -> int:
    from trilink.errors import ConfigError

    try:
        text = args.report.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError("missing_report", f"cannot read {args.report}: {exc.strerror or exc}") from None
    report = RunReport.model_validate_json(text)  # a ValidationError names the field (trilink.cli)
    path = write_html(report, args.out or args.report.with_suffix(".html"))
    print(f"HTML report: {path.resolve()}")
    return 0
