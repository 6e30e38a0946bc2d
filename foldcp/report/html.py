"""One self-contained HTML page that shows a screen's results at a glance.

`write_report` reads the Parquet tables of a results folder, draws the figures (inline SVG
from `foldcp.report.plots`) and writes a single file with no scripts and no network
resources, so it can be mailed, archived or opened from a cluster share as it is.
The file is written atomically: a reader sees the old report or the whole new one.

Tables may come from older runs with fewer columns: a missing optional column costs one
figure or one table cell (with a note saying so), never the report.
"""

from __future__ import annotations

import html
import math
import zipfile
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from foldcp.io import atomic_path
from foldcp.report import plots

UNTRAINED_BANNER = "UNTRAINED demo model — not a structure prediction"
MISSING = "—"
# (column, header, digits) of the top-hits table; digits None = not a number
HIT_COLUMNS = (
    ("rank", "rank", None),
    ("complex_id", "complex", None),
    ("proteins", "proteins", None),
    ("ranking_score", "ranking score", 3),
    ("iptm", "ipTM", 3),
    ("ipsae", "ipSAE", 3),
    ("pdockq2", "pDockQ2", 3),
    ("interchain_contacts", "contacts", 0),
    ("novel", "novel", None),
)
SCORE_BAR_COLUMNS = {"ranking_score", "iptm", "ipsae", "pdockq2"}   # 0-1 scores drawn as bars


@dataclass
class ScreenResults:
    """What the report needs from a results folder."""

    results_dir: Path
    complexes: pd.DataFrame     # every complex x sample
    best: pd.DataFrame          # best sample of each complex
    ranked: pd.DataFrame        # best samples in rank order, gaps filled from `best`
    failures: pd.DataFrame | None
    skipped: pd.DataFrame | None


def write_report(results_dir: str | Path, out_html: str | Path, top_n: int = 10,
                 title: str = "foldcp screen") -> Path:
    """Write the HTML report of the screen in `results_dir` to `out_html`; return its path.

    `top_n` hits get a row in the hits table and their own PAE / pLDDT figure.
    """
    if top_n < 0:
        raise ValueError(f"top_n must be 0 or more, not {top_n}")
    results = load_results(Path(results_dir))
    out_html = Path(out_html)
    page = render_page(results, top_n, title)
    with atomic_path(out_html) as temporary:     # temp file beside out_html, then os.replace
        temporary.write_text(page, encoding="utf-8")
    return out_html


# --- reading ------------------------------------------------------------------------------

def load_results(results_dir: Path) -> ScreenResults:
    """The screen's tables; complexes.parquet is required, the others are optional."""
    complexes = _read_table(results_dir, "complexes")
    if complexes is None:
        raise FileNotFoundError(f"{results_dir / 'complexes.parquet'} not found: "
                                "is this a foldcp results folder?")
    best = best_samples(complexes)
    return ScreenResults(
        results_dir=results_dir,
        complexes=complexes,
        best=best,
        ranked=ranked_hits(_read_table(results_dir, "ranked"), best),
        failures=_read_table(results_dir, "failures"),
        skipped=_read_table(results_dir, "skipped"),
    )


def best_samples(complexes: pd.DataFrame) -> pd.DataFrame:
    """One row per complex: the sample flagged best_sample, else the top ranking_score."""
    if complexes.empty:
        return complexes
    if "best_sample" in complexes.columns:
        flagged = complexes.loc[plots.is_set(complexes["best_sample"])]
        if not flagged.empty:
            return flagged
    top = complexes.groupby("complex_id")["ranking_score"].idxmax()
    return complexes.loc[top.to_numpy()]


