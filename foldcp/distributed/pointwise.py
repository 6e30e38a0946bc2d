"""The pair stack's element-wise chains, each one fused GPU kernel (torch.compile / Triton).

Between its matrix multiplications a Pairformer layer runs chains of element-wise operations
over pair-sized tensors — gate = sigmoid(logits), update = value · gate, z += update — and
PyTorch runs each operation as its own kernel, a full pass over memory: on an H200 these
passes were about a third of a 2,048-token layer (bench/RESULTS.md, profile). Each function
below is one chain, written with the PyTorch operations Boltz uses, in Boltz's order; on
CUDA it runs compiled (one kernel that reads each input once and writes once; eager's values
within float32 rounding in float32 and within bf16 rounding in bf16 — the fused kernel keeps
intermediates such as sigmoid(logits) in float32 where eager rounds them to bf16), elsewhere
— and where compilation is off or fails — eagerly.

    gate_(x, logits, keep)          x *= sigmoid(logits) (· keep, when keep is given): in place
    add_gated_(z, x, logits)        z += x · sigmoid(logits): in place
    add_(z, x)                      z += x: in place (any strides; z float32, x bf16 in folds)
    silu_gate_(a, b)                a = silu(a) · b: in place

On GPUs a chain is compiled where its first tensor has at least COMPILE_MIN_ELEMENTS elements
and, inside a fold (`fold_of`), where the fold has at least COMPILE_MIN_TOKENS tokens.
FOLDCP_COMPILE=0 turns compilation off (eager everywhere); FOLDCP_COMPILE=1 turns it on for
every size and off GPUs too (the tests compare the two on CPU).
"""

from __future__ import annotations

import logging
import os
from contextlib import contextmanager
from contextvars import ContextVar

import torch

from foldcp.errors import summary

log = logging.getLogger(__name__)


def _gate(x: torch.Tensor, logits: torch.Tensor, keep: torch.Tensor | None) -> torch.Tensor:
    x.mul_(torch.sigmoid(logits))
    if keep is not None:
        x.mul_(keep)
    return x


def _add_gated(z: torch.Tensor, x: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
    return z.add_(x * torch.sigmoid(logits))


def _add(z: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    # The residual adds of bf16 updates into the float32 pair track: eagerly PyTorch's
    # non-vectorised mixed-dtype kernel (8.9 ms of a 175 ms layer at 2,512 tokens on an H200,
    # 14 calls: bench/RESULTS.md, fourteenth session); compiled, one vectorised pass.
    return z.add_(x)


def _silu_gate(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.silu(a, inplace=True).mul_(b)


class _Fused:
    """fn compiled on first use where wanted (one dynamic-shape graph), eager otherwise or
    after a compilation failure (logged once)."""

    def __init__(self, fn) -> None:
        self.fn = fn
        self.compiled = None
        self.failed = False

    def __call__(self, *args):
        if not self.failed and _wanted(args[0]):
            try:
                if self.compiled is None:
                    self.compiled = torch.compile(self.fn, dynamic=True, fullgraph=True)
                return self.compiled(*args)
            except Exception as error:  # noqa: BLE001 — no compiler, unsupported op: eager
                self.failed = True
                log.warning("%s runs eagerly: torch.compile failed (%s)", self.fn.__name__,
                            summary(error))
        return self.fn(*args)


# A compiled call costs ~0.2 ms of CPU time (guards, wrapper) before its kernel launches: at
# 1,024 tokens the fused chains made an H200's layer slower (0.0267 → 0.0350 s) while at
# 2,048 and 3,072 they took 4 % and 3 % off it. Chains on fewer elements run eagerly.
COMPILE_MIN_ELEMENTS = 1 << 27


# Compiling costs a process ~10 s of its first fold, and more to start and stop Inductor's
# compile workers: from cold caches one batch of 16 screening complexes (349-1,391 tokens) on
# an H200 took 245.8 s with the chains compiled and 219.6 s with them eager (bench/RESULTS.md,
# fourteenth session). The fused chains took 3-4 % off a layer at 2,048 and 3,072 tokens, so
# folds from COMPILE_MIN_TOKENS up compile them and smaller ones run them eagerly.
COMPILE_MIN_TOKENS = 2048
_fold_tokens: ContextVar[int | None] = ContextVar("foldcp_fold_tokens", default=None)


@contextmanager
def fold_of(tokens: int):
    """The chains called inside belong to a fold of `tokens` (padded) tokens."""
    reset = _fold_tokens.set(tokens)
    try:
        yield
    finally:
        _fold_tokens.reset(reset)


def _wanted(x: torch.Tensor) -> bool:
    setting = os.environ.get("FOLDCP_COMPILE", "")
    if setting == "0":
        return False
    if setting == "1":
        return True
    tokens = _fold_tokens.get()
    return (x.is_cuda and x.numel() >= COMPILE_MIN_ELEMENTS
            and (tokens is None or tokens >= COMPILE_MIN_TOKENS))


gate_ = _Fused(_gate)
add_gated_ = _Fused(_add_gated)
add_ = _Fused(_add)
silu_gate_ = _Fused(_silu_gate)
