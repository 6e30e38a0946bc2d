"""Result tables from finished predictions (documented column by column in README.md).

Per batch (`batch_tables`), then merged (`merge_tables`):
- complexes:   one row per complex x sample (best_sample marks the top ranking_score)
- chain_pairs: one row per complex x sample x unordered chain pair (foldcp.metrics.score)
- interface_residues: one row per complex x sample x chain pair x interface residue
- failures:    complexes whose prediction failed (status, error)

Every complex of a batch's status table ends in exactly one of complexes (all its samples)
or failures: a complex whose files fail their done.json checks is `corrupt_output` (truncated
or altered: refolded when its batch runs again) or `incomplete_output` (no done.json), and one
whose intact files cannot be scored is `analysis_failed`; either way the batch's other
complexes are unaffected.
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

import numpy as np
import pandas as pd

from foldcp.errors import ConfigError
from foldcp.metrics.score import PAIR_COLUMNS as METRIC_PAIR_COLUMNS
from foldcp.metrics.score import RESIDUE_COLUMNS, ScoreSettings, score_prediction
from foldcp.runner.outputs import check_outputs

SCHEMA_VERSION = 2

#: Named ranking scores (weights over complexes-table columns); `analysis.ranking_score`
#: takes one of these names or its own {column: weight} mapping.
NAMED_RANKING_SCORES = {
    "ipsae_iptm": {"ipsae": 0.5, "iptm": 0.5},
    "iptm_ptm": {"iptm": 0.8, "ptm": 0.2},
    "iptm": {"iptm": 1.0},
    "ipsae": {"ipsae": 1.0},
    "confidence_score": {"confidence_score": 1.0},
}
#: Complex-level columns a ranking score or a `confident` threshold may use.
RANKABLE = ("iptm", "ptm", "confidence_score", "complex_plddt", "complex_iplddt", "mean_plddt",
            "ipsae", "ipsae_d0chn", "ipsae_d0dom", "pdockq", "pdockq2", "lis", "lia",
            "interchain_contacts", "heavy_atom_contacts")


def ranking_weights(spec) -> dict[str, float]:
    """{column: weight} from a score name or a mapping (columns checked against RANKABLE)."""
    weights = NAMED_RANKING_SCORES.get(spec) if isinstance(spec, str) else dict(spec)
    if weights is None:
        raise ConfigError(f"analysis.ranking_score: unknown score {spec!r} "
                          f"(named scores: {', '.join(NAMED_RANKING_SCORES)}, or a mapping)")
    unknown = sorted(set(weights) - set(RANKABLE))
    if unknown or not weights:
        raise ConfigError(f"analysis.ranking_score: unknown column(s) {unknown} (use {', '.join(RANKABLE)})")
    return weights


def ranking_score(row: dict, weights: dict[str, float]) -> float:
    """Weighted sum of the row's columns; a missing value (NaN, e.g. no chain pair) counts 0."""
    total = 0.0
    for column, weight in weights.items():
        value = row.get(column)
        total += weight * (0.0 if value is None or value != value else float(value))
    return total


def score_settings(analysis: dict) -> ScoreSettings:
    return ScoreSettings(
        pae_cutoff=analysis["pae_cutoff"], contact_cutoff=analysis["contact_cutoff"],
        heavy_contact_cutoff=analysis["heavy_atom_contact_cutoff"],
        clash_cutoff=analysis["clash_cutoff"],
    )


def _pair_summary(pairs: pd.DataFrame) -> dict:
    """Complex-level interface values: the best chain pair's scores, summed counts."""
    if pairs.empty:
        return {name: np.nan for name in ("ipsae", "ipsae_d0chn", "ipsae_d0dom", "pdockq", "pdockq2",
                                          "lis", "lia", "interface_plddt")} | {
            "interchain_contacts": 0, "heavy_atom_contacts": 0, "clashes": 0}
    best = {name: float(pairs[name].max()) for name in
            ("ipsae", "ipsae_d0chn", "ipsae_d0dom", "pdockq", "pdockq2", "lis", "lia")}
    best["interface_plddt"] = float(pairs.loc[pairs["ipsae"].idxmax(), "interface_plddt"])
    return best | {
        "interchain_contacts": int(pairs["contacts"].sum()),
        "heavy_atom_contacts": int(pairs["heavy_atom_contacts"].sum()),
        "clashes": int(pairs["clashes"].sum()),
    }


class UnreadableOutput(Exception):
    """A prediction file that could not be read or scored (names the file)."""