def ranked_hits(ranked: pd.DataFrame | None, best: pd.DataFrame) -> pd.DataFrame:
    """ranked.parquet in rank order, with columns it lacks (pae_path, ipsae, ...) from `best`.

    Without ranked.parquet the ranking is rebuilt from the best samples.
    """
    if ranked is None:
        ranked = best.sort_values(["ranking_score", "complex_id"], ascending=[False, True])
        ranked = ranked.assign(rank=np.arange(1, len(ranked) + 1))
    missing = [c for c in best.columns if c not in ranked.columns]
    if missing and "complex_id" in ranked.columns:
        extra = best[["complex_id", *missing]].drop_duplicates("complex_id")
        ranked = ranked.merge(extra, on="complex_id", how="left")
    if "rank" in ranked.columns:
        ranked = ranked.sort_values("rank", kind="stable")
    return ranked.reset_index(drop=True)


def _read_table(results_dir: Path, name: str) -> pd.DataFrame | None:
    path = results_dir / f"{name}.parquet"
    return pd.read_parquet(path) if path.exists() else None


def _load_array(results_dir: Path, stored_path, key: str) -> np.ndarray | None:
    """Array `key` of an .npz named in a table, or None when it cannot be read."""
    path = _locate(results_dir, stored_path)
    if path is None:
        return None
    try:
        with np.load(path) as arrays:
            return np.asarray(arrays[key], dtype=float)
    except (OSError, KeyError, ValueError, zipfile.BadZipFile):
        return None


def _locate(results_dir: Path, stored_path) -> Path | None:
    """A table's file path as stored, or relative to the results folder if that exists."""
    if not isinstance(stored_path, str) or not stored_path:
        return None
    path = Path(stored_path)
    candidates = [path] if path.is_absolute() else [path, results_dir / path]
    return next((p for p in candidates if p.is_file()), None)


def parse_chain_lengths(value) -> list[int] | None:
    """'141,146' (or a list of ints) -> [141, 146]; None when absent or malformed."""
    if isinstance(value, str):
        parts = [p.strip() for p in value.split(",") if p.strip()]
    elif isinstance(value, (list, tuple, np.ndarray)):
        parts = list(value)
    else:
        return None
    try:
        lengths = [int(p) for p in parts]
    except (TypeError, ValueError):
        return None
    return lengths if lengths and all(n > 0 for n in lengths) else None


# --- the page -----------------------------------------------------------------------------

def render_page(results: ScreenResults, top_n: int, title: str) -> str:
    """The whole HTML document."""
    if results.best.empty:
        body = _empty_message(results)
    else:
        hits = results.ranked.head(top_n)
        body = _overview_section(results.best) + _hits_section(results, hits)
    return (
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
        f"<title>{_text(title)}</title>\n<style>{PAGE_STYLE}</style>\n</head>\n<body>\n"
        f"{_header(results, title)}\n<main>\n{body}\n</main>\n"
        "<footer>Written by foldcp. Scores are model confidences, not measurements.</footer>\n"
        "</body>\n</html>\n"
    )


def _header(results: ScreenResults, title: str) -> str:
    banner = (f'<div id="untrained-banner" class="banner" role="alert">{_text(UNTRAINED_BANNER)}'
              "</div>\n" if is_untrained(results) else "")
    cards = "".join(_stat_card(label, value, detail) for label, value, detail in _counts(results))
    return (f"<header>\n<h1>{_text(title)}</h1>\n"
            f'<p class="source">results: <code>{_text(str(results.results_dir))}</code></p>\n'
            f'{banner}<div id="counts" class="cards">{cards}</div>\n</header>')


def is_untrained(results: ScreenResults) -> bool:
    """True if any result row comes from the random-weight demo model."""
    return any(plots.is_set(frame["untrained"]).any()
               for frame in (results.complexes, results.ranked) if "untrained" in frame.columns)


def _counts(results: ScreenResults) -> list[tuple[str, object, str]]:
    """(label, value, detail) of each header card; value None = table absent."""
    best = results.best
    counts = [
        ("complexes folded", best["complex_id"].nunique() if not best.empty else 0,
         f"{len(results.complexes)} samples"),
        ("failed", _rows(results.failures), _reasons(results.failures, "status")),
        ("skipped", _rows(results.skipped), _reasons(results.skipped, "reason")),
    ]
    if "confident" in results.ranked.columns:
        counts.append(("confident", int(plots.is_set(results.ranked["confident"]).sum()),
                       "pass the screen's confidence thresholds"))
    if "novel" in best.columns:
        counts.append(("novel", int(plots.is_set(best["novel"]).sum()),
                       "not in the known interactions"))
    return counts


