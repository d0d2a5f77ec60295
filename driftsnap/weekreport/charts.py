"""The week report's PNG charts, drawn on matplotlib's Agg canvas: no display, no pyplot.

Each chart is a :class:`~matplotlib.figure.Figure` on a ``FigureCanvasAgg`` of its own (pyplot
keeps global figure state and picks a GUI backend), ``WIDTH_PX`` x ``HEIGHT_PX``, saved and
dropped. Labels come from untrusted text (registered names, market names): math text is off and
anything but printable ASCII is replaced, so no label can fail to parse or warn about a glyph the
font lacks. The x axis of the time charts is hours since Monday 00:00 UTC.
"""

from __future__ import annotations

import functools
import math
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import matplotlib as mpl
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping, Sequence
    from pathlib import Path

    from matplotlib.axes import Axes

DPI = 100
WIDTH_PX = 1000
HEIGHT_PX = 420
WEEK_H = 168
OTHERS_COLOR = "#9e9e9e"
_DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun", "Mon")
_STATUS_COLORS = {"ok": "#2e7d32", "rejected": "#ef6c00", "missed": "#c62828"}
_UNSAFE = re.compile(r"[^\x20-\x7e]")


@dataclass(frozen=True, slots=True)
class Series:
    """One line, bar group or stack layer; ``None`` values are gaps."""

    label: str
    values: Sequence[float | None]
    color: str | None = None


def safe(text: str, limit: int = 40) -> str:
    """``text`` as a chart can always draw it: printable ASCII, at most ``limit`` characters."""
    text = _UNSAFE.sub("?", text.replace("…", "..."))
    return text if len(text) <= limit else text[: limit - 3] + "..."


def palette(n: int) -> list[str]:
    """``n`` distinct colours: tab10 without its grey (grey is "others"), then Dark2."""
    tab10 = [c for i, c in enumerate(mpl.colormaps["tab10"].colors) if i != 7]  # type: ignore[attr-defined]
    colors = [*tab10, *mpl.colormaps["Dark2"].colors]  # type: ignore[attr-defined]
    return [mpl.colors.to_hex(colors[i % len(colors)]) for i in range(n)]


def _draw(path: Path, title: str, paint: Callable[[Axes], None], *, left: float = 0.08) -> None:
    with mpl.rc_context({"text.parse_math": False, "font.size": 9}):
        fig = Figure(figsize=(WIDTH_PX / DPI, HEIGHT_PX / DPI), dpi=DPI)
        FigureCanvasAgg(fig)
        # Fixed margins, not tight or constrained layout (they warn when a long legend does not
        # fit): the legend has the right quarter to itself.
        fig.subplots_adjust(left=left, right=0.74, top=0.9, bottom=0.13)
        ax = fig.add_subplot()
        ax.set_axisbelow(True)
        ax.set_title(safe(title, 100), loc="left", fontsize=10)
        paint(ax)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False)
        fig.savefig(path, format="png", dpi=DPI)
        fig.clear()


def _week_axis(ax: Axes) -> None:
    ax.set_xlim(0, WEEK_H)
    ax.set_xticks(range(0, WEEK_H + 1, 24), _DAYS)
    ax.set_xlabel("hours since Monday 00:00 UTC")
    ax.grid(alpha=0.3)


def _empty(ax: Axes, message: str) -> None:
    ax.text(0.5, 0.5, message, ha="center", va="center", transform=ax.transAxes, color="#555555")


def shares(path: Path, *, title: str, hours: Sequence[float], series: Sequence[Series]) -> None:
    """Cumulative score share over the week in %, one line per maker (and "others")."""

    def paint(ax: Axes) -> None:
        _week_axis(ax)
        ax.set_ylim(0, 100)
        ax.set_ylabel("cumulative share of score, %")
        if not hours or not series:
            _empty(ax, "no scoring participant")
            return
        for s, color in zip(series, palette(len(series)), strict=True):
            values = [math.nan if v is None else 100 * v for v in s.values]
            ax.plot(
                hours,
                values,
                label=safe(s.label),
                color=s.color or color,
                linewidth=1.4,
                marker="o" if len(hours) < 60 else None,
                markersize=3,
            )

    _draw(path, title, paint)


