"""The report's figures, drawn with matplotlib and returned as inline SVG markup.

Each public function takes plain tables/arrays and returns one `<svg>` element ready to be
pasted into an HTML page. A figure that the data cannot support raises `PlotUnavailable`
with a sentence for the reader, so the page can show that note in the figure's place.

Why these choices:
- pyplot-free `Figure` objects on the Agg canvas: no GUI backend and no global figure state,
  so this runs headless inside Snakemake jobs and never leaks memory between figures.
- SVG text stays text (`svg.fonttype = none`): small files, selectable labels.
- Every id in a figure gets a per-figure prefix: several SVGs inline in one page share one id
  namespace, and matplotlib reuses ids such as `figure_1` in every file.
- A fixed hash salt and no date make the output byte-for-byte reproducible.
"""

from __future__ import annotations

import functools
import hashlib
import io
import re
from itertools import pairwise

import matplotlib
import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

NOVEL_COLOUR = "#D55E00"    # Okabe-Ito vermillion: readable for colour-blind readers
KNOWN_COLOUR = "#0072B2"    # Okabe-Ito blue
NEUTRAL_COLOUR = "#555555"
PAE_MAX_ANGSTROM = 30.0     # one colour scale for every hit, so heatmaps compare at a glance
# AlphaFold's pLDDT confidence bands (lower bound, colour, label)
PLDDT_BANDS = (
    (90, "#0053D6", "very high"),
    (70, "#65CBF3", "confident"),
    (50, "#FFDB13", "low"),
    (0, "#FF7D45", "very low"),
)

_SVG_STYLE = {
    "svg.fonttype": "none",
    "svg.hashsalt": "foldcp-report",
    "font.family": "DejaVu Sans",
    "font.size": 10,
    "axes.spines.top": False,
    "axes.spines.right": False,
}


class PlotUnavailable(Exception):
    """The data cannot support this figure; the message tells the reader why."""


def _styled(draw):
    """Run a figure function under the report's matplotlib style (rcParams act at draw time)."""
    @functools.wraps(draw)
    def wrapper(*args, **kwargs):
        with matplotlib.rc_context(_SVG_STYLE):
            return draw(*args, **kwargs)
    return wrapper


@_styled
def score_distributions(best: pd.DataFrame) -> str:
    """Histograms of ranking_score, ipTM and ipSAE over the best sample of each complex."""
    scores = (("ranking_score", "ranking score"), ("iptm", "ipTM"), ("ipsae", "ipSAE"))
    figure = _new_figure(10.5, 3.0, left=0.06, right=0.99, bottom=0.17, top=0.9, wspace=0.22)
    for axes, (column, label) in zip(figure.subplots(1, len(scores)), scores):
        _score_histogram(axes, best, column, label)
    return _to_svg(figure)


@_styled
def iptm_vs_contacts(best: pd.DataFrame) -> str:
    """ipTM against inter-chain contacts, one dot per complex, novel and known coloured apart."""
    _require_columns(best, ("iptm", "interchain_contacts"))
    figure = _new_figure(5.4, 4.2, left=0.13, right=0.97, bottom=0.12, top=0.9)
    axes = figure.subplots()
    for label, rows, colour in _novelty_groups(best):
        axes.scatter(rows["interchain_contacts"], rows["iptm"], s=28, alpha=0.8,
                     color=colour, edgecolor="white", linewidth=0.5, label=f"{label} ({len(rows)})")
    if _spans_decades(best["interchain_contacts"]):
        axes.set_xscale("symlog", linthresh=10)   # many complexes near 0, a few in thousands
    axes.set_xlim(left=0)
    axes.set_ylim(0, 1)
    axes.set_xlabel("inter-chain contacts")
    axes.set_ylabel("ipTM")
    axes.grid(alpha=0.3)
    _legend_above(axes)
    return _to_svg(figure)


@_styled
def novel_vs_known(best: pd.DataFrame) -> str:
    """ranking_score of novel and known complexes side by side: box plus every point."""
    _require_columns(best, ("ranking_score", "novel"))
    groups = [(label, rows["ranking_score"].dropna().to_numpy(), colour)
              for label, rows, colour in _novelty_groups(best)]
    figure = _new_figure(5.4, 4.2, left=0.13, right=0.97, bottom=0.14, top=0.9)
    axes = figure.subplots()
    jitter = np.random.default_rng(0)   # fixed seed: the same report every time
    for position, (label, values, colour) in enumerate(groups, start=1):
        if len(values):
            axes.boxplot(values, positions=[position], widths=0.5, showfliers=False,
                         medianprops={"color": colour, "linewidth": 2})
        spread = jitter.uniform(-0.15, 0.15, len(values))
        axes.scatter(position + spread, values, s=22, alpha=0.75, color=colour, zorder=3)
    axes.set_xticks(range(1, len(groups) + 1),
                    [f"{label}\n(n = {len(values)})" for label, values, _ in groups])
    axes.set_xlim(0.4, len(groups) + 0.6)
    axes.set_ylim(*score_axis_range(best["ranking_score"]))
    axes.set_ylabel("ranking score")
    axes.grid(axis="y", alpha=0.3)
    return _to_svg(figure)


