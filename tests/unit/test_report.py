"""foldcp.report: the HTML report of a screen, on small synthetic result tables.

The tables mimic a finished screen (6 complexes x 2 samples, known and novel, PAE / pLDDT
.npz files); the checks read the page as a browser would: its figures, its hits table,
its banner, and (with headless Chromium) a screenshot of it.
"""

from __future__ import annotations

import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from foldcp.report import plots, write_report
from foldcp.report.html import UNTRAINED_BANNER, parse_chain_lengths

PLOT_IDS = ("score-distributions", "iptm-vs-contacts", "novel-vs-known")
CHROMIUM = "/usr/bin/chromium"
SCREEN_SIZE = (1200, 3000)


# --- synthetic screen ---------------------------------------------------------------------

def _pae(rng, lengths: list[int]) -> np.ndarray:
    """Low error inside each chain, high between chains, plus noise."""
    chain_of = np.repeat(np.arange(len(lengths)), lengths)
    same_chain = chain_of[:, None] == chain_of[None, :]
    pae = np.where(same_chain, 3.0, 18.0) + rng.uniform(0, 8, (len(chain_of),) * 2)
    return pae.astype(np.float32)


def _plddt(rng, tokens: int) -> np.ndarray:
    """A smooth profile in [0, 1], like per-residue confidence along a chain."""
    wave = 0.7 + 0.25 * np.sin(np.linspace(0, rng.uniform(3, 9), tokens))
    return np.clip(wave + rng.normal(0, 0.03, tokens), 0, 1).astype(np.float32)


def make_screen(results: Path, untrained: bool = False, complexes: int = 6,
                samples: int = 2) -> pd.DataFrame:
    """Write complexes/ranked/chain_pairs/failures/skipped tables + npz files; return ranked."""
    rng = np.random.default_rng(11)
    predictions = results / "predictions"
    rows = []
    for index in range(complexes):
        complex_id = f"P{index:02d}A+Q{index:02d}B"
        lengths = [int(n) for n in rng.integers(20, 60, 2)]
        folder = predictions / complex_id
        folder.mkdir(parents=True)
        for sample in range(samples):
            pae_path, plddt_path = folder / f"pae_{sample}.npz", folder / f"plddt_{sample}.npz"
            np.savez_compressed(pae_path, pae=_pae(rng, lengths))
            np.savez_compressed(plddt_path, plddt=_plddt(rng, sum(lengths)))
            iptm, ptm = rng.uniform(0.2, 0.95), rng.uniform(0.3, 0.9)
            known = index % 3 == 0
            rows.append({
                "complex_id": complex_id, "sample": sample,
                "chains": f"P{index:02d}A+Q{index:02d}B",
                "iptm": iptm, "ptm": ptm, "ipsae": rng.uniform(0, iptm),
                "pdockq": rng.uniform(0, 0.7), "pdockq2": rng.uniform(0, 0.6),
                "lis": rng.uniform(0, 0.5), "complex_plddt": rng.uniform(0.5, 0.9),
                "ranking_score": 0.8 * iptm + 0.2 * ptm,
                "interchain_contacts": int(rng.integers(0, 400)),
                "best_sample": False, "known": known, "novel": not known,
                "untrained": untrained, "model_path": str(folder / f"model_{sample}.cif"),
                "pae_path": str(pae_path), "plddt_path": str(plddt_path),
                "tokens": sum(lengths), "chain_lengths": ",".join(map(str, lengths)),
                "proteins": f"P{index:02d}A;Q{index:02d}B",
            })
    table = pd.DataFrame(rows)
    best_index = table.groupby("complex_id")["ranking_score"].idxmax()
    table.loc[best_index, "best_sample"] = True
    ranked = table[table["best_sample"]].sort_values("ranking_score", ascending=False)
    ranked = ranked.assign(rank=np.arange(1, len(ranked) + 1), confident=ranked["iptm"] >= 0.6)
    ranked = ranked[["rank", "complex_id", "chains", "proteins", "ranking_score", "iptm", "ptm",
                     "ipsae", "pdockq2", "complex_plddt", "interchain_contacts", "confident",
                     "known", "novel", "untrained", "model_path", "pae_path", "plddt_path",
                     "chain_lengths"]].reset_index(drop=True)
    table.drop(columns=["chain_lengths", "proteins"]).to_parquet(results / "complexes.parquet")
    ranked.to_parquet(results / "ranked.parquet")
    pd.DataFrame({"complex_id": ["X1", "X1"], "sample": [0, 0], "chain_a": ["A", "A"],
                  "chain_b": ["B", "B"]}).to_parquet(results / "chain_pairs.parquet")
    pd.DataFrame({"complex_id": ["F1"], "batch_id": ["b0"], "status": ["out_of_memory"],
                  "error": ["CUDA out of memory"]}).to_parquet(results / "failures.parquet")
    pd.DataFrame({"complex_id": ["S1", "S2"], "chains": ["S1", "S2"], "tokens": [9000, 9100],
                  "reason": ["too_large: 9000 tokens", "too_large: 9100 tokens"]}
                 ).to_parquet(results / "skipped.parquet")
    return ranked


