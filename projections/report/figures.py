"""The report's figures, drawn with matplotlib as SVG (text stays text, and the bytes are
reproducible: a fixed hash salt and no date in the metadata).

Each function takes plain rows and a path; none reads the ledger. The survival curves come from
the estimator the endpoint tallies use (`m22bol.domain.rules.survival`), in the tallies' months,
so a curve and the table beside it cannot disagree.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # no display here, and none wanted
import matplotlib.pyplot as plt  # noqa: E402

from m22bol.domain.rules import survival  # noqa: E402
from m22bol.domain.rules.endpoints import DAYS_PER_MONTH  # noqa: E402

# svg.fonttype none: labels stay <text> the browser draws, not a path per glyph (a third of
# the bytes).
plt.rcParams.update({"svg.hashsalt": "m22bol", "svg.fonttype": "none", "font.size": 9,
                     "axes.spines.top": False, "axes.spines.right": False})

RESPONSE_COLOURS = {"CR": "#1a9850", "PR": "#91cf60", "SD": "#fec44f", "non-CR/non-PD": "#d9ef8b",
                    "NE": "#bdbdbd", "PD": "#d73027", None: "#969696"}
MONTH = DAYS_PER_MONTH  # the tallies' month, so the figures' months are the table's


@dataclass
class PatientCourse:
    """What the figures need of one treated patient; days count from the first infusion."""

    subject: str
    basket: str
    best_change_pct: float | None
    best_response: str | None
    changes: list[tuple[int, float]] = field(default_factory=list)  # (day, % from baseline)
    infusion_days: list[int] = field(default_factory=list)
    local_days: list[int] = field(default_factory=list)
    response_days: list[tuple[int, str]] = field(default_factory=list)  # first CR/PR
    pd_day: int | None = None
    death_day: int | None = None
    last_day: int = 0
    ongoing: bool = False


def _save(fig, path: Path) -> str:
    fig.savefig(path, format="svg", metadata={"Date": None}, bbox_inches="tight")
    plt.close(fig)
    return path.name


RESPONSE_ORDER = ["CR", "PR", "SD", "non-CR/non-PD", "NE", "PD", None]
# A swimmer panel beyond this many rows has labels too small to read; see `swimmer`.
SWIMMER_ROWS_PER_BASKET = 25


def _response_label(response: str | None) -> str:
    return response or "not evaluable yet"


def _reference_lines(ax) -> None:
    """RECIST's thresholds on the target sum, named at the right end of each line."""
    for y, colour, label in ((20, "#d73027", "+20%: progression"),
                             (-30, "#1a9850", "−30%: partial response")):
        ax.axhline(y, color=colour, linestyle="--", linewidth=0.8)
        ax.annotate(label, xy=(1, y), xycoords=("axes fraction", "data"), xytext=(4, 0),
                    textcoords="offset points", va="center", fontsize=7, color=colour)
    ax.axhline(0, color="black", linewidth=0.5)


def _legend(ax, responses, title: str = "best overall response") -> None:
    """Outside the axes, to the right: never on a bar, a line or a reference line."""
    from matplotlib.patches import Patch

    handles = [Patch(color=RESPONSE_COLOURS[r], label=_response_label(r))
               for r in RESPONSE_ORDER if r in responses]
    if handles:
        ax.legend(handles=handles, fontsize=7, title=title, title_fontsize=7, frameon=False,
                  loc="upper left", bbox_to_anchor=(1.16, 1))


def waterfall(patients: Sequence[PatientCourse], path: Path) -> str:
    """One bar per treated patient with a measured follow-up; a PD bar is hatched as well as
    red, so progression reads even where its bar points down (new lesions, non-target PD)."""
    rows = sorted((p for p in patients if p.best_change_pct is not None),
                  key=lambda p: (-p.best_change_pct, p.subject))
    unmeasured = len(patients) - len(rows)
    fig, ax = plt.subplots(figsize=(10, 3.8))
    heights = [p.best_change_pct for p in rows]
    bars = ax.bar(range(len(rows)), heights, width=0.9 if len(rows) <= 60 else 1.0,
                  color=[RESPONSE_COLOURS[p.best_response] for p in rows],
                  edgecolor="#555555", linewidth=0.3 if len(rows) <= 120 else 0)
    for bar, p in zip(bars, rows, strict=True):
        if p.best_response == "PD":
            bar.set_hatch("///")
    _reference_lines(ax)
    if len(rows) <= 60:  # beyond that the names are unreadable; the bars still tell
        ax.set_xticks(range(len(rows)), [p.subject for p in rows], rotation=90, fontsize=6)
    else:
        ax.set_xticks([])
    ax.set_xlim(-1, max(len(rows), 1))
    ax.set_xlabel(f"{len(rows)} treated patients with a measured follow-up, one bar each"
                  + (f"; {unmeasured} without one not shown" if unmeasured else ""))
    ax.set_ylabel("best change of target sum\nfrom baseline (%)")
    ax.set_title("Waterfall: best % change from baseline, coloured by best overall response",
                 loc="left")
    _legend(ax, {p.best_response for p in rows})
    if not rows:
        ax.text(0.5, 0.5, "no treated patient with a measured follow-up yet",
                transform=ax.transAxes, ha="center")
    return _save(fig, path)