@_styled
def hit_panels(pae: np.ndarray | None, plddt: np.ndarray | None,
               chain_lengths: list[int] | None) -> str:
    """One hit: PAE heatmap (left) and per-residue pLDDT profile (right), chains marked."""
    if pae is None and plddt is None:
        raise PlotUnavailable("Neither the PAE nor the pLDDT file of this sample could be read.")
    figure = _new_figure(10.5, 3.7, left=0.055, right=0.915, bottom=0.13, top=0.83, wspace=0.32)
    pae_axes, plddt_axes = figure.subplots(1, 2, width_ratios=[1, 1.9])
    _draw_pae(pae_axes, pae, chain_lengths)
    _draw_plddt(plddt_axes, plddt, chain_lengths)
    return _to_svg(figure)


def is_set(flags: pd.Series) -> pd.Series:
    """A flag column as plain bool; missing values (None, NA) count as not set."""
    return flags.eq(True).fillna(False).astype(bool)


def score_axis_range(values: pd.Series) -> tuple[float, float]:
    """0-1 for scores that live there; the data's own range for others.

    A screen's ranking_score may be a custom weighted sum (contacts included) that leaves 0-1.
    """
    values = values.dropna()
    low, high = (float(values.min()), float(values.max())) if len(values) else (0.0, 1.0)
    if low >= 0 and high <= 1:
        return 0.0, 1.0
    pad = (high - low) * 0.05 or 1.0
    return low - pad, high + pad


def chain_boundaries(chain_lengths: list[int] | None, tokens: int) -> list[int]:
    """Token index where each chain after the first starts; none if lengths don't fit `tokens`."""
    if not chain_lengths or sum(chain_lengths) != tokens:
        return []
    return [int(n) for n in np.cumsum(chain_lengths)[:-1]]


def _score_histogram(axes, best: pd.DataFrame, column: str, label: str) -> None:
    axes.set_xlabel(label)
    values = best[column].dropna() if column in best.columns else pd.Series(dtype=float)
    if values.empty:
        axes.set_title(label)
        reason = "not in the table" if column not in best.columns else "no values"
        _panel_note(axes, f"{label}: {reason}")
        return
    axes.set_title(f"{label}  (median {values.median():.2f})")
    low, high = score_axis_range(values)
    axes.set_xlim(low, high)
    axes.hist(values, bins=np.linspace(low, high, 21), histtype="stepfilled",
              color=KNOWN_COLOUR, alpha=0.85)
    axes.axvline(values.median(), color=NOVEL_COLOUR, linestyle="--", linewidth=1.2)
    axes.yaxis.set_major_locator(MaxNLocator(integer=True))
    axes.set_ylabel("complexes")


def _spans_decades(values: pd.Series) -> bool:
    """True when the largest value dwarfs the typical one (log-like axis reads better)."""
    values = values.dropna()
    return not values.empty and values.max() > 20 * max(values.median(), 1)


def _legend_above(axes) -> None:
    axes.legend(loc="lower left", bbox_to_anchor=(0, 1.01), ncols=3, frameon=False,
                borderaxespad=0, handletextpad=0.3)


def _novelty_groups(best: pd.DataFrame) -> list[tuple[str, pd.DataFrame, str]]:
    """(label, rows, colour) for novel and known; one neutral group when novelty is unknown."""
    if "novel" not in best.columns:
        return [("all complexes", best, NEUTRAL_COLOUR)]
    novel = is_set(best["novel"])
    return [("novel", best[novel], NOVEL_COLOUR), ("known", best[~novel], KNOWN_COLOUR)]


def _draw_pae(axes, pae: np.ndarray | None, chain_lengths: list[int] | None) -> None:
    axes.set_title("predicted aligned error", loc="left", pad=18)
    if pae is None:
        _panel_note(axes, "PAE file not available")
        return
    image = axes.imshow(pae, cmap="Greens_r", vmin=0, vmax=PAE_MAX_ANGSTROM,
                        interpolation="nearest" if len(pae) <= 200 else "antialiased")
    starts = chain_boundaries(chain_lengths, len(pae))
    for start in starts:
        axes.axhline(start - 0.5, color="black", linewidth=0.9)
        axes.axvline(start - 0.5, color="black", linewidth=0.9)
    _name_chains(axes, [0, *starts, len(pae)], offset=-0.5)
    axes.set_xlabel("scored residue")
    axes.set_ylabel("aligned residue")
    colorbar = axes.figure.colorbar(image, ax=axes, fraction=0.05, pad=0.04)
    colorbar.set_label("expected error (Å)")


