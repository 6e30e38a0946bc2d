"""Result rows of the bench scripts: appended to a JSON-lines file (bench/results/ keeps them)."""

import json


def append_jsonl(path: str | None, rows: list[dict]) -> None:
    """Append each row as one JSON line to `path` (nothing when path is None)."""
    if not path:
        return
    with open(path, "a") as handle:
        for row in rows:
            handle.write(json.dumps(row) + "\n")