def write_empty_screen(results: Path) -> None:
    """A screen where nothing was folded: every table present, with no rows."""
    results.mkdir(parents=True, exist_ok=True)
    for name, columns in {
        "complexes": ["complex_id", "sample", "iptm", "ranking_score", "best_sample", "untrained"],
        "ranked": ["rank", "complex_id", "ranking_score", "iptm"],
        "chain_pairs": ["complex_id", "sample"],
        "failures": ["complex_id", "status"],
        "skipped": ["complex_id", "reason"],
    }.items():
        pd.DataFrame(columns=columns).to_parquet(results / f"{name}.parquet")


# --- reading the page ---------------------------------------------------------------------

class PageOutline(HTMLParser):
    """Figures (attributes, holds an <svg>?), hits-table rows, element ids and visible text."""

    def __init__(self, page: str):
        super().__init__()
        self.figures: list[dict] = []
        self.table_rows: list[dict] = []
        self.ids: list[str] = []
        self.tags: list[str] = []
        self.text: list[str] = []
        self.external: list[str] = []     # src/href values that would need the network
        self._open_figure: dict | None = None
        self._in_hits_table = False
        self.feed(page)

    def handle_starttag(self, tag, attrs):
        attributes = dict(attrs)
        self.tags.append(tag)
        if "id" in attributes:
            self.ids.append(attributes["id"])
        self.external += [value for name, value in attrs if name in ("src", "href", "xlink:href")
                          and value and value.startswith(("http:", "https:", "//"))]
        if tag == "figure":
            self._open_figure = {**attributes, "svg": False}
            self.figures.append(self._open_figure)
        elif tag == "svg" and self._open_figure is not None:
            self._open_figure["svg"] = True
        elif tag == "table" and attributes.get("id") == "top-hits":
            self._in_hits_table = True
        elif tag == "tr" and self._in_hits_table and "data-complex" in attributes:
            self.table_rows.append(attributes)

    def handle_endtag(self, tag):
        if tag == "figure":
            self._open_figure = None
        elif tag == "table":
            self._in_hits_table = False

    def handle_data(self, data):
        self.text.append(data)

    def figure(self, figure_id: str) -> dict:
        return next(f for f in self.figures if f.get("id") == figure_id)

    def hits(self) -> list[dict]:
        return [f for f in self.figures if "hit" in f.get("class", "").split()]


def outline_of(path: Path) -> PageOutline:
    return PageOutline(path.read_text(encoding="utf-8"))


@pytest.fixture
def quick_plots(monkeypatch):
    """Empty SVGs instead of matplotlib drawings, for tests about the page around them."""
    for name in ("score_distributions", "iptm_vs_contacts", "novel_vs_known", "hit_panels"):
        monkeypatch.setattr(f"foldcp.report.plots.{name}", lambda *args: "<svg></svg>")