def _draw_plddt(axes, plddt: np.ndarray | None, chain_lengths: list[int] | None) -> None:
    axes.set_title("pLDDT per residue", loc="left", pad=18)
    if plddt is None:
        _panel_note(axes, "pLDDT file not available")
        return
    percent = plddt * 100 if np.nanmax(plddt, initial=0) <= 1.0 else plddt
    _shade_confidence_bands(axes)
    axes.plot(np.arange(1, len(percent) + 1), percent, color="#222222", linewidth=1.0)
    starts = chain_boundaries(chain_lengths, len(percent))
    for start in starts:
        axes.axvline(start + 0.5, color="black", linewidth=0.9, linestyle="--")
    _name_chains(axes, [0, *starts, len(percent)], offset=0.5)
    axes.set_xlim(0.5, len(percent) + 0.5)
    axes.set_ylim(0, 100)
    axes.set_xlabel("residue (token)")
    axes.set_ylabel("pLDDT")


def _shade_confidence_bands(axes) -> None:
    """AlphaFold's pLDDT bands as background colour, named on the right-hand axis."""
    upper, centres, names = 100, [], []
    for lower, colour, name in PLDDT_BANDS:
        axes.axhspan(lower, upper, color=colour, alpha=0.2, linewidth=0)
        centres.append((lower + upper) / 2)
        names.append(name)
        upper = lower
    band_axis = axes.secondary_yaxis("right")
    band_axis.set_yticks(centres, names, fontsize=8)
    band_axis.tick_params(length=0)


def _name_chains(axes, edges: list[int], offset: float) -> None:
    """Chain names (A, B, ...) above the panel, centred on each chain's residues."""
    if len(edges) < 3:
        return
    centres = [(start + end) / 2 + offset for start, end in pairwise(edges)]
    chain_axis = axes.secondary_xaxis("top")
    chain_axis.set_xticks(centres, [_chain_letter(i) for i in range(len(centres))],
                          fontsize=9, fontweight="bold")
    chain_axis.tick_params(length=0, pad=2)


def _chain_letter(index: int) -> str:
    """A..Z, then AA, AB, ... (mmCIF-style names for many chains)."""
    letters = ""
    index += 1
    while index:
        index, remainder = divmod(index - 1, 26)
        letters = chr(ord("A") + remainder) + letters
    return letters


def _panel_note(axes, text: str) -> None:
    axes.text(0.5, 0.5, text, ha="center", va="center", transform=axes.transAxes,
              color=NEUTRAL_COLOUR)
    axes.set_xticks([])
    axes.set_yticks([])


def _require_columns(frame: pd.DataFrame, columns: tuple[str, ...]) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise PlotUnavailable(f"Not drawn: the table has no {', '.join(missing)} column.")
    if frame[list(columns)].dropna().empty:
        raise PlotUnavailable(f"Not drawn: no complex has values for {', '.join(columns)}.")


def _new_figure(width_inches: float, height_inches: float, **margins: float) -> Figure:
    """A figure on the Agg canvas with fixed margins (fractions of the figure).

    Fixed margins rather than constrained layout: the sizes never change, and constrained
    layout would more than double the drawing time of each figure.
    """
    figure = Figure(figsize=(width_inches, height_inches))
    FigureCanvasAgg(figure)
    figure.subplots_adjust(**margins)
    return figure


def _to_svg(figure: Figure) -> str:
    """The figure as one `<svg>` element with ids unique to this figure."""
    buffer = io.StringIO()
    figure.savefig(buffer, format="svg", metadata={"Date": None})
    svg = buffer.getvalue()
    svg = svg[svg.index("<svg"):]    # drop the XML declaration and DOCTYPE: invalid inside HTML
    svg = re.sub(r"<metadata>.*?</metadata>\s*", "", svg, flags=re.DOTALL)   # RDF boilerplate
    # prefix from the content: unique per figure, yet the same report gives the same bytes
    return _prefix_ids(svg, "f" + hashlib.sha1(svg.encode()).hexdigest()[:8] + "-")


def _prefix_ids(svg: str, prefix: str) -> str:
    """Rename every id and every reference to it (url(#id), href="#id") with `prefix`."""
    svg = re.sub(r'\bid="([^"]+)"', rf'id="{prefix}\1"', svg)
    svg = re.sub(r"url\(#([^)]+)\)", rf"url(#{prefix}\1)", svg)
    return re.sub(r'href="#([^"]+)"', rf'href="#{prefix}\1"', svg)
