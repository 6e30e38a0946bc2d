"""The molecular entities of one predicted complex, from its ``done.json`` and the FASTA.

``done.json`` lists one record per Boltz chain, in token order::

    {"chain": "A", "protein_id": "P69905", "start": 1, "end": 141, "entity": 0}

Chains with the same ``entity`` index are copies of one sequence (a homomer's chains share
one entity). Boltz has one token per protein residue, so token i of the PAE [N, N] and
pLDDT [N] arrays is residue ``i - offset`` of the chain whose token range holds it; chains
follow each other in the order listed.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from foldcp.errors import ExportError
from foldcp.export.uniprot import Accession, parse_accession, sequence_crc64
from foldcp.inputs import Protein


@dataclass
class ExportEntity:
    """One distinct chain sequence of the complex (a protein or a residue range of one)."""

    protein: Protein
    start: int  # 1-based, inclusive, in the full protein sequence
    end: int
    chains: list[str] = field(default_factory=list)  # chain names of its copies

    @property
    def sequence(self) -> str:
        """The modelled sequence (one copy)."""
        return self.protein.sequence[self.start - 1 : self.end]

    @property
    def accession(self) -> Accession | None:
        return parse_accession(self.protein.id)

    @property
    def crc64(self) -> str:
        """CRC64 of the modelled sequence."""
        return sequence_crc64(self.sequence)

    @property
    def is_fragment(self) -> bool:
        return (self.start, self.end) != (1, len(self.protein.sequence))


@dataclass
class ChainTokens:
    """Where one chain's residues sit in the token arrays."""

    name: str
    entity: ExportEntity
    offset: int  # index of its first residue's token
    length: int


def complex_entities(
    manifest: dict, proteins: dict[str, Protein]
) -> tuple[list[ExportEntity], list[ChainTokens]]:
    """Entities (in ``entity`` index order) and chains (in token order) of one complex."""
    entities: dict[int, ExportEntity] = {}
    chains: list[ChainTokens] = []
    offset = 0
    for record in manifest["chains"]:
        protein = proteins.get(record["protein_id"])
        if protein is None:
            raise ExportError(
                f"{manifest['complex_id']}: protein {record['protein_id']!r} is not in the "
                f"proteins FASTA of this config"
            )
        entity = entities.setdefault(
            record["entity"], ExportEntity(protein, int(record["start"]), int(record["end"]))
        )
        if (entity.protein.id, entity.start, entity.end) != (protein.id, record["start"], record["end"]):
            raise ExportError(f"{manifest['complex_id']}: chains of entity {record['entity']} differ")
        entity.chains.append(record["chain"])
        length = entity.end - entity.start + 1
        chains.append(ChainTokens(record["chain"], entity, offset, length))
        offset += length
    if offset != manifest["tokens"]:
        raise ExportError(
            f"{manifest['complex_id']}: chains hold {offset} residues but the prediction has "
            f"{manifest['tokens']} tokens (only protein chains, one token per residue, are exported)"
        )
    return [entities[k] for k in sorted(entities)], chains
