"""``--plot FILE.png``: the latency distribution per ally, and throughput and p99 over time.

Drawn from the JSON report alone (so a saved report can be re-plotted) with matplotlib's
non-interactive Agg backend. The distribution uses HdrHistogram's customary x axis, the
"number of nines" ``1 / (1 - percentile)`` on a log scale, so the tail is not squeezed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

_ALLY_COLOURS = {"US": "#1f4e9c", "JP": "#c0392b", "KR": "#2e8b57"}


def _nines(percentile: float) -> float:
    return 1.0 / max(1.0 - percentile / 100.0, 1e-5)


def write_plot(report: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (dist, rate, p99) = plt.subplots(3, 1, figsize=(10, 12), constrained_layout=True)
    run = report["run"]
    h = report["harness"]
    title = (
        f"trilink loadtest {run['run_id']} - {run['mode']}: target {h['target_rate_per_s']:.0f}/s, "
        f"achieved {h['achieved_rate_per_s']:.0f}/s"
    )
    if h["saturated"]:
        title += "  [HARNESS SATURATED]"
    if run["interrupted"]:
        title += "  [INTERRUPTED]"
    fig.suptitle(title, fontsize=12)

    ticks = [0.0, 50.0, 90.0, 99.0, 99.9, 99.99]
    for ally, curves in report["curves"].items():
        colour = _ALLY_COLOURS.get(ally, "black")
        for basis, style in (("intended", "-"), ("actual", "--")):
            points = [(p, v) for p, v in curves.get(basis, []) if p < 100.0]
            if points:
                dist.plot(
                    [_nines(p) for p, _ in points],
                    [v for _, v in points],
                    style,
                    color=colour,
                    marker="o" if basis == "intended" else None,
                    markersize=3,
                    label=f"{ally} from {basis} send",
                )
    baseline = report.get("baseline")
    if baseline:
        tool = baseline["tool"]
        dist.plot(
            [_nines(50.0), _nines(99.0), _nines(99.9)],
            [tool["p50_ms"], tool["p99_ms"], tool["p99_9_ms"]],
            ":",
            color="grey",
            marker="s",
            label="Kafka EndToEndLatency (1 hop)",
        )
    for v in report["objectives"]:
        dist.scatter(
            [_nines(min(v["percentile"], 99.999))], [v["limit_ms"]], marker="v", color="black", zorder=5
        )
        dist.annotate(
            f"SLO {v['objective']}",
            (_nines(min(v["percentile"], 99.999)), v["limit_ms"]),
            fontsize=8,
            textcoords="offset points",
            xytext=(4, 4),
        )
    dist.set_xscale("log")
    dist.set_yscale("log")
    dist.set_xticks([_nines(t) for t in ticks])
    dist.set_xticklabels([f"p{t:g}" for t in ticks])
    dist.set_xlabel("percentile")
    dist.set_ylabel("end-to-end latency (ms)")
    dist.set_title("End-to-end latency distribution (send -> ally topic), measured window")
    dist.grid(True, which="both", alpha=0.3)
    dist.legend(fontsize=8, ncol=2)

    timeline = report["timeline"]
    seconds = timeline["second"]
    rate.plot(seconds, timeline["sent_per_s"], color="black", linewidth=2, label="sent")
    for ally, series in timeline["allies"].items():
        rate.plot(
            seconds,
            series["delivered_per_s"],
            color=_ALLY_COLOURS.get(ally, "black"),
            label=f"{ally} delivered",
        )
    if h["target_rate_per_s"]:
        rate.axhline(h["target_rate_per_s"], color="grey", linestyle=":", label="target")
    for axis in (rate, p99):
        axis.axvspan(0, timeline["warmup_s"], color="grey", alpha=0.15, label="warm-up")
        axis.grid(True, alpha=0.3)
    rate.set_ylabel("events / s")
    rate.set_title("Throughput over time (1 s bins)")
    rate.legend(fontsize=8, ncol=3)

    for ally, series in timeline["allies"].items():
        points = [(s, v) for s, v in zip(seconds, series["p99_ms"], strict=True) if v is not None]
        if points:
            p99.plot(
                [s for s, _ in points],
                [v for _, v in points],
                marker=".",
                color=_ALLY_COLOURS.get(ally, "black"),
                label=f"{ally} p99",
            )
    for v in report["objectives"]:
        if v["percentile"] == 99.0:
            p99.axhline(v["limit_ms"], color="black", linestyle="--", label=f"SLO {v['objective']}")
    p99.set_yscale("log")
    p99.set_xlabel("seconds since the schedule started (by intended send time)")
    p99.set_ylabel("p99 end-to-end from intended (ms)")
    p99.set_title("p99 over time")
    p99.legend(fontsize=8, ncol=3)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