@pytest.fixture(scope="module")
def screen_report(tmp_path_factory) -> tuple[Path, pd.DataFrame]:
    """One full report (top 4 of 6 complexes), shared by the tests that only read it."""
    results = tmp_path_factory.mktemp("screen")
    ranked = make_screen(results)
    return write_report(results, results / "report.html", top_n=4), ranked


# --- the page -----------------------------------------------------------------------------

def test_report_has_every_plot_and_one_figure_per_top_hit(screen_report):
    report, ranked = screen_report
    page = outline_of(report)
    for plot_id in PLOT_IDS:
        assert page.figure(plot_id)["svg"], plot_id
    hits = page.hits()
    assert [h["data-complex"] for h in hits] == list(ranked["complex_id"][:4])
    assert all(h["svg"] for h in hits)
    assert not {"script", "link", "img", "iframe", "object"} & set(page.tags)
    assert page.external == [] and "url(http" not in report.read_text()


def test_every_element_id_is_unique_and_figures_are_reproducible(screen_report):
    report, _ = screen_report
    ids = outline_of(report).ids
    assert len(ids) == len(set(ids)), "inline SVGs share one id namespace: ids must not repeat"
    best = pd.read_parquet(report.parent / "ranked.parquet")
    assert plots.novel_vs_known(best) == plots.novel_vs_known(best)


def test_hits_table_lists_the_top_hits_in_rank_order(screen_report):
    report, ranked = screen_report
    rows = outline_of(report).table_rows
    assert [r["data-complex"] for r in rows] == list(ranked["complex_id"][:4])
    assert [r["data-rank"] for r in rows] == ["1", "2", "3", "4"]
    assert [r["class"] for r in rows] == ["novel" if n else "known" for n in ranked["novel"][:4]]


def test_header_counts_folded_failed_and_skipped(screen_report):
    report, _ = screen_report
    text = " ".join(outline_of(report).text)
    assert "complexes folded" in text and "12 samples" in text
    assert "1 out_of_memory" in text and "2 too_large" in text


@pytest.mark.parametrize("untrained", [True, False])
def test_untrained_banner_only_for_the_demo_model(tmp_path, quick_plots, untrained):
    make_screen(tmp_path, untrained=untrained, complexes=2)
    page = outline_of(write_report(tmp_path, tmp_path / "r.html", top_n=1))
    assert ("untrained-banner" in page.ids) == untrained
    assert (UNTRAINED_BANNER in "".join(page.text)) == untrained


def test_more_hits_asked_than_complexes_shows_them_all(tmp_path, quick_plots):
    ranked = make_screen(tmp_path, complexes=3)
    page = outline_of(write_report(tmp_path, tmp_path / "r.html", top_n=10))
    assert [h["data-complex"] for h in page.hits()] == list(ranked["complex_id"])


def test_empty_tables_give_a_clear_message(tmp_path):
    write_empty_screen(tmp_path)
    report = write_report(tmp_path, tmp_path / "r.html")
    page = outline_of(report)
    assert "no-complexes" in page.ids
    assert "No complexes were folded" in "".join(page.text)
    assert page.figures == [] and page.table_rows == []


def test_missing_optional_columns_cost_a_figure_not_the_report(tmp_path):
    make_screen(tmp_path, complexes=3)
    complexes = pd.read_parquet(tmp_path / "complexes.parquet")
    complexes.drop(columns=["ipsae", "novel", "known"]).to_parquet(tmp_path / "complexes.parquet")
    ranked = pd.read_parquet(tmp_path / "ranked.parquet")
    ranked.drop(columns=["ipsae", "novel", "known", "chain_lengths", "pae_path", "plddt_path"]
                ).to_parquet(tmp_path / "ranked.parquet")
    (tmp_path / "skipped.parquet").unlink()
    page = outline_of(write_report(tmp_path, tmp_path / "r.html", top_n=1))
    text = "".join(page.text)
    assert not page.figure("novel-vs-known")["svg"] and "no novel column" in text
    assert page.figure("score-distributions")["svg"] and page.figure("iptm-vs-contacts")["svg"]
    assert [h["svg"] for h in page.hits()] == [True]   # PAE/pLDDT paths from complexes
    assert "chain lengths unknown" in text and "table not found" in text