def stacks(
    path: Path, *, title: str, hours: Sequence[float], width_h: float, layers: Sequence[Series]
) -> None:
    """Stacked areas over the week's time buckets of ``width_h`` hours; ``hours`` are the starts
    of the buckets the layers' values belong to, and a bucket without a value is drawn at 0.

    Not as a gap (NaN): a stack drops every step next to a NaN, so a sparse week (one snapshot
    every few buckets) would draw nothing at all."""
    n = math.ceil(WEEK_H / width_h)
    index = [min(n - 1, round(h / width_h)) for h in hours]
    # One polygon per layer (stackplot), not a bar per bucket: 336 buckets x 12 layers of bars
    # took seconds to draw.
    grid = [width_h * i for i in range(n + 1)]
    dense: list[list[float]] = []
    for s in layers:
        row = [0.0] * (n + 1)
        for i, v in zip(index, s.values, strict=True):
            row[i] = 0.0 if v is None else v
        row[n] = row[n - 1]  # step="post" draws the last bucket up to the week's end
        dense.append(row)

    def paint(ax: Axes) -> None:
        _week_axis(ax)
        ax.set_ylabel("mean score per snapshot")
        drawn = [(s, row) for s, row in zip(layers, dense, strict=True) if any(row)]
        if not drawn:
            _empty(ax, "no bracketed liquidity this week")
            return
        ax.stackplot(
            grid,
            *(row for _, row in drawn),
            labels=[safe(s.label) for s, _ in drawn],
            colors=[s.color or "#777777" for s, _ in drawn],
            step="post",
            linewidth=0,
        )
        ax.set_ylim(bottom=0)

    _draw(path, title, paint)


def _bars(ax: Axes, rows: Sequence[str], groups: Sequence[Series], *, stacked: bool) -> None:
    if not rows or not groups:
        _empty(ax, "nothing to show")
        return
    positions = list(range(len(rows)))
    height = 0.8 if stacked else 0.8 / len(groups)
    left = [0.0] * len(rows)
    for i, (g, color) in enumerate(zip(groups, palette(len(groups)), strict=True)):
        values = [0.0 if v is None else v for v in g.values]
        y = positions if stacked else [p - 0.4 + height * (i + 0.5) for p in positions]
        ax.barh(y, values, height=height, left=left, color=g.color or color, label=safe(g.label))
        if stacked:
            left = [a + b for a, b in zip(left, values, strict=True)]
    ax.set_yticks(positions, [safe(r, 28) for r in rows], fontsize=8)
    ax.invert_yaxis()


def uptime(path: Path, *, title: str, makers: Sequence[str], markets: Sequence[Series]) -> None:
    """Two-sided uptime in %, one bar per maker and market."""

    def paint(ax: Axes) -> None:
        ax.set_xlim(0, 100)
        ax.set_xlabel("two-sided uptime, % of ok snapshots")
        ax.grid(axis="x", alpha=0.3)
        _bars(ax, makers, markets, stacked=False)

    _draw(path, title, paint, left=0.2)


def coverage(
    path: Path,
    *,
    title: str,
    markets: Sequence[str],
    ok: Sequence[int],
    rejected: Sequence[int],
    missed: Sequence[int],
) -> None:
    """Ticks ok / rejected / missed per market, stacked."""
    layers = [
        Series(name, [float(v) for v in values], _STATUS_COLORS[name])
        for name, values in (("ok", ok), ("rejected", rejected), ("missed", missed))
    ]

    def paint(ax: Axes) -> None:
        ax.set_xlabel("ticks")
        ax.grid(axis="x", alpha=0.3)
        _bars(ax, markets, layers, stacked=True)

    _draw(path, title, paint, left=0.2)


# ---------------------------------------------------------------------------- the report's charts


@dataclass(frozen=True, slots=True)
class Chart:
    """One PNG of the report: where it goes, what it shows, and how to draw it."""

    file: str
    kind: str  # share | uptime | coverage | maker
    subject: str | None  # the market of a share or maker chart
    title: str
    draw: Callable[[Path], None]

    def entry(self) -> dict[str, Any]:
        """The chart as report.json lists it."""
        return {
            "file": self.file,
            "kind": self.kind,
            "subject": self.subject,
            "title": self.title,
            "width": WIDTH_PX,
            "height": HEIGHT_PX,
        }


def file_name(prefix: str, index: int, text: str) -> str:
    """A file name that no market name can turn into a path: ``share-00-SOL-PERP.png``."""
    slug = re.sub(r"[^A-Za-z0-9]+", "-", text).strip("-")[:40] or "x"
    return f"{prefix}-{index:02d}-{slug}.png"


