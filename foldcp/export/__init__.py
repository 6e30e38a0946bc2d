"""Export: selected predictions as deposit-ready ModelCIF files, an index table, Foldseek DB.

- select.py           which models (from ranked.parquet / complexes.parquet)
- uniprot.py          UniProt accession recognition and CRC64 sequence checksums
- entities.py         the molecular entities of one predicted complex
- modelcif_writer.py  one ModelCIF file (+ zipped PAE associated file) per model
- index.py            index.parquet rows, AlphaFold-DB-metadata style
- foldseek.py         optional ``foldseek createdb`` of the exported models
- exporter.py         the whole export step (``foldcp export``)
"""
