"""Pack single-GPU complexes into batches so one job loads the model once and folds many."""

from __future__ import annotations


def pack_batches(
    items: list[tuple[str, int]], max_complexes: int, max_tokens: int
) -> list[list[str]]:
    """Greedy packing of (complex_id, tokens) sorted by size (largest first).

    A batch closes when adding the next complex would exceed `max_complexes` or the batch's
    summed tokens would exceed `max_tokens` (a single complex larger than `max_tokens` gets a
    batch of its own). Sorting keeps similar sizes together so per-batch runtimes are even.
    """
    ordered = sorted(items, key=lambda item: (-item[1], item[0]))
    batches: list[list[str]] = []
    current: list[str] = []
    current_tokens = 0
    for complex_id, tokens in ordered:
        full = len(current) >= max_complexes or (current and current_tokens + tokens > max_tokens)
        if full:
            batches.append(current)
            current, current_tokens = [], 0
        current.append(complex_id)
        current_tokens += tokens
    if current:
        batches.append(current)
    return batches