def _rows(frame: pd.DataFrame | None) -> int | None:
    return None if frame is None else len(frame)


def _reasons(frame: pd.DataFrame | None, column: str) -> str:
    """'3 out_of_memory · 1 failed': the leading word of each reason, counted."""
    if frame is None:
        return "table not found"
    if frame.empty or column not in frame.columns:
        return ""
    kinds = Counter(str(value).split(":")[0].strip() for value in frame[column].dropna())
    return " · ".join(f"{n} {kind}" for kind, n in kinds.most_common(4))


def _stat_card(label: str, value, detail: str) -> str:
    shown = MISSING if value is None else f"{value:,}"
    return (f'<div class="card" data-count="{_text(label)}"><span class="value">{_text(shown)}'
            f'</span><span class="label">{_text(label)}</span>'
            f'<span class="detail">{_text(detail)}</span></div>')


def _empty_message(results: ScreenResults) -> str:
    failed, skipped = _rows(results.failures), _rows(results.skipped)
    return (f'<p id="no-complexes" class="empty">No complexes were folded, so there is nothing '
            f"to plot. Failed: {_text(_count_text(failed))}; skipped: "
            f"{_text(_count_text(skipped))}. See failures.parquet and skipped.parquet in the "
            "results folder for the reasons.</p>")


def _count_text(count: int | None) -> str:
    return "unknown (table not found)" if count is None else str(count)


# --- figures ------------------------------------------------------------------------------

def _overview_section(best: pd.DataFrame) -> str:
    figures = [
        _figure('id="score-distributions"', "Score distributions over the best sample of "
                "each complex; the dashed line marks the median.",
                lambda: plots.score_distributions(best)),
        _figure('id="iptm-vs-contacts"', "ipTM against inter-chain contacts, one dot per "
                "complex. Confident interfaces sit top right.",
                lambda: plots.iptm_vs_contacts(best)),
        _figure('id="novel-vs-known"', "Ranking score of novel and known complexes.",
                lambda: plots.novel_vs_known(best)),
    ]
    return (f'<section id="overview">\n<h2>Overview</h2>\n{figures[0]}\n'
            f'<div class="pair">{figures[1]}{figures[2]}</div>\n</section>')


def _figure(attributes: str, caption: str, draw: Callable[[], str], classes: str = "plot",
            caption_first: bool = False) -> str:
    """<figure> with the drawn SVG, or with a note when the data cannot support it.

    `attributes` and `caption` are markup: callers escape the text they put in them.
    """
    try:
        content = draw()
    except plots.PlotUnavailable as reason:
        content = f'<p class="note">{_text(str(reason))}</p>'
    caption = f"<figcaption>{caption}</figcaption>"
    parts = (caption, content) if caption_first else (content, caption)
    return f'<figure class="{classes}" {attributes}>\n' + "\n".join(parts) + "\n</figure>"


def _hits_section(results: ScreenResults, hits: pd.DataFrame) -> str:
    if hits.empty:
        return ""
    figures = "\n".join(_hit_figure(results.results_dir, row, position)
                        for position, (_, row) in enumerate(hits.iterrows(), start=1))
    heading = "Top hit" if len(hits) == 1 else f"Top {len(hits)} hits"
    return (f'<section id="hits">\n<h2>{heading}</h2>\n{_hits_table(hits)}\n'
            f"{figures}\n</section>")