@contextlib.contextmanager
def _reading(*paths: Path):
    try:
        yield
    except Exception as error:
        names = " / ".join(p.name for p in paths)
        raise UnreadableOutput(f"{names}: {type(error).__name__}: {error}") from error


def msa_summary(manifest: dict) -> dict:
    """msa_mode, msa_depth (the shallowest chain's own MSA rows, 1 = single sequence) and
    msa_fallback (a chain that had no MSA ran single-sequence) from done.json."""
    msa = manifest.get("msa") or {}
    chains = msa.get("chains") or []
    return {
        "msa_mode": msa.get("mode", "none"),
        "msa_depth": min((int(c["protein_msa_rows"]) for c in chains), default=1),
        "msa_fallback": any(bool(c.get("fallback")) for c in chains),
    }


def complex_rows(directory: Path, batch_id: str, analysis: dict) -> tuple[list[dict], list[dict], list[dict]]:
    """Rows of the complexes, chain_pairs and interface_residues tables for one finished complex."""
    with _reading(directory / "done.json"):
        manifest = json.loads((directory / "done.json").read_text())
    chains = manifest["chains"]
    protein_of = {c["chain"]: c["protein_id"] for c in chains}
    weights = ranking_weights(analysis["ranking_score"])
    settings = score_settings(analysis)
    untrained = bool(manifest["untrained"])
    complexes, pairs, residues = [], [], []
    for sample in range(manifest["samples"]):
        confidence_path = directory / f"confidence_model_{sample}.json"
        with _reading(confidence_path):
            confidence = json.loads(confidence_path.read_text())
        model_path = directory / f"model_{sample}.cif"
        pae_path, plddt_path = directory / f"pae_model_{sample}.npz", directory / f"plddt_model_{sample}.npz"
        with _reading(plddt_path):
            plddt = np.load(plddt_path)["plddt"]
        with _reading(model_path, pae_path):
            report = score_prediction(model_path, pae_path, plddt, confidence["pair_chains_iptm"], settings)
        row = {
            "complex_id": manifest["complex_id"],
            "chains": manifest["spec"],
            "batch_id": batch_id,
            "sample": sample,
            "proteins": sorted(set(protein_of.values())),
            "num_chains": len(chains),
            "chain_lengths": ",".join(str(c["end"] - c["start"] + 1) for c in chains),
            "tokens": manifest["tokens"],
            "iptm": confidence["iptm"],
            "ptm": confidence["ptm"],
            "complex_plddt": confidence["complex_plddt"],
            "complex_iplddt": confidence["complex_iplddt"],
            "confidence_score": confidence["confidence_score"],
            "mean_plddt": float(plddt.mean()),
        } | msa_summary(manifest) | _pair_summary(report.pairs)
        row |= {
            "ranking_score": ranking_score(row, weights),
            "best_sample": False,
            "untrained": untrained,
            "model_path": str(model_path),
            "pae_path": str(pae_path),
            "plddt_path": str(plddt_path),
        }
        complexes.append(row)
        ids = {"complex_id": manifest["complex_id"], "sample": sample}
        for pair in report.pairs.to_dict("records"):
            pairs.append(ids | {"protein_a": protein_of.get(pair["chain_a"], ""),
                                "protein_b": protein_of.get(pair["chain_b"], "")}
                         | pair | {"best_sample": False, "untrained": untrained})
        for residue in report.residues.to_dict("records"):
            residues.append(ids | {"protein": protein_of.get(residue["chain"], "")} | residue
                            | {"best_sample": False})
    best = int(np.argmax([row["ranking_score"] for row in complexes]))
    complexes[best]["best_sample"] = True
    for row in pairs + residues:
        row["best_sample"] = row["sample"] == best
    return complexes, pairs, residues


COMPLEX_COLUMNS = [
    "complex_id", "chains", "batch_id", "sample", "proteins", "num_chains", "chain_lengths",
    "tokens", "msa_mode", "msa_depth", "msa_fallback", "iptm", "ptm", "complex_plddt", "complex_iplddt", "confidence_score", "mean_plddt",
    "ipsae", "ipsae_d0chn", "ipsae_d0dom", "pdockq", "pdockq2", "lis", "lia", "interface_plddt",
    "interchain_contacts", "heavy_atom_contacts", "clashes", "ranking_score", "best_sample",
    "untrained", "model_path", "pae_path", "plddt_path",
]
PAIR_COLUMNS = (["complex_id", "sample", "protein_a", "protein_b"] + METRIC_PAIR_COLUMNS
                + ["best_sample", "untrained"])
INTERFACE_COLUMNS = ["complex_id", "sample", "protein"] + RESIDUE_COLUMNS + ["best_sample"]
FAILURE_COLUMNS = ["complex_id", "batch_id", "status", "error"]


