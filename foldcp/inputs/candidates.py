"""Candidate complexes from a pairs table, all-vs-all or bait-vs-library.

Every source yields canonical complexes, deduplicated (AB and BA are one complex), each
checked against the proteins: unknown IDs and ranges beyond a sequence are errors naming
the file and line where the complex came from.
"""

from __future__ import annotations

from itertools import combinations
from pathlib import Path

from foldcp.errors import InputError
from foldcp.inputs.complexes import Chain, ChainSyntaxError, Complex, make_complex, parse_complex
from foldcp.inputs.fasta import Protein


def _read_lines(path: str) -> list[tuple[int, str]]:
    """Non-empty, non-comment lines with their 1-based numbers."""
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise InputError(path, 0, f"cannot read file: {exc.strerror}") from exc
    lines = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if line and not line.startswith("#"):
            lines.append((number, raw.rstrip("\n")))
    return lines


def check_chain(chain: Chain, proteins: dict[str, Protein], path: str, line: int) -> None:
    protein = proteins.get(chain.protein_id)
    if protein is None:
        raise InputError(path, line, f"unknown protein ID {chain.protein_id!r} (not in the FASTA)")
    if chain.end is not None and chain.end > len(protein):
        raise InputError(
            path, line,
            f"range {chain.start}-{chain.end} of {chain.protein_id!r} is beyond its "
            f"{len(protein)} residues",
        )


def read_pairs(path: str | Path, proteins: dict[str, Protein]) -> list[Complex]:
    """Read a pairs table: one complex per line in its first tab-separated column.

    An optional header line whose first column is ``chains`` (or ``complex``) is skipped;
    further columns are ignored; '#' starts a comment line.
    """
    path = str(path)
    complexes = []
    for position, (number, raw) in enumerate(_read_lines(path)):
        cell = raw.split("\t")[0].strip()
        if position == 0 and cell.lower() in ("chains", "complex"):
            continue
        try:
            chains = parse_complex(cell)
        except ChainSyntaxError as exc:
            raise InputError(path, number, str(exc)) from exc
        for chain in chains:
            check_chain(chain, proteins, path, number)
        complexes.append(make_complex(chains, f"{path}:{number}"))
    if not complexes:
        raise InputError(path, 0, "no complexes found")
    return deduplicate(complexes)


def read_id_list(path: str | Path, proteins: dict[str, Protein]) -> list[str]:
    """Protein IDs, one per line (first column), each checked against the FASTA."""
    path = str(path)
    ids: dict[str, None] = {}  # ordered set: a proteome-sized list stays linear
    for number, raw in _read_lines(path):
        identifier = raw.split("\t")[0].strip()
        if identifier not in proteins:
            raise InputError(path, number, f"unknown protein ID {identifier!r} (not in the FASTA)")
        ids.setdefault(identifier)
    if not ids:
        raise InputError(path, 0, "no protein IDs found")
    return list(ids)


def all_vs_all(ids: list[str], homodimers: bool = False, source: str = "all_vs_all") -> list[Complex]:
    """Every unordered pair of distinct IDs, plus A:2 for each ID if homodimers."""
    ids = list(dict.fromkeys(ids))  # distinct IDs: every pair below is then a distinct complex
    chains = {a: Chain(a) for a in ids}
    # two whole proteins: the canonical form is the two chains in ID order (make_complex's
    # general path, without its cost at 10^5 pairs)
    complexes = [Complex((chains[a], chains[b]) if a < b else (chains[b], chains[a]), source)
                 for a, b in combinations(ids, 2)]
    if homodimers:
        complexes += [make_complex((Chain(a, copies=2),), source) for a in ids]
    return deduplicate(complexes)


def bait_vs_library(
    baits: list[str], library: list[str], homodimers: bool = False, source: str = "bait_vs_library"
) -> list[Complex]:
    """Each bait with each library protein; a bait meeting itself only if homodimers."""
    complexes = []
    for bait in baits:
        for prey in library:
            if bait == prey:
                if homodimers:
                    complexes.append(make_complex((Chain(bait, copies=2),), source))
                continue
            complexes.append(make_complex((Chain(bait), Chain(prey)), source))
    return deduplicate(complexes)


def deduplicate(complexes: list[Complex]) -> list[Complex]:
    """Keep the first occurrence of each complex ID, in input order."""
    seen: dict[str, Complex] = {}
    for complex_ in complexes:
        seen.setdefault(complex_.id, complex_)
    return list(seen.values())


def check_candidates(candidates: dict, proteins: dict[str, Protein], base: Path) -> list[str]:
    """Validate the candidate inputs (located errors) without listing every complex, and
    return the IDs of the proteins the candidates use (sorted): the workflow does this when
    it starts (all-vs-all of 450 proteins is 10^5 complexes) and makes their MSAs."""
    mode = candidates["mode"]
    if mode == "pairs":
        used = {c.protein_id for complex_ in load_candidates(candidates, proteins, base)
                for c in complex_.chains}
        return sorted(used)
    lists = {key: read_id_list(str((base / candidates[key]).resolve()), proteins)
             for key in ("ids", "baits", "library") if candidates.get(key)}
    if mode == "all_vs_all":
        return sorted(lists.get("ids", proteins))
    return sorted(set(lists["baits"]) | set(lists.get("library", proteins)))


def load_candidates(candidates: dict, proteins: dict[str, Protein], base: Path) -> list[Complex]:
    """Candidates as chosen by the config's ``candidates`` section (paths relative to base)."""
    mode = candidates["mode"]

    def resolve(key: str) -> str:
        return str((base / candidates[key]).resolve()) if candidates.get(key) else ""

    if mode == "pairs":
        return read_pairs(resolve("pairs"), proteins)
    homodimers = bool(candidates.get("homodimers", False))
    if mode == "all_vs_all":
        ids = read_id_list(resolve("ids"), proteins) if candidates.get("ids") else list(proteins)
        return all_vs_all(ids, homodimers)
    if mode == "bait_vs_library":
        baits = read_id_list(resolve("baits"), proteins)
        library = (
            read_id_list(resolve("library"), proteins) if candidates.get("library") else list(proteins)
        )
        return bait_vs_library(baits, library, homodimers)
    raise ValueError(f"unknown candidates mode {mode!r}")
