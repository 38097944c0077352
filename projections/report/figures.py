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

plt.rcParams.update({"svg.hashsalt": "m22bol", "font.size": 9, "axes.spines.top": False,
                     "axes.spines.right": False})

RESPONSE_COLOURS = {"CR": "#1a9850", "PR": "#91cf60", "SD": "#fee08b", "non-CR/non-PD": "#d9ef8b",
                    "NE": "#bdbdbd", "PD": "#d73027", None: "#e0e0e0"}
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


def waterfall(patients: Sequence[PatientCourse], path: Path) -> str:
    rows = sorted((p for p in patients if p.best_change_pct is not None),
                  key=lambda p: (-p.best_change_pct, p.subject))
    fig, ax = plt.subplots(figsize=(9, 3.6))
    ax.bar(range(len(rows)), [p.best_change_pct for p in rows],
           color=[RESPONSE_COLOURS.get(p.best_response, "#e0e0e0") for p in rows],
           edgecolor="#555555", linewidth=0.3)
    ax.axhline(20, color="#d73027", linestyle="--", linewidth=0.8)
    ax.axhline(-30, color="#1a9850", linestyle="--", linewidth=0.8)
    ax.axhline(0, color="black", linewidth=0.5)
    if len(rows) <= 60:  # beyond that the names are unreadable; the bars still tell
        ax.set_xticks(range(len(rows)), [p.subject for p in rows], rotation=90, fontsize=6)
    else:
        ax.set_xticks([])
        ax.set_xlabel(f"{len(rows)} treated patients with a measured follow-up")
    ax.set_ylabel("best change of target sum from baseline (%)")
    ax.set_title("Waterfall: best % change from baseline, coloured by best overall response")
    _legend(ax, {p.best_response for p in rows})
    if not rows:
        ax.text(0.5, 0.5, "no treated patient with a measured follow-up yet",
                transform=ax.transAxes, ha="center")
    return _save(fig, path)


def _legend(ax, responses) -> None:
    from matplotlib.patches import Patch

    order = ["CR", "PR", "SD", "non-CR/non-PD", "NE", "PD", None]
    handles = [Patch(color=RESPONSE_COLOURS[r], label=r or "not evaluable yet")
               for r in order if r in responses]
    if handles:
        ax.legend(handles=handles, fontsize=7, frameon=False, loc="upper right")


def swimmer(patients: Sequence[PatientCourse], path: Path) -> str:
    rows = sorted(patients, key=lambda p: (p.basket, -p.last_day, p.subject))
    fig, ax = plt.subplots(figsize=(9, max(2.5, 0.18 * len(rows) + 1)))
    for y, p in enumerate(rows):
        ax.barh(y, p.last_day / MONTH, color="#c6dbef", height=0.6)
        ax.scatter([d / MONTH for d in p.infusion_days], [y] * len(p.infusion_days),
                   marker="|", color="#08519c", s=14, linewidths=0.8)
        ax.scatter([d / MONTH for d in p.local_days], [y] * len(p.local_days), marker="s",
                   color="#6a51a3", s=14)
        for day, response in p.response_days:
            ax.scatter(day / MONTH, y, marker="^", color=RESPONSE_COLOURS[response], s=22,
                       edgecolors="black", linewidths=0.3)
        if p.pd_day is not None:
            ax.scatter(p.pd_day / MONTH, y, marker="X", color="#d73027", s=24)
        if p.death_day is not None:
            ax.scatter(p.death_day / MONTH, y, marker="*", color="black", s=30)
        if p.ongoing:
            ax.annotate("", xy=(p.last_day / MONTH + 1.2, y), xytext=(p.last_day / MONTH, y),
                        arrowprops={"arrowstyle": "->", "color": "#08519c", "lw": 0.8})
    ax.set_yticks(range(len(rows)), [f"{p.basket} {p.subject}" for p in rows], fontsize=6)
    ax.set_xlabel("months from first infusion")
    ax.set_title("Swimmer: | infusion  ■ local treatment  ▲ response  ✕ PD  ★ death  → ongoing")
    ax.invert_yaxis()
    return _save(fig, path)


def spider(patients: Sequence[PatientCourse], path: Path) -> str:
    fig, ax = plt.subplots(figsize=(9, 3.6))
    for p in sorted(patients, key=lambda p: p.subject):
        if p.changes:
            days, pct = zip(*[(0, 0.0), *p.changes], strict=True)
            ax.plot([d / MONTH for d in days], pct, linewidth=0.8, marker="o", markersize=2,
                    color=RESPONSE_COLOURS.get(p.best_response, "#999999"))
    ax.axhline(20, color="#d73027", linestyle="--", linewidth=0.8)
    ax.axhline(-30, color="#1a9850", linestyle="--", linewidth=0.8)
    ax.set_xlabel("months from first infusion")
    ax.set_ylabel("change of target sum from baseline (%)")
    ax.set_title("Spider: % change from baseline over time")
    return _save(fig, path)


@dataclass(frozen=True)
class SurvivalRow:
    basket: str
    months: float
    event: bool


def kaplan_meier(rows: Sequence[SurvivalRow], title: str, path: Path) -> str:
    """Product-limit curves per basket, censorings ticked, numbers at risk under the axis."""
    fig = km_figure(rows, title)
    return _save(fig, path)


def km_figure(rows: Sequence[SurvivalRow], title: str):
    fig, ax = plt.subplots(figsize=(9, 4.2))
    groups = {b: [r for r in rows if r.basket == b]
              for b in sorted({r.basket for r in rows}, key=_basket_order)}
    for basket, mine in groups.items():
        curve = survival.kaplan_meier([r.months for r in mine], [r.event for r in mine])
        (line,) = ax.step(*km_steps(curve), where="post", linewidth=1.2,
                          label=f"basket {basket}")
        censored = sorted(r.months for r in mine if not r.event)
        ax.plot(censored, [curve.survival_at(t) for t in censored], linestyle="none",
                marker="|", markersize=6, color=line.get_color())
    ax.set_ylim(0, 1.05)
    ax.set_xlim(left=0)
    ax.set_ylabel("probability")
    ax.set_title(title)
    if groups:
        ax.legend(fontsize=7, frameon=False, loc="lower left")
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
