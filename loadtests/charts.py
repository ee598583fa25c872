"""The cutover report's pictures: a rehearsal's timeline, and a bar chart comparing ways of switching.

The figures that go into a chart are computed by pure functions (``timeline``, ``flip_marks``), unit
tested on hand-made records; the drawing functions only lay those figures out with matplotlib.
matplotlib runs on its Agg backend (no display: CI, terminals, containers), chosen before pyplot
could pick another one.
"""

from __future__ import annotations

import io
import re
from array import array
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import matplotlib

matplotlib.use("Agg")

from matplotlib.figure import Figure  # noqa: E402  (after the backend is chosen)
from matplotlib.lines import Line2D  # noqa: E402

from loadtests.report import FlipFigures, Record, percentile  # noqa: E402

# The timeline PNG, in pixels: wide enough for a dozen labelled flips, readable in a CI artefact.
TIMELINE_INCHES = (12.0, 7.0)
DPI = 100
# A long run is cut into at most this many buckets, so a soak's chart stays legible (and cheap).
MAX_BUCKETS = 600
FAILED = "failed"


@dataclass(frozen=True)
class Timeline:
    """Per-bucket figures of a run, times in seconds from its first request."""

    bucket_s: float
    starts: list[float]  # each bucket's start
    per_version: dict[str, list[float]]  # successful responses per second, by the version that served them
    failures: list[float]  # failed requests per second (connection errors and non-2xx)
    p50_ms: list[float | None]  # None: no request finished in that bucket
    p99_ms: list[float | None]
    t0: float  # wall clock of the first request


@dataclass(frozen=True)
class FlipMark:
    at_s: float  # from the run's first request
    kind: str  # "switch", "rollback" or "deploy"
    label: str