def _hit_figure(results_dir: Path, row: pd.Series, position: int) -> str:
    """PAE heatmap and pLDDT profile of one hit, captioned with its scores."""
    pae = _load_array(results_dir, row.get("pae_path"), "pae")
    plddt = _load_array(results_dir, row.get("plddt_path"), "plddt")
    if pae is not None and (pae.ndim != 2 or pae.shape[0] != pae.shape[1]):
        pae = None      # not an N x N matrix: not something we can draw as a PAE map
    if plddt is not None and plddt.ndim != 1:
        plddt = None
    chain_lengths = parse_chain_lengths(row.get("chain_lengths"))
    complex_id = str(row.get("complex_id", ""))
    attributes = (f'id="hit-{position}" data-rank="{_text(_cell(row, "rank", None))}" '
                  f'data-complex="{_text(complex_id)}"')
    return _figure(attributes, _hit_caption(row, pae, chain_lengths),
                   lambda: plots.hit_panels(pae, plddt, chain_lengths), classes="plot hit",
                   caption_first=True)


def _hit_caption(row: pd.Series, pae: np.ndarray | None, chain_lengths: list[int] | None) -> str:
    scores = " · ".join(f"{header} {_cell(row, column, digits)}"
                        for column, header, digits in HIT_COLUMNS[3:7] if column in row.index)
    text = (f"<strong>#{_text(_cell(row, 'rank', None))} {_text(str(row.get('complex_id')))}"
            f"</strong> — {_text(_cell(row, 'proteins', None))} · {_text(scores)}")
    if chain_lengths is None:
        text += ' <span class="note">(chain boundaries not drawn: chain lengths unknown)</span>'
    elif pae is not None and sum(chain_lengths) != len(pae):
        text += (' <span class="note">(chain boundaries not drawn: chain lengths '
                 f"{_text(','.join(map(str, chain_lengths)))} do not add up to {len(pae)} "
                 "tokens)</span>")
    return text


# --- hits table ---------------------------------------------------------------------------

def _hits_table(hits: pd.DataFrame) -> str:
    head = "".join(f'<th scope="col">{_text(header)}</th>' for _, header, _ in HIT_COLUMNS)
    rows = "\n".join(_hit_row(row, position)
                     for position, (_, row) in enumerate(hits.iterrows(), start=1))
    return (f'<table id="top-hits">\n<thead><tr>{head}</tr></thead>\n<tbody>\n{rows}\n'
            "</tbody>\n</table>")


def _hit_row(row: pd.Series, position: int) -> str:
    cells = "".join(_hit_cell(row, column, digits, position) for column, _, digits in HIT_COLUMNS)
    return (f'<tr class="{_novelty(row)}" data-rank="{_text(_cell(row, "rank", None))}" '
            f'data-complex="{_text(str(row.get("complex_id", "")))}">{cells}</tr>')


def _hit_cell(row: pd.Series, column: str, digits: int | None, position: int) -> str:
    text = _text(_cell(row, column, digits))
    if column == "complex_id":
        return f'<td class="complex"><a href="#hit-{position}">{text}</a></td>'
    if column == "novel":
        label = _novelty(row)
        return f'<td><span class="badge {label}">{_text(label)}</span></td>'
    if column in SCORE_BAR_COLUMNS and _is_number(row.get(column)) and 0 <= row[column] <= 1:
        fill = float(row[column]) * 100
        return f'<td class="num bar" style="--fill: {fill:.1f}%">{text}</td>'
    numeric = digits is not None or column == "rank"
    return f'<td class="num">{text}</td>' if numeric else f"<td>{text}</td>"


def _novelty(row: pd.Series) -> str:
    """'novel', 'known' or 'unknown' (no novel column, or no value)."""
    value = row.get("novel")
    if _is_missing(value):
        return "unknown"
    return "novel" if bool(value) else "known"


def _cell(row: pd.Series, column: str, digits: int | None) -> str:
    """A table value as text: fixed decimals for scores, '—' for missing."""
    value = row.get(column)
    if isinstance(value, (list, tuple, np.ndarray)):
        return ";".join(map(str, value))
    if _is_missing(value):
        return MISSING
    if digits is not None and _is_number(value):
        return f"{float(value):,.{digits}f}"
    return str(value)