def test_text_is_escaped(tmp_path, quick_plots):
    make_screen(tmp_path, complexes=2)
    ranked = pd.read_parquet(tmp_path / "ranked.parquet")
    ranked.loc[0, "proteins"] = "<b>P1</b>;Q&2"
    ranked.to_parquet(tmp_path / "ranked.parquet")
    report = write_report(tmp_path, tmp_path / "r.html", title="<i>screen</i> & co", top_n=2)
    page = outline_of(report)
    assert "b" not in page.tags and "i" not in page.tags
    assert "<b>P1</b>;Q&2" in "".join(page.text) and "<i>screen</i> & co" in "".join(page.text)


def test_report_is_replaced_whole_and_leaves_no_temp_files(tmp_path, quick_plots):
    make_screen(tmp_path, complexes=2)
    out = tmp_path / "site" / "report.html"
    out.parent.mkdir()
    out.write_text("old report")
    assert write_report(tmp_path, out, top_n=1) == out
    assert out.read_text().startswith("<!DOCTYPE html>")
    assert [p.name for p in out.parent.iterdir()] == ["report.html"]


def test_missing_complexes_table_is_an_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="complexes.parquet"):
        write_report(tmp_path, tmp_path / "r.html")


def test_chain_lengths_and_boundaries():
    assert parse_chain_lengths("141,146") == [141, 146]
    assert parse_chain_lengths(np.array([3, 4])) == [3, 4]
    assert parse_chain_lengths(None) is None and parse_chain_lengths("12,x") is None
    assert plots.chain_boundaries([141, 146], 287) == [141]
    assert plots.chain_boundaries([141, 146], 300) == []    # lengths that don't fit: no lines


def test_scores_outside_zero_to_one_get_their_own_axis_range():
    assert plots.score_axis_range(pd.Series([0.2, 0.9, np.nan])) == (0.0, 1.0)
    low, high = plots.score_axis_range(pd.Series([-2.0, 40.0]))
    assert low < -2.0 and high > 40.0


# --- what a person sees -------------------------------------------------------------------

def read_png(path: Path) -> np.ndarray:
    """RGB pixels as uint8 [height, width, 3], with Pillow if present, else matplotlib."""
    try:
        from PIL import Image
        with Image.open(path) as image:
            return np.asarray(image.convert("RGB"))
    except ImportError:
        import matplotlib.image
        pixels = matplotlib.image.imread(path)[..., :3]
        return np.round(pixels * 255).astype(np.uint8)


def test_screenshot_in_headless_chromium_is_not_blank(screen_report, tmp_path):
    chromium = shutil.which("chromium") or (CHROMIUM if Path(CHROMIUM).exists() else None)
    if chromium is None:
        pytest.skip("chromium not installed (Debian package 'chromium'); CI installs it")
    report, _ = screen_report
    screenshot = tmp_path / "report.png"
    browser = subprocess.run(
        [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
         f"--user-data-dir={tmp_path / 'profile'}", f"--screenshot={screenshot}",
         f"--window-size={SCREEN_SIZE[0]},{SCREEN_SIZE[1]}", report.resolve().as_uri()],
        check=False, capture_output=True, text=True, timeout=120,
    )
    assert browser.returncode == 0, f"chromium failed:\n{browser.stderr[-2000:]}"
    assert screenshot.exists()
    pixels = read_png(screenshot)
    assert pixels.shape[:2] == (SCREEN_SIZE[1], SCREEN_SIZE[0])
    packed = (pixels[..., 0].astype(np.uint32) << 16) | (pixels[..., 1].astype(np.uint32) << 8) \
        | pixels[..., 2]
    assert len(np.unique(packed)) > 200, "screenshot has too few colours: blank page?"
    background = np.bincount(packed.ravel()).max() / packed.size
    assert background < 0.9, "screenshot is almost one colour: blank page?"