def swimmer_selection(patients: Sequence[PatientCourse],
                      cap: int = SWIMMER_ROWS_PER_BASKET) -> dict[str, list[PatientCourse]]:
    """Per basket, the `cap` patients longest on study (ties by subject id), longest first.

    The stated selection rule the page prints: a panel stays legible at any trial size, and
    the longest courses are the ones a swimmer plot exists to show."""
    by_basket: dict[str, list[PatientCourse]] = {}
    for p in sorted(patients, key=lambda p: (-p.last_day, p.subject)):
        by_basket.setdefault(p.basket, []).append(p)
    return {b: by_basket[b][:cap] for b in sorted(by_basket, key=_basket_order)}


def swimmer(patients: Sequence[PatientCourse], path: Path,
            cap: int = SWIMMER_ROWS_PER_BASKET) -> str:
    """One panel per basket, two panels a row, at most `cap` rows each (`swimmer_selection`).

    Markers are drawn one scatter per kind and panel, not per patient: a thousand scatter
    calls cost seconds."""
    from matplotlib.lines import Line2D

    chosen = swimmer_selection(patients, cap)
    totals = {b: sum(p.basket == b for p in patients) for b in chosen}
    panels = max(len(chosen), 1)
    columns = 2 if panels > 1 else 1
    lines = -(-panels // columns)
    rows_high = max((len(v) for v in chosen.values()), default=1)
    fig, axes = plt.subplots(lines, columns, figsize=(11, lines * (0.16 * rows_high + 1.2)),
                             squeeze=False, sharex=True)
    for ax in axes.flat[len(chosen):]:
        ax.set_visible(False)
    span = max((p.last_day for p in patients), default=0) / MONTH
    for ax, (basket, rows) in zip(axes.flat, chosen.items(), strict=False):
        ys = range(len(rows))
        ax.barh(ys, [p.last_day / MONTH for p in rows], color="#c6dbef", height=0.6)
        marks = {"infusion": [], "local": [], "pd": [], "death": []}
        responses: dict[str, list[tuple[float, int]]] = {}
        for y, p in enumerate(rows):
            marks["infusion"] += [(d / MONTH, y) for d in p.infusion_days]
            marks["local"] += [(d / MONTH, y) for d in p.local_days]
            for day, response in p.response_days:
                responses.setdefault(response, []).append((day / MONTH, y))
            if p.pd_day is not None:
                marks["pd"].append((p.pd_day / MONTH, y))
            if p.death_day is not None:
                marks["death"].append((p.death_day / MONTH, y))
        _scatter(ax, marks["infusion"], marker="|", color="#08519c", s=12, linewidths=0.7)
        _scatter(ax, marks["local"], marker="s", color="#6a51a3", s=12)
        for response, points in responses.items():
            _scatter(ax, points, marker="^", color=RESPONSE_COLOURS[response], s=22,
                     edgecolors="black", linewidths=0.3)
        _scatter(ax, marks["pd"], marker="X", color="#d73027", s=24)
        _scatter(ax, marks["death"], marker="*", color="black", s=30)
        ongoing = [(p.last_day / MONTH, y) for y, p in enumerate(rows) if p.ongoing]
        _scatter(ax, ongoing, marker=">", color="#08519c", s=18)
        ax.set_yticks(list(ys), [p.subject for p in rows], fontsize=6)
        ax.set_ylim(len(rows) - 0.5, -0.5)
        ax.set_xlim(0, span * 1.03 + 0.5)
        ax.set_title(f"Basket {basket}: {len(rows)} of {totals[basket]} treated patients",
                     loc="left", fontsize=8)
        ax.tick_params(axis="x", labelbottom=True)
        ax.set_xlabel("months from first infusion", fontsize=7)
    legend = [
        Line2D([], [], marker="|", linestyle="none", color="#08519c", label="infusion"),
        Line2D([], [], marker="s", linestyle="none", color="#6a51a3", label="local treatment"),
        Line2D([], [], marker="^", linestyle="none", color=RESPONSE_COLOURS["CR"],
               markeredgecolor="black", label="first CR"),
        Line2D([], [], marker="^", linestyle="none", color=RESPONSE_COLOURS["PR"],
               markeredgecolor="black", label="first PR"),
        Line2D([], [], marker="X", linestyle="none", color="#d73027", label="progression"),
        Line2D([], [], marker="*", linestyle="none", color="black", label="death"),
        Line2D([], [], marker=">", linestyle="none", color="#08519c", label="on treatment"),
    ]
    fig.suptitle(f"Swimmer: time on study, the {cap} longest per basket", x=0.01, ha="left",
                 fontsize=9, y=1 - 0.05 / fig.get_figheight(), va="top")
    fig.legend(handles=legend, loc="upper left", ncols=len(legend), fontsize=7,
               frameon=False, bbox_to_anchor=(0.0, 1 - 0.3 / fig.get_figheight()))
    _margins(fig, top_inches=0.8)
    return _save(fig, path)


def _scatter(ax, points: list[tuple[float, int]], **style) -> None:
    if points:
        xs, ys = zip(*points, strict=True)
        ax.scatter(xs, ys, **style)


def spider(patients: Sequence[PatientCourse], path: Path) -> str:
    """One panel per basket, each patient's line coloured by best overall response; the lines
    go one LineCollection per response, so 5,000 patients draw as fast as 400."""
    from matplotlib.collections import LineCollection

    baskets = sorted({p.basket for p in patients if p.changes}, key=_basket_order)
    panels = max(len(baskets), 1)
    columns = 2 if panels > 1 else 1
    lines = -(-panels // columns)
    fig, axes = plt.subplots(lines, columns, figsize=(11, 2.9 * lines), squeeze=False,
                             sharex=True, sharey=True)
    for ax in axes.flat[len(baskets):]:
        ax.set_visible(False)
    shown = set()
    for ax, basket in zip(axes.flat, baskets, strict=False):
        mine = sorted((p for p in patients if p.basket == basket and p.changes),
                      key=lambda p: p.subject)
        alpha = 0.8 if len(mine) <= 100 else 0.35
        for response in RESPONSE_ORDER:
            paths = [[(0.0, 0.0), *((d / MONTH, pct) for d, pct in p.changes)]
                     for p in mine if p.best_response == response]
            if paths:
                shown.add(response)
                ax.add_collection(LineCollection(paths, colors=RESPONSE_COLOURS[response],
                                                 linewidths=0.7, alpha=alpha))
        ax.autoscale_view()
        _reference_lines(ax)
        ax.set_title(f"Basket {basket}: {len(mine)} patients", loc="left", fontsize=8)
        ax.tick_params(axis="x", labelbottom=True)
        ax.set_xlabel("months from first infusion", fontsize=7)
        ax.set_ylabel("change of target sum (%)", fontsize=7)
    if not baskets:
        axes[0][0].text(0.5, 0.5, "no treated patient with a measured follow-up yet",
                        transform=axes[0][0].transAxes, ha="center")
    fig.suptitle("Spider: % change of the target sum from baseline over time, coloured by "
                 "best overall response", x=0.01, ha="left", fontsize=9,
                 y=1 - 0.05 / fig.get_figheight(), va="top")
    from matplotlib.patches import Patch

    handles = [Patch(color=RESPONSE_COLOURS[r], label=_response_label(r))
               for r in RESPONSE_ORDER if r in shown]
    if handles:
        fig.legend(handles=handles, loc="center left", bbox_to_anchor=(0.99, 0.5), fontsize=7,
                   title="best overall response", title_fontsize=7, frameon=False)
    _margins(fig, top_inches=0.45, right=0.9, wspace=0.42)
    return _save(fig, path)


def _margins(fig, *, top_inches: float, gap_inches: float = 0.75, right: float = 0.98,
             wspace: float = 0.18) -> None:
    """Fixed margins for the panel grids, in inches: tight_layout would draw every label once
    more just to measure it, the costliest step of a many-panel figure."""
    height = fig.get_figheight()
    lines = fig.axes[0].get_subplotspec().get_gridspec().nrows
    usable = height - top_inches - 0.55
    panel = (usable - gap_inches * (lines - 1)) / lines
    fig.subplots_adjust(left=0.08, right=0.98, bottom=0.55 / height,
                        top=1 - top_inches / height, hspace=gap_inches / panel, wspace=wspace)


@dataclass(frozen=True)
class SurvivalRow:
    basket: str
    months: float
    event: bool


def kaplan_meier(rows: Sequence[SurvivalRow], title: str, path: Path, *,
                 bands: bool = True) -> str:
    """Product-limit curves per basket, censorings ticked, numbers at risk under the axis,
    and (with `bands`) each curve's pointwise 95% interval (Greenwood, log-log) shaded."""
    fig = km_figure(rows, title, bands=bands)
    return _save(fig, path)


def km_figure(rows: Sequence[SurvivalRow], title: str, *, bands: bool = False):
    groups = {b: [r for r in rows if r.basket == b]
              for b in sorted({r.basket for r in rows}, key=_basket_order)}
    # Room under the axes for the at-risk table, one line per basket.
    fig, ax = plt.subplots(figsize=(10, 3.6 + 0.18 * len(groups)))
    for basket, mine in groups.items():
        curve = survival.kaplan_meier([r.months for r in mine], [r.event for r in mine])
        xs, ys = km_steps(curve)
        (line,) = ax.step(xs, ys, where="post", linewidth=1.2, label=f"basket {basket}")
        if bands and xs:
            low, high = zip(*(curve.interval_at(x) or (y, y) for x, y in
                              zip(xs, ys, strict=True)), strict=True)
            ax.fill_between(xs, low, high, step="post", color=line.get_color(), alpha=0.12,
                            linewidth=0)
        censored = sorted(r.months for r in mine if not r.event)
        ax.plot(censored, [curve.survival_at(t) for t in censored], linestyle="none",
                marker="|", markersize=6, color=line.get_color())
    ax.set_ylim(0, 1.05)
    ax.set_xlim(left=0)
    ax.set_ylabel("probability")
    ax.set_title(title + (" (shaded: 95% CI)" if bands and groups else ""), loc="left")
    if groups:
        ax.legend(fontsize=7, frameon=False, loc="upper left", bbox_to_anchor=(1.01, 1))
        _at_risk(ax, groups)
    else:
        ax.text(0.5, 0.5, "no treated patient yet", transform=ax.transAxes, ha="center")
        ax.set_xlabel("months from first infusion")
    return fig


def km_steps(curve: survival.KMCurve) -> tuple[list[float], list[float]]:
    """The corners of the step function, drawn "post": 1 from time 0, each step's value from
    its event time, held to the last follow-up (after which the curve says nothing)."""
    if curve.last_follow_up is None:
        return [], []
    xs = [0.0, *curve.times, curve.last_follow_up]
    ys = [1.0, *(float(s) for s in curve.steps), curve.survival_at(curve.last_follow_up)]
    return xs, ys


def at_risk(rows: Sequence[SurvivalRow], t: float) -> int:
    """Subjects still followed at `t`: neither an event nor a censoring before it."""
    return sum(r.months >= t for r in rows)


def _at_risk(ax, groups: dict[str, list[SurvivalRow]]) -> None:
    """A row of numbers at risk per basket at each tick, in the axes' own x coordinates."""
    left, right = ax.get_xlim()
    ticks = [t for t in ax.get_xticks() if left <= t <= right]
    ax.set_xticks(ticks)
    ax.set_xlabel("months from first infusion")
    below = ax.get_xaxis_transform()  # x in data, y in axes fractions
    ax.text(-0.03, -0.2, "Number at risk", transform=ax.transAxes, fontsize=7,
            fontweight="bold", ha="right")
    for i, (basket, mine) in enumerate(groups.items()):
        y = -0.27 - 0.06 * i
        ax.text(-0.03, y, f"basket {basket}", transform=ax.transAxes, fontsize=7, ha="right")
        for t in ticks:
            ax.text(t, y, str(at_risk(mine, t)), transform=below, fontsize=7, ha="center")


def _basket_order(basket: str) -> tuple[int, str]:
    numerals = {"I": 1, "II": 2, "III": 3, "IV": 4, "V": 5, "VI": 6, "VII": 7, "VIII": 8}
    return numerals.get(basket, 99), basket