def _is_missing(value) -> bool:
    """None, NaN or pd.NA (a scalar cell with no value)."""
    return value is None or (np.ndim(value) == 0 and bool(pd.isna(value)))


def _is_number(value) -> bool:
    return (isinstance(value, (int, float, np.integer, np.floating))
            and not isinstance(value, bool) and math.isfinite(float(value)))


def _text(value: str) -> str:
    """Text escaped for HTML content and attribute values."""
    return html.escape(value, quote=True)


PAGE_STYLE = """
:root { --ink: #1d2330; --muted: #5b6475; --line: #dde1e8; --novel: #D55E00;
        --known: #0072B2; --paper: #ffffff; --ground: #f4f6f9; }
* { box-sizing: border-box; }
body { margin: 0; background: var(--ground); color: var(--ink);
       font: 15px/1.45 "DejaVu Sans", "Liberation Sans", Arial, sans-serif; }
header, main, footer { max-width: 1140px; margin: 0 auto; padding: 0 20px; }
header { padding-top: 24px; }
h1 { margin: 0 0 4px; font-size: 28px; }
h2 { margin: 32px 0 12px; font-size: 20px; }
.source { margin: 0 0 16px; color: var(--muted); font-size: 13px; }
.banner { margin: 0 0 16px; padding: 14px 18px; border-radius: 8px; color: #fff;
          font-size: 20px; font-weight: bold; letter-spacing: 0.02em; text-align: center;
          background: repeating-linear-gradient(135deg, #b00020 0 22px, #8c0018 22px 44px); }
.cards { display: grid; grid-template-columns: repeat(auto-fit, minmax(160px, 1fr)); gap: 12px; }
.card { background: var(--paper); border: 1px solid var(--line); border-radius: 10px;
        padding: 12px 16px; display: flex; flex-direction: column; }
.card .value { font-size: 30px; font-weight: bold; }
.card .label { font-size: 13px; text-transform: uppercase; letter-spacing: 0.05em;
               color: var(--muted); }
.card .detail { font-size: 12px; color: var(--muted); min-height: 1.2em; }
figure.plot { margin: 0 0 16px; background: var(--paper); border: 1px solid var(--line);
              border-radius: 10px; padding: 12px; }
figure.plot svg { display: block; width: 100%; height: auto; }
figcaption { margin-top: 6px; font-size: 13px; color: var(--muted); }
figcaption strong { color: var(--ink); }
figure.hit figcaption { margin: 0 0 4px; font-size: 14px; }
.pair { display: grid; grid-template-columns: 1fr 1fr; gap: 16px; align-items: start; }
.note { color: var(--muted); font-style: italic; }
.empty { background: var(--paper); border: 1px dashed var(--muted); border-radius: 10px;
         padding: 28px; font-size: 18px; text-align: center; margin-top: 24px; }
table { width: 100%; border-collapse: collapse; background: var(--paper);
        border: 1px solid var(--line); border-radius: 10px; overflow: hidden;
        margin-bottom: 20px; font-size: 14px; }
th, td { padding: 7px 10px; border-bottom: 1px solid var(--line); text-align: left; }
th { background: #e9edf3; font-size: 12px; text-transform: uppercase; letter-spacing: 0.04em; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
td.bar { background: linear-gradient(90deg, #cfe3f3 var(--fill), transparent var(--fill)); }
td.complex a { color: var(--ink); font-weight: bold; }
tr.novel td:first-child { box-shadow: inset 4px 0 var(--novel); }
tr.known td:first-child { box-shadow: inset 4px 0 var(--known); }
.badge { display: inline-block; padding: 1px 8px; border-radius: 10px; font-size: 12px;
         color: #fff; background: var(--muted); }
.badge.novel { background: var(--novel); }
.badge.known { background: var(--known); }
footer { margin: 32px auto; color: var(--muted); font-size: 12px; }
"""