def bucket_seconds(duration_s: float) -> float:
    """1 s buckets, wider ones for runs longer than MAX_BUCKETS seconds (whole seconds)."""
    if duration_s <= MAX_BUCKETS:
        return 1.0
    return float(-(-int(duration_s) // MAX_BUCKETS))


class TimelineBuilder:
    """A timeline accumulated one request at a time, so a run read back from its CSV (a soak's
    million requests) never has to be in memory as records: only each bucket's latencies are kept,
    as C doubles (8 bytes a request)."""

    def __init__(self, t0: float, end: float, bucket_s: float | None = None) -> None:
        self.t0 = t0
        self.size = bucket_s or bucket_seconds(end - t0)
        self.count = int((end - t0) // self.size) + 1
        self.per_version: dict[str, list[float]] = {}
        self.failures = [0.0] * self.count
        self.latencies = [array("d") for _ in range(self.count)]

    def add(self, r: Record) -> None:
        """A request counts in the bucket in which it *finished* (when its answer, and version, is known)."""
        index = min(max(int((r.finished - self.t0) // self.size), 0), self.count - 1)
        self.latencies[index].append(r.latency_ms)
        if r.failed:
            self.failures[index] += 1
        else:
            self.per_version.setdefault(r.version or "none", [0.0] * self.count)[index] += 1

    def build(self) -> Timeline:
        rate = 1.0 / self.size
        ordered = [sorted(values) for values in self.latencies]
        return Timeline(
            bucket_s=self.size,
            starts=[i * self.size for i in range(self.count)],
            per_version={v: [n * rate for n in counts] for v, counts in sorted(self.per_version.items())},
            failures=[n * rate for n in self.failures],
            p50_ms=[percentile(values, 50) if values else None for values in ordered],
            p99_ms=[percentile(values, 99) if values else None for values in ordered],
            t0=self.t0,
        )


def timeline(records: Sequence[Record], bucket_s: float | None = None) -> Timeline:
    """Requests per second by version served, failures per second, and p50/p99 latency per bucket."""
    if not records:
        return Timeline(1.0, [], {}, [], [], [], 0.0)
    builder = TimelineBuilder(min(r.started for r in records), max(r.finished for r in records), bucket_s)
    for r in records:
        builder.add(r)
    return builder.build()


def flip_marks(flips: Iterable[FlipFigures], t0: float) -> list[FlipMark]:
    """Where each switch and rollback goes on the time axis, with a short label."""
    marks = []
    for flip in flips:
        kind = "rollback" if "rollback" in flip.label else "switch"
        # "2 after switch to green (2.0.0)" -> "switch to green (2.0.0)"
        label = re.sub(r"^\d+\s+(after\s+)?", "", flip.label)
        marks.append(FlipMark(at_s=round(flip.returned_at - t0, 3), kind=kind, label=label))
    return marks


def deploy_marks(records: Iterable[Record], t0: float) -> list[FlipMark]:
    """Where each deploy phase began (its first request sent), i.e. when the deploy had finished:
    a deploy is no flip, but what it does to the machine shows in the latency before the mark."""
    first_sent: dict[str, float] = {}
    for r in records:
        if "after deploy" in r.phase and r.started < first_sent.get(r.phase, float("inf")):
            first_sent[r.phase] = r.started
    return sorted(
        (FlipMark(round(at - t0, 3), "deploy", re.sub(r"^\d+\s+after\s+deploy", "deployed", phase)) for phase, at in first_sent.items()),
        key=lambda m: m.at_s,
    )


# Not the colours of the versions' areas (C0, C1, ...) nor the failures' red.
_MARK_STYLE = {"switch": ("black", "--"), "rollback": ("darkviolet", ":"), "deploy": ("grey", "-."), "phase": ("teal", "-")}
# More flips (switches and rollbacks together) than this, a soak's hundred, are drawn as thin lines
# without labels: the labels would cover each other and the data; the legend counts each kind.
MAX_LABELLED_MARKS = 24


def _group(kind: str) -> str:
    return "flip" if kind in ("switch", "rollback") else kind


def timeline_figure(line: Timeline, marks: Sequence[FlipMark], title: str) -> Figure:
    """Two panels on one time axis: rate by version (failures in red on top), p50/p99 latency."""
    figure = Figure(figsize=TIMELINE_INCHES, dpi=DPI, layout="constrained")
    rate_axis, latency_axis = figure.subplots(2, 1, sharex=True, height_ratios=(3, 2))
    figure.suptitle(title, fontsize=13)
    x = line.starts
    if x:
        stacks = list(line.per_version.values())
        labels = [f"v{v} served" if v != "none" else "no version header" for v in line.per_version]
        if stacks:
            rate_axis.stackplot(x, *stacks, labels=labels, step="post", alpha=0.8)
        base = [sum(column) for column in zip(*stacks)] if stacks else [0.0] * len(x)
        failed = [(t + line.bucket_s / 2, b + n) for t, b, n in zip(x, base, line.failures) if n]
        if failed:
            # A red bar on top of the bucket, and a cross above it: one failed request among
            # hundreds would be a bar too thin to see.
            rate_axis.bar(x, line.failures, bottom=base, width=line.bucket_s, align="edge", color="red")
            rate_axis.scatter(*zip(*failed), marker="x", color="red", zorder=5, label="failed requests")
        # Not the versions' colours: a latency line is not a version.
        for name, values, colour in (("p50", line.p50_ms, "tab:green"), ("p99", line.p99_ms, "tab:brown")):
            latency_axis.plot(x, [v if v is not None else float("nan") for v in values], color=colour, label=name, drawstyle="steps-post")
        if any(v for v in line.p99_ms if v):
            latency_axis.set_yscale("log")
    else:
        rate_axis.text(0.5, 0.5, "no requests recorded", ha="center", va="center", transform=rate_axis.transAxes)
    per_kind = Counter(mark.kind for mark in marks)
    per_group = Counter(_group(mark.kind) for mark in marks)
    crowded = {kind for kind in per_kind if per_group[_group(kind)] > MAX_LABELLED_MARKS}
    for axis in (rate_axis, latency_axis):
        for mark in marks:
            colour, dash = _MARK_STYLE[mark.kind]
            axis.axvline(mark.at_s, color=colour, linestyle=dash, linewidth=0.8 if mark.kind in crowded else 1.5)
        axis.grid(True, alpha=0.3)
    for mark in (m for m in marks if m.kind not in crowded):
        colour, _ = _MARK_STYLE[mark.kind]
        # Labels sit just inside the top of the rate panel, rotated so that close flips do not overlap.
        rate_axis.text(mark.at_s, 0.98, f" {mark.label}", transform=rate_axis.get_xaxis_transform(), rotation=90,
                       va="top", ha="center", fontsize=8, color=colour,
                       bbox={"boxstyle": "round,pad=0.2", "facecolor": "white", "edgecolor": colour, "alpha": 0.85})
    rate_axis.set_ylabel(f"requests/s ({line.bucket_s:g} s buckets)")
    rate_axis.set_ylim(bottom=0)
    if x:
        kinds = [Line2D([], [], color=_MARK_STYLE[k][0], linestyle=_MARK_STYLE[k][1], label=f"{k} ({n})") for k, n in sorted(per_kind.items())]
        handles, _ = rate_axis.get_legend_handles_labels()
        rate_axis.legend(handles=handles + kinds, loc="lower left", fontsize=8)
    latency_axis.set_ylabel("latency ms")
    latency_axis.set_xlabel("seconds since the first request")
    if x:
        latency_axis.legend(loc="upper left", fontsize=8)
        latency_axis.set_xlim(0, x[-1] + line.bucket_s)
    return figure


def comparison_chart(rows: list[dict], metrics: list[str], label_key: str = "way", title: str = "") -> Figure:
    """One bar chart comparing rows (e.g. five ways to switch) on a few metrics, one panel per metric
    (their units differ: counts, seconds, milliseconds). ``rows`` are dicts holding ``label_key`` and
    each metric; a missing or None metric shows as no bar, labelled n/a."""
    if not rows or not metrics:
        raise ValueError("a comparison chart needs at least one row and one metric")
    names = [str(row.get(label_key, f"row {i + 1}")) for i, row in enumerate(rows)]
    figure = Figure(figsize=(max(6.0, 3.2 * len(metrics)), 4.5), dpi=DPI, layout="constrained")
    axes = figure.subplots(1, len(metrics), squeeze=False)[0]
    if title:
        figure.suptitle(title, fontsize=13)
    colours = [f"C{i}" for i in range(len(rows))]
    for axis, metric in zip(axes, metrics):
        values = [row.get(metric) for row in rows]
        heights = [float(v) if v is not None else 0.0 for v in values]
        bars = axis.bar(range(len(rows)), heights, color=colours)
        axis.bar_label(bars, labels=[_short(v) for v in values], fontsize=8)
        axis.set_xticks(range(len(rows)), names, rotation=30, ha="right", fontsize=9)
        axis.set_title(metric, fontsize=10)
        axis.grid(True, axis="y", alpha=0.3)
    return figure


def _short(value: object) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:.3g}" if abs(value) < 1000 else f"{value:,.0f}"
    return str(value)


def png_bytes(figure: Figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=DPI)
    return buffer.getvalue()


def save_png(figure: Figure, path: Path) -> Path:
    path.write_bytes(png_bytes(figure))
    return path
