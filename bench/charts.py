"""Pictures of a run, beside its JSON: copies/s and p99 per scenario and mode, and a
latency CDF of every paced run.

`python -m bench` draws them after each run; `python -m bench.charts RESULTS.json
[--out FOLDER]` draws them again from a saved run:

- `<name>-throughput.png`: flat-out copies/s and paced p99 per scenario, one
  bar per mode (AtomChat `mb=0`, `mb=64`, the bare server), on log scales;
  where every stream sends (ingestion), also the sends acked per second;
- `<name>-cdf-<scenario>.png`: per scenario, the send-to-receipt latency of
  every paced run (solid) and, where streams send, send-to-ack (dashed), on a
  logit axis that spreads the tail (p99, p99.9).
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
from matplotlib.axes import Axes
from matplotlib.axis import Axis
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

from bench.stats import CDF_FRACTIONS
from bench.suite import FLAT, PACED

COLOURS = {"atomchat mb=0": "tab:blue", "atomchat mb=64": "tab:orange", "bare": "tab:gray"}
WIDTH = 0.8


def _small() -> AbstractContextManager[None]:
    """Small pictures: 80 dpi, 8-point text."""
    return plt.rc_context({"figure.dpi": 80, "font.size": 8})


def _mode(run: dict[str, Any]) -> str:
    return "bare" if run["target"] == "bare" else f"atomchat mb={run['max_batch']}"


def _find(runs: Sequence[dict[str, Any]], scenario: str, mode: str, kind: str) -> dict[str, Any]:
    for run in runs:
        if run["scenario"] == scenario and _mode(run) == mode and run["run"] == kind:
            return run
    return {}


def _bars(
    axes: Axes,
    runs: Sequence[dict[str, Any]],
    scenarios: list[str],
    modes: list[str],
    *,
    kind: str,
    value: str,
) -> None:
    step = WIDTH / len(modes)
    for number, mode in enumerate(modes):
        heights = [_find(runs, scenario, mode, kind).get(value, 0.0) for scenario in scenarios]
        places = [index - WIDTH / 2 + step * (number + 0.5) for index in range(len(scenarios))]
        bars = axes.bar(places, heights, step, label=mode, color=COLOURS.get(mode))
        axes.bar_label(bars, labels=[_short(height) for height in heights], fontsize=6)
    axes.set_xticks(range(len(scenarios)), scenarios)
    axes.set_yscale("log")
    _readable_log(axes.yaxis)
    axes.margins(y=0.15)
    axes.grid(axis="y", which="major", alpha=0.3)


def _readable_log(axis: Axis) -> None:
    """A log axis marked at 1, 2 and 5 of every decade, in plain numbers."""
    axis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    axis.set_major_formatter(FuncFormatter(lambda value, _: _short(value)))
    axis.set_minor_formatter(NullFormatter())


def _short(value: float) -> str:
    """1234567 as 1.2M, 45678 as 45.7k, 93.5 as 94; nothing for 0."""
    if not value:
        return ""
    for limit, suffix in ((1e6, "M"), (1e3, "k")):
        if value >= limit:
            return f"{value / limit:.3g}{suffix}"
    return f"{value:.3g}"


def throughput(data: dict[str, Any], path: Path) -> Path:
    runs = data["runs"]
    scenarios = list(dict.fromkeys(run["scenario"] for run in runs))
    modes = [mode for mode in COLOURS if any(_mode(run) == mode for run in runs)]
    ingestion = [
        scenario
        for scenario in scenarios
        if any(run["scenario"] == scenario and run.get("ingestion") for run in runs)
    ]
    panels = 3 if ingestion else 2
    with _small():
        figure, axes = plt.subplots(
            panels, 1, figsize=(max(5.0, 1.1 * len(scenarios)), 2.4 * panels)
        )
        _bars(axes[0], runs, scenarios, modes, kind=FLAT, value="copies_per_second")
        axes[0].set_ylabel("copies/s, flat out")
        axes[0].legend(loc="upper left", fontsize=7)
        _bars(axes[1], runs, scenarios, modes, kind=PACED, value="p99")
        axes[1].set_ylabel("p99 ms, paced at half")
        if ingestion:
            _bars(axes[2], runs, ingestion, modes, kind=FLAT, value="acks_per_second")
            axes[2].set_ylabel("sends acked/s, flat out")
        figure.suptitle(f"python -m bench, {data['started']}", fontsize=8)
        figure.tight_layout()
        figure.savefig(path)
        plt.close(figure)
    return path


def _curve(axes: Axes, values: list[float], label: str, colour: str | None, style: str) -> None:
    points = [
        (value, fraction)
        for value, fraction in zip(values, CDF_FRACTIONS, strict=True)
        if fraction < 1.0 and value > 0
    ]
    if points:
        xs, ys = zip(*points, strict=True)
        axes.plot(xs, ys, style, label=label, color=colour, linewidth=1.2)


def latency_cdf(data: dict[str, Any], scenario: str, path: Path) -> Path | None:
    paced = [
        run
        for run in data["runs"]
        if run["scenario"] == scenario and run["run"] != FLAT and run.get("cdf")
    ]
    if not paced:
        return None
    with _small():
        figure, axes = plt.subplots(figsize=(6.0, 3.4))
        for run in paced:
            mode = _mode(run)
            label = f"{mode} {run['run']}"
            _curve(axes, run["cdf"], f"{label}: receipt", COLOURS.get(mode), "-")
            if run.get("ack_cdf"):
                _curve(axes, run["ack_cdf"], f"{label}: ack", COLOURS.get(mode), "--")
        axes.set_xscale("log")
        _readable_log(axes.xaxis)
        axes.set_yscale("logit")
        axes.set_yticks([0.1, 0.5, 0.9, 0.99, 0.999], ["p10", "p50", "p90", "p99", "p99.9"])
        axes.set_xlabel("latency, ms")
        axes.grid(which="major", alpha=0.3)
        axes.legend(loc="lower right", fontsize=6)
        axes.set_title(f"{paced[0]['shape']} ({scenario}), paced runs", fontsize=8)
        figure.tight_layout()
        figure.savefig(path)
        plt.close(figure)
    return path


def draw(results: Path, folder: Path | None = None) -> list[Path]:
    """Every picture of the run saved in `results`, in `folder` (default: beside it)."""
    data = json.loads(results.read_text())
    folder = folder or results.parent
    folder.mkdir(parents=True, exist_ok=True)
    stem = results.stem
    if not data["runs"]:
        return []
    written = [throughput(data, folder / f"{stem}-throughput.png")]
    for scenario in dict.fromkeys(run["scenario"] for run in data["runs"]):
        cdf = latency_cdf(data, scenario, folder / f"{stem}-cdf-{scenario}.png")
        if cdf is not None:
            written.append(cdf)
    return written


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.charts", description=__doc__)
    parser.add_argument("results", type=Path, help="a results/bench-*.json file")
    parser.add_argument("--out", type=Path, help="folder for the pictures (default: beside it)")
    options = parser.parse_args()
    for path in draw(options.results, options.out):
        print(path)


if __name__ == "__main__":
    main()