def lighter(color: str, amount: float = 0.55) -> str:
    """``color`` mixed with white."""
    r, g, b = mpl.colors.to_rgb(color)
    return mpl.colors.to_hex((r + (1 - r) * amount, g + (1 - g) * amount, b + (1 - b) * amount))


def plan(doc: Mapping[str, Any], *, top: int) -> list[Chart]:
    """Every chart of the report document ``doc``, in page order."""
    week = doc["week"]
    flag = " (PROVISIONAL)" if doc["provisional"] else ""
    width_h = doc["share_series"]["bucket_s"] / 3600
    out: list[Chart] = []
    maker = doc["maker"]
    for i, m in enumerate([] if maker is None else maker["markets"]):
        who = maker["authority"]
        title = (
            f"{m['market']} {week}{flag}: {who[:4]}...{who[-4:]} mean score per snapshot, "
            "by bracket and side"
        )
        draw = functools.partial(_maker_chart, title=title, points=m["series"], width_h=width_h)
        out.append(Chart(file_name("maker", i, m["market"]), "maker", m["market"], title, draw))
    for i, s in enumerate(doc["share_series"]["markets"]):
        title = (
            f"{s['market']} {week}{flag}: cumulative score share "
            f"(top {min(top, s['participants'])} of {s['participants']} participants)"
        )
        series = [
            Series(x["label"], x["share"], OTHERS_COLOR if x["authority"] is None else None)
            for x in s["series"]
        ]
        draw = functools.partial(shares, title=title, hours=s["hours"], series=series)
        out.append(Chart(file_name("share", i, s["market"]), "share", s["market"], title, draw))
    out.append(_uptime_chart(doc, top=top, title=f"Two-sided uptime {week}{flag}"))
    cov = doc["coverage"]
    title = f"Coverage {week}{flag}: ticks per market"
    draw = functools.partial(
        coverage,
        title=title,
        markets=[c["market"] for c in cov],
        ok=[c["ok"] for c in cov],
        rejected=[c["rejected"] for c in cov],
        missed=[c["missed"] for c in cov],
    )
    out.append(Chart("coverage.png", "coverage", None, title, draw))
    return out


def _maker_chart(
    path: Path, *, title: str, points: Sequence[Mapping[str, Any]], width_h: float
) -> None:
    """One stack layer per bracket side: the bid in the bracket's colour, the ask lighter."""
    keys = sorted(
        {(c["bracket"], c["side"]) for p in points for c in p["brackets"]},
        key=lambda k: (k[0], k[1] != "bid"),
    )
    brackets = sorted({b for b, _ in keys})
    colors = dict(zip(brackets, palette(len(brackets)), strict=True))
    layers = []
    for bracket, side in keys:
        values: list[float | None] = []
        for p in points:
            part = sum(
                c["score"] for c in p["brackets"] if (c["bracket"], c["side"]) == (bracket, side)
            )
            values.append(part / p["snapshots"] if p["snapshots"] else None)
        color = colors[bracket] if side == "bid" else lighter(colors[bracket])
        layers.append(Series(f"{bracket} {side}", values, color))
    hours = [p["hour"] for p in points]
    stacks(path, title=title, hours=hours, width_h=width_h, layers=layers)


def _uptime_chart(doc: Mapping[str, Any], *, top: int, title: str) -> Chart:
    """The ``top`` makers by summed score share, one bar per market."""
    markets = doc["uptime"]["markets"]
    weight: dict[str, float] = {}
    for pool in doc["pools"]:
        for m in pool["makers"]:
            weight[m["authority"]] = weight.get(m["authority"], 0.0) + m["share"]
    seen = {a for m in markets.values() for a in m["makers"]} | set(weight)
    makers = sorted(seen, key=lambda a: (-weight.get(a, 0.0), a))[:top]
    names = {r["authority"]: r["name"] for r in doc["payouts"]}
    groups = [
        Series(name, [100 * markets[name]["makers"].get(a, {}).get("uptime", 0.0) for a in makers])
        for name in markets
    ]
    labels = [f"{a[:4]}...{a[-4:]} {names.get(a, '')}".strip() for a in makers]
    draw = functools.partial(uptime, title=title, makers=labels, markets=groups)
    return Chart("uptime.png", "uptime", None, title, draw)
