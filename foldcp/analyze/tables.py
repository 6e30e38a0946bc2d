"""Result tables from finished predictions (documented column by column in README.md).

Per batch (`batch_tables`), then merged (`merge_tables`):
- complexes:   one row per complex x sample (best_sample marks the top ranking_score)
- chain_pairs: one row per complex x sample x unordered chain pair
- failures:    complexes whose prediction failed (status, error)
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from foldcp.metrics.contacts import structure_contacts
from foldcp.runner.outputs import is_done

SCHEMA_VERSION = 1


def ranking_score(name: str, iptm: float, ptm: float, confidence_score: float) -> float:
    """iptm_ptm = 0.8 ipTM + 0.2 pTM (AlphaFold-Multimer model confidence, Evans et al. 2021)."""
    if name == "iptm_ptm":
        return 0.8 * iptm + 0.2 * ptm
    if name == "iptm":
        return iptm
    if name == "confidence_score":
        return confidence_score
    raise ValueError(f"unknown ranking score {name!r}")


def complex_rows(directory: Path, batch_id: str, analysis: dict) -> tuple[list[dict], list[dict]]:
    """Rows of the complexes and chain_pairs tables for one finished complex."""
    manifest = json.loads((directory / "done.json").read_text())
    chains = manifest["chains"]
    protein_of = {c["chain"]: c["protein_id"] for c in chains}
    complexes, pairs = [], []
    for sample in range(manifest["samples"]):
        confidence = json.loads((directory / f"confidence_model_{sample}.json").read_text())
        model_path = directory / f"model_{sample}.cif"
        contacts = structure_contacts(model_path, analysis["contact_cutoff"])
        plddt = np.load(directory / f"plddt_model_{sample}.npz")["plddt"]
        score = ranking_score(
            analysis["ranking_score"], confidence["iptm"], confidence["ptm"],
            confidence["confidence_score"],
        )
        complexes.append({
            "complex_id": manifest["complex_id"],
            "chains": manifest["spec"],
            "batch_id": batch_id,
            "sample": sample,
            "proteins": sorted(set(protein_of.values())),
            "num_chains": len(chains),
            "tokens": manifest["tokens"],
            "iptm": confidence["iptm"],
            "ptm": confidence["ptm"],
            "complex_plddt": confidence["complex_plddt"],
            "complex_iplddt": confidence["complex_iplddt"],
            "confidence_score": confidence["confidence_score"],
            "mean_plddt": float(plddt.mean()),
            "ranking_score": score,
            "interchain_contacts": int(sum(c.contacts for c in contacts)),
            "best_sample": False,
            "untrained": bool(manifest["untrained"]),
            "model_path": str(model_path),
            "pae_path": str(directory / f"pae_model_{sample}.npz"),
            "plddt_path": str(directory / f"plddt_model_{sample}.npz"),
        })
        pair_iptm = confidence["pair_chains_iptm"]
        for c in contacts:
            pairs.append({
                "complex_id": manifest["complex_id"],
                "sample": sample,
                "chain_a": c.chain_a,
                "chain_b": c.chain_b,
                "protein_a": protein_of.get(c.chain_a, ""),
                "protein_b": protein_of.get(c.chain_b, ""),
                "iptm_ab": pair_iptm[c.chain_a][c.chain_b],
                "iptm_ba": pair_iptm[c.chain_b][c.chain_a],
                "contacts": c.contacts,
                "interface_residues_a": len(c.interface_a),
                "interface_residues_b": len(c.interface_b),
                "untrained": bool(manifest["untrained"]),
            })
    best = int(np.argmax([row["ranking_score"] for row in complexes]))
    complexes[best]["best_sample"] = True
    return complexes, pairs


COMPLEX_COLUMNS = [
    "complex_id", "chains", "batch_id", "sample", "proteins", "num_chains", "tokens", "iptm", "ptm",
    "complex_plddt", "complex_iplddt", "confidence_score", "mean_plddt", "ranking_score",
    "interchain_contacts", "best_sample", "untrained", "model_path", "pae_path", "plddt_path",
]
PAIR_COLUMNS = [
    "complex_id", "sample", "chain_a", "chain_b", "protein_a", "protein_b", "iptm_ab", "iptm_ba",
    "contacts", "interface_residues_a", "interface_residues_b", "untrained",
]
FAILURE_COLUMNS = ["complex_id", "batch_id", "status", "error"]


def batch_tables(
    status_path: str | Path, predictions_dir: str | Path, analysis: dict
) -> dict[str, pd.DataFrame]:
    """complexes / chain_pairs / failures rows for one batch, from its status table."""
    status = pd.read_parquet(status_path)
    predictions_dir = Path(predictions_dir)
    complexes, pairs, failures = [], [], []
    for row in status.itertuples():
        directory = predictions_dir / row.complex_id
        if row.status in ("ok", "already_done") and is_done(directory):
            c_rows, p_rows = complex_rows(directory, row.batch_id, analysis)
            complexes += c_rows
            pairs += p_rows
        else:
            error = row.error or "prediction files missing or incomplete"
            failures.append({"complex_id": row.complex_id, "batch_id": row.batch_id,
                             "status": row.status if row.status not in ("ok", "already_done")
                             else "incomplete_output", "error": error})
    return {
        "complexes": pd.DataFrame(complexes, columns=COMPLEX_COLUMNS),
        "chain_pairs": pd.DataFrame(pairs, columns=PAIR_COLUMNS),
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


def ranked_table(complexes: pd.DataFrame, confident_iptm: float) -> pd.DataFrame:
    """Best sample of each complex, highest ranking_score first, with a 1-based rank."""
    # .loc with an explicit bool mask: on an empty (object-typed) table plain [] would pick
    # columns, not rows
    best = complexes.loc[complexes["best_sample"].astype(bool)].sort_values(
        ["ranking_score", "complex_id"], ascending=[False, True]
    )
    best = best.assign(
        rank=np.arange(1, len(best) + 1),
        confident=best["iptm"] >= confident_iptm,
        proteins=best["proteins"].map(lambda p: ";".join(p)),
    )
    columns = ["rank", "complex_id", "chains", "proteins", "ranking_score", "iptm", "ptm",
               "complex_plddt", "interchain_contacts", "confident", "known", "novel",
               "untrained", "model_path"]
    return best[columns].reset_index(drop=True)