def batch_tables(
    status_path: str | Path, predictions_dir: str | Path, analysis: dict
) -> dict[str, pd.DataFrame]:
    """complexes / chain_pairs / failures rows for one batch, from its status table."""
    status = pd.read_parquet(status_path)
    predictions_dir = Path(predictions_dir)
    ranking_weights(analysis["ranking_score"])  # a config error stops here, not per complex
    complexes, pairs, residues, failures = [], [], [], []

    def failed(row, state: str, error: str) -> None:
        failures.append({"complex_id": row.complex_id, "batch_id": row.batch_id,
                         "status": state, "error": error[:2000]})

    for row in status.itertuples():
        directory = predictions_dir / row.complex_id
        if row.status not in ("ok", "already_done"):
            failed(row, row.status, row.error or "prediction failed")
            continue
        problem = check_outputs(directory)
        if problem is not None:
            state = "incomplete_output" if problem.startswith("no done.json") else "corrupt_output"
            failed(row, state, f"{directory}: {problem}")
            continue
        try:
            c_rows, p_rows, r_rows = complex_rows(directory, row.batch_id, analysis)
        except UnreadableOutput as error:  # one unreadable complex must not sink the batch
            failed(row, "analysis_failed", f"{directory}: {error}")
            continue
        complexes += c_rows
        pairs += p_rows
        residues += r_rows
    return {
        "complexes": pd.DataFrame(complexes, columns=COMPLEX_COLUMNS),
        "chain_pairs": pd.DataFrame(pairs, columns=PAIR_COLUMNS),
        "interface_residues": pd.DataFrame(residues, columns=INTERFACE_COLUMNS),
        "failures": pd.DataFrame(failures, columns=FAILURE_COLUMNS),
    }


def read_known_interactions(path: str | Path | None) -> set[frozenset]:
    """Unordered protein-ID pairs from a TSV (first two columns; header 'a b' optional)."""
    if not path:
        return set()
    frame = pd.read_csv(path, sep="\t", comment="#", header=None, dtype=str)
    pairs = {frozenset((a.strip(), b.strip())) for a, b in zip(frame[0], frame[1])}
    pairs.discard(frozenset(("a", "b")))
    return pairs


def annotate_known(complexes: pd.DataFrame, known: set[frozenset]) -> pd.DataFrame:
    """known = every protein pair of the complex (a self pair for homomers) is a known one."""
    def is_known(proteins, num_chains) -> bool:
        proteins = list(proteins)
        if len(proteins) == 1:
            return num_chains > 1 and frozenset(proteins) in known
        return all(frozenset((a, b)) in known
                   for i, a in enumerate(proteins) for b in proteins[i + 1:])

    complexes = complexes.copy()
    complexes["known"] = [is_known(p, n) for p, n in zip(complexes["proteins"], complexes["num_chains"])]
    complexes["novel"] = ~complexes["known"]
    return complexes


def confident_mask(frame: pd.DataFrame, thresholds: dict[str, float]) -> pd.Series:
    """True where every configured metric reaches its threshold (NaN never does)."""
    unknown = sorted(set(thresholds) - set(RANKABLE))
    if unknown:
        raise ConfigError(f"analysis.confident: unknown column(s) {unknown} (use {', '.join(RANKABLE)})")
    mask = pd.Series(True, index=frame.index)
    for column, minimum in thresholds.items():
        mask &= frame[column].astype(float) >= minimum
    return mask


RANKED_COLUMNS = [
    "rank", "complex_id", "chains", "proteins", "ranking_score", "iptm", "ptm", "ipsae", "pdockq",
    "pdockq2", "lis", "complex_plddt", "interface_plddt", "interchain_contacts", "clashes",
    "confident", "known", "novel", "untrained", "chain_lengths", "model_path", "pae_path",
    "plddt_path",
]


def ranked_table(complexes: pd.DataFrame, confident: dict[str, float]) -> pd.DataFrame:
    """Best sample of each complex, highest ranking_score first, with a 1-based rank."""
    # .loc with an explicit bool mask: on an empty (object-typed) table plain [] would pick
    # columns, not rows
    best = complexes.loc[complexes["best_sample"].astype(bool)].sort_values(
        ["ranking_score", "complex_id"], ascending=[False, True]
    )
    best = best.assign(
        rank=np.arange(1, len(best) + 1),
        confident=confident_mask(best, confident),
        proteins=best["proteins"].map(lambda p: ";".join(p)),
    )
    return best[RANKED_COLUMNS].reset_index(drop=True)
