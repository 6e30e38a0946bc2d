"""Result rows of the bench scripts: appended to a JSON-lines file (bench/results/ keeps them)."""

import json
import os
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def append_jsonl(path: str | None, rows: list[dict]) -> None:
    """Append each row as one JSON line to `path` (nothing when path is None)."""
    if not path:
        return
    with open(path, "a") as handle:
        for row in rows:
            handle.write(json.dumps(row) + "\n")


def commit() -> str:
    """The code's short commit: $BENCH_COMMIT (session scripts set it from `.git-commit`, which
    they write before a device call: the device's copy of the tree may carry a stale .git),
    else git's, else `.git-commit`, else "unknown"."""
    if os.environ.get("BENCH_COMMIT"):
        return os.environ["BENCH_COMMIT"]
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, text=True,
                              capture_output=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        marker = REPO / ".git-commit"
        return marker.read_text().strip() if marker.exists() else "unknown"
