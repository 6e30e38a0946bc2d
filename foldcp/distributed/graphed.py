"""The denoising step's network as a replayed CUDA graph.

A Boltz-2 denoising step at 1,000 tokens is ~1,800 small kernels; on an H100 the GPU is busy
for less than half of the step and the rest is Python and kernel-launch time
(bench/cp_model.py --profile-step, bench/RESULTS.md). Every step of a fold calls the score
network with the same conditioning tensors and differently-valued but same-shaped noisy
coordinates and noise levels, so the step is recorded once as a CUDA graph and replayed:

    score = GraphedScoreModel(structure_module.score_model)
    r_update = score(r_noisy=..., times=..., s_inputs=..., s_trunk=..., feats=...,
                     diffusion_conditioning=..., multiplicity=M)

The first call per input shape runs the network eagerly (its result is returned, and it warms
up cuBLAS and the allocator on a side stream), then records the graph; later calls copy the
inputs into the recorded buffers and replay. The conditioning arguments must stay the same
objects for the wrapper's life (one structure sampling) — they are checked by identity, and a
different one re-records. Replays run the same kernels on the same values as the eager call,
so results equal eager ones. Off CUDA, or when recording fails, the network runs eagerly.
"""

from __future__ import annotations

import logging

import torch
from torch import nn

log = logging.getLogger(__name__)


def on_side_stream(fn):
    """fn() on a fresh side stream that first waits for the current stream, which then waits
    for it: PyTorch's recipe for the eager warm-up call before recording a CUDA graph (cuBLAS
    handles, Triton compilation and allocator pools are set up off the stream the graph is
    captured on). Returns fn's result; tensors it made belong to the side stream (call
    record_stream where they outlive it on the current one)."""
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        result = fn()
    torch.cuda.current_stream().wait_stream(side)
    return result


class GraphedScoreModel(nn.Module):
    def __init__(self, score_model: nn.Module) -> None:
        super().__init__()
        self.score_model = score_model
        self.recorded: dict = {}  # input signature -> (graph, r_noisy, times, output)
        self.failed = False

    def forward(self, r_noisy: torch.Tensor, times: torch.Tensor, **conditioning) -> torch.Tensor:
        if self.failed or not r_noisy.is_cuda:
            return self.score_model(r_noisy=r_noisy, times=times, **conditioning)
        # scalars (multiplicity) by value, tensors and dicts by identity (see the docstring)
        key = (tuple(r_noisy.shape), r_noisy.dtype, tuple(times.shape), times.dtype,
               tuple((name, value if isinstance(value, (int, float, bool)) else id(value))
                     for name, value in sorted(conditioning.items(), key=lambda kv: kv[0])))
        entry = self.recorded.get(key)
        if entry is None:
            return self._record(key, r_noisy, times, conditioning)
        graph, static_r, static_t, static_out = entry
        static_r.copy_(r_noisy)
        static_t.copy_(times)
        graph.replay()
        return static_out.clone()

    def _record(self, key, r_noisy, times, conditioning) -> torch.Tensor:
        static_r, static_t = r_noisy.clone(), times.clone()
        # the eager warm-up call: this step's result
        out = on_side_stream(lambda: self.score_model(r_noisy=static_r, times=static_t,
                                                      **conditioning))
        out.record_stream(torch.cuda.current_stream())  # made on the side stream, used here
        # The warm-up's freed blocks stay cached for the side stream, where the graph's own
        # pool cannot use them: give them back first, so recording needs no second step's
        # worth of memory (matters at large N on one GPU).
        torch.cuda.synchronize()
        torch.cuda.empty_cache()
        try:
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):
                static_out = self.score_model(r_noisy=static_r, times=static_t, **conditioning)
        except RuntimeError as error:  # an op that synchronises with the host, out of memory …
            log.warning("denoising step not recordable as a CUDA graph, running eagerly: %s", error)
            self.failed = True
            torch.cuda.synchronize()
            return out
        self.recorded[key] = (graph, static_r, static_t, static_out)
        return out
