"""Each distributed Pairformer layer, and the whole module, against the serial Boltz module.

Real process grids (gloo), fresh random inputs and RANDOMISED weights (Boltz zero-initialises
gates and output projections: untouched, a layer returns zero and the comparison proves
nothing), N not divisible by the grid, masked tokens, float64 tight and float32 ~1e-5.
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from boltz.model.layers.attentionv2 import AttentionPairBias
from boltz.model.layers.pairformer import PairformerLayer, PairformerModule
from boltz.model.layers.triangular_attention.attention import (
    TriangleAttentionEndingNode,
    TriangleAttentionStartingNode,
)
from boltz.model.layers.triangular_mult import (
    TriangleMultiplicationIncoming,
    TriangleMultiplicationOutgoing,
)

from foldcp.distributed.attention_pair_bias import DistAttentionPairBias
from foldcp.distributed.guard import LargestTensor
from foldcp.distributed import fused_attention
from foldcp.distributed.layout import Layout
from foldcp.distributed.pairformer import DistPairformerLayer, DistPairformerModule
from foldcp.distributed.triangle_attention import DistTriangleAttention
from foldcp.distributed.triangle_multiplication import DistTriangleMultiplication
from foldcp.model.weights import randomize_weights
from tests.distributed.harness import keep_float64, run_on_grid

C_S, C_Z, HEADS, TRI_WIDTH, TRI_HEADS = 16, 8, 2, 4, 2
TOL = {torch.float64: dict(rtol=1e-10, atol=1e-10), torch.float32: dict(rtol=1e-5, atol=2e-5)}


def build(kind: str, dtype, device="cpu"):
    factories = {
        "tri_mul_out": lambda: TriangleMultiplicationOutgoing(C_Z),
        "tri_mul_in": lambda: TriangleMultiplicationIncoming(C_Z),
        "tri_att_start": lambda: TriangleAttentionStartingNode(C_Z, TRI_WIDTH, TRI_HEADS, inf=1e9),
        "tri_att_end": lambda: TriangleAttentionEndingNode(C_Z, TRI_WIDTH, TRI_HEADS, inf=1e9),
        "attention": lambda: AttentionPairBias(C_S, C_Z, HEADS),
        "layer": lambda: PairformerLayer(C_S, C_Z, HEADS, dropout=0.0, pairwise_head_width=TRI_WIDTH,
                                         pairwise_num_heads=TRI_HEADS, v2=True),
        "module": lambda: PairformerModule(C_S, C_Z, 2, HEADS, dropout=0.0,
                                           pairwise_head_width=TRI_WIDTH,
                                           pairwise_num_heads=TRI_HEADS, v2=True),
    }
    torch.manual_seed(1)
    module = factories[kind]().to(dtype).eval()
    randomize_weights(module, seed=7, std=0.3)
    return module.to(device)


def inputs(n: int, dtype, seed: int, device="cpu", masked: bool = True):
    generator = torch.Generator().manual_seed(seed)
    s = torch.randn(1, n, C_S, generator=generator, dtype=dtype)
    z = torch.randn(1, n, n, C_Z, generator=generator, dtype=dtype)
    mask = torch.ones(1, n, dtype=dtype)
    if masked:
        mask[0, -2:] = 0  # padded tokens of the complex itself
        mask[0, 1] = 0
    pair_mask = mask[:, :, None] * mask[:, None, :]
    return tuple(t.to(device) for t in (s, z, mask, pair_mask))


def serial_forward(kind, module, s, z, mask, pair_mask):
    with torch.inference_mode():
        if kind.startswith("tri_mul"):
            return None, module(z, mask=pair_mask)
        if kind.startswith("tri_att"):
            return None, module(z, mask=pair_mask, chunk_size=None)
        if kind == "attention":
            return module(s=s, z=z, mask=mask, k_in=s), None
        return module(s, z, mask, pair_mask)


def distributed_forward(kind, module, layout, s_pad, z_blk, mask_pad, pm_blk):
    wrappers = {
        "tri_mul_out": lambda m: DistTriangleMultiplication(m, outgoing=True),
        "tri_mul_in": lambda m: DistTriangleMultiplication(m, outgoing=False),
        "tri_att_start": DistTriangleAttention,
        "tri_att_end": DistTriangleAttention,
        "attention": DistAttentionPairBias,
        "layer": DistPairformerLayer,
        "module": DistPairformerModule,
    }
    dist_module = wrappers[kind](module)
    with torch.inference_mode():
        if kind.startswith("tri"):
            return None, dist_module(z_blk, pm_blk, layout)
        if kind == "attention":
            return dist_module(s_pad, z_blk, mask_pad, s_pad, layout), None
        return dist_module(s_pad, z_blk, mask_pad, pm_blk, layout)


def compare_on_grid(grid, kind, n, dtype, seed, device="cpu", tol=None, masked=True):
    """Serial Boltz vs distributed on this rank's block; returns the largest tensor created.
    masked: some tokens of the complex are masked (else every token is real)."""
    with keep_float64(dtype):
        return _compare_on_grid(grid, kind, n, dtype, seed, device, tol or TOL[dtype], masked)


def _compare_on_grid(grid, kind, n, dtype, seed, device, tol, masked=True):
    module = build(kind, dtype, device)
    s, z, mask, pair_mask = inputs(n, dtype, seed, device, masked)
    want_s, want_z = serial_forward(kind, module, s, z, mask, pair_mask)
    layout = Layout.for_tokens(grid, n)
    # whole tensors are cut into blocks outside the guard: that is the test's doing
    sharded = (layout.pad_single(s), layout.shard_pair(z), layout.pad_single(mask),
               layout.shard_pair(pair_mask))
    with LargestTensor() as largest:
        got_s, got_z = distributed_forward(kind, module, layout, *sharded)
    n_pad = layout.n_padded
    if grid.size > 1:  # on one rank the block is the whole tensor
        assert largest.numel < min(n_pad * n_pad * C_Z, n_pad**3), (largest.shape, largest.op)
    if want_z is not None:
        # the serial update must be non-trivial, or the comparison proves nothing
        assert want_z.abs().mean() > 1e-2
        expected = layout.shard_pair(want_z)
        r = min(expected.shape[1], max(0, n - layout.rows.start))
        c = min(expected.shape[2], max(0, n - layout.cols.start))
        rows, cols = torch.arange(r), torch.arange(c)
        if fused_attention.fused_available(z.to(device)):
            # The fused kernel merges key blocks by log-sum-exp. A masked token's row has every
            # key at Boltz's finite -1e9, where float32 keeps no digits of the scores (serial
            # Boltz gets a uniform average) and block merging weighs blocks by rounded
            # log-sum-exps: such rows differ. Inference folds one complex with no masked
            # tokens, and masked rows never reach real tokens, so only real pairs compare.
            real = mask[0].to("cpu") > 0
            rows = rows[real[layout.rows.start + rows]]
            cols = cols[real[layout.cols.start + cols]]
        torch.testing.assert_close(got_z[:, rows][:, :, cols], expected[:, rows][:, :, cols], **tol)
    if want_s is not None:
        assert want_s.abs().mean() > 1e-2
        tokens = torch.arange(n)
        if fused_attention.fused_available(z.to(device)):  # as above: real tokens only
            tokens = tokens[mask[0].to("cpu") > 0]
        torch.testing.assert_close(got_s[:, tokens], want_s[:, tokens], **tol)
    return largest.numel


LAYERS = ["tri_mul_out", "tri_mul_in", "tri_att_start", "tri_att_end", "attention"]


@pytest.mark.parametrize("kind", LAYERS)
@pytest.mark.parametrize("rows, cols", [(1, 1), (1, 2), (2, 1), (2, 2)])
def test_layer_float64(kind, rows, cols):
    run_on_grid(rows, cols, compare_on_grid, kind, 13, torch.float64, 3)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_ending_node_on_one_grid_row(dtype):
    """On 1×c grids the ending node keeps every key local (transposed views, β gathered):
    three ranks, N not divisible by them."""
    run_on_grid(1, 3, compare_on_grid, "tri_att_end", 13, dtype, 13)


@pytest.mark.parametrize("kind", ["tri_mul_out", "tri_mul_in"])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_triangle_multiplication_on_one_grid_row(kind, dtype):
    """On 1×c grids the product over k shifts blocks around the row (ring_product.py, no
    transposes): three ranks, so blocks come from two distances, N not divisible by them."""
    run_on_grid(1, 3, compare_on_grid, kind, 13, dtype, 14)


@pytest.mark.parametrize("kind", LAYERS)
def test_layer_float32_non_square_grid(kind):
    run_on_grid(2, 3, compare_on_grid, kind, 37, torch.float32, 4)


@pytest.mark.parametrize("rows, cols, n", [(1, 2, 13), (2, 1, 14), (2, 2, 13), (2, 3, 13)])
def test_pairformer_layer_float64(rows, cols, n):
    run_on_grid(rows, cols, compare_on_grid, "layer", n, torch.float64, 5)


def test_pairformer_module_largest_grids():
    run_on_grid(3, 3, compare_on_grid, "module", 37, torch.float64, 6)
    run_on_grid(2, 3, compare_on_grid, "module", 37, torch.float32, 7)


def reference_kernel(q, k, v, bias):
    """What the CUDA memory-efficient attention kernel returns, in plain PyTorch (CPU)."""
    scores = torch.matmul(q, k.transpose(-1, -2)) + bias
    lse = torch.logsumexp(scores, dim=-1)
    return torch.matmul(torch.softmax(scores, dim=-1), v), lse


@pytest.fixture
def fused_path_on_cpu(monkeypatch):
    """Route triangle attention through its fused-kernel path (one bias shared by a chunk's
    rows, block LSE merging) with a plain-PyTorch kernel, so the merge logic is tested on CPU
    grids; the forked ranks inherit the patch."""
    from foldcp.distributed import fused_attention
    monkeypatch.setattr(fused_attention, "KERNEL", reference_kernel)
    monkeypatch.setattr(fused_attention, "fused_available", lambda q: True)




@pytest.mark.parametrize("kind", ["tri_att_start", "tri_att_end", "layer"])
@pytest.mark.parametrize("rows, cols", [(1, 1), (1, 2), (2, 3)])
def test_triangle_attention_fused_path(fused_path_on_cpu, kind, rows, cols):
    run_on_grid(rows, cols, compare_on_grid, kind, 37, torch.float64, 8)


@pytest.mark.parametrize("rows, cols", [(1, 1), (1, 2)])
def test_fused_path_with_aligned_key_blocks(fused_path_on_cpu, rows, cols):
    """Key blocks a multiple of 16 (the memory-efficient kernel's alignment): the bias
    reaches the kernel as the gathered rows' own slices."""
    run_on_grid(rows, cols, compare_on_grid, "tri_att_end", 16 * cols, torch.float64, 11)


def test_chunk_rows_grows_only_for_small_blocks(monkeypatch):
    """More rows per chunk, up to the whole block, while a chunk's transients fit the budget:
    layout.SMALL_CHUNK_MIB by default, FOLDCP_SMALL_CHUNK_MIB=M another, 0 the sub-layer's
    own chunk."""
    from foldcp.distributed.layout import SMALL_CHUNK_MIB, chunk_rows

    monkeypatch.delenv("FOLDCP_SMALL_CHUNK_MIB", raising=False)
    assert SMALL_CHUNK_MIB == 1024
    assert chunk_rows(1008, 126, 2**20) == 1008  # 1 MiB a row: the whole block fits 1 GiB
    assert chunk_rows(4000, 500, 2**20) == 1024
    assert chunk_rows(6016, 752, 5 * 6016 * 128 * 2) == 752  # 6,000 tokens keep their own chunk
    monkeypatch.setenv("FOLDCP_SMALL_CHUNK_MIB", "512")
    assert chunk_rows(1008, 126, 2**20) == 512  # 512 rows fit
    assert chunk_rows(300, 38, 2**20) == 300  # the whole block fits
    assert chunk_rows(2512, 314, 3 * 2**20) == 314  # large blocks keep their own chunk
    monkeypatch.setenv("FOLDCP_SMALL_CHUNK_MIB", "0")
    assert chunk_rows(1008, 126, 2**20) == 126


@pytest.mark.parametrize("fused", [False, True])
def test_small_blocks_in_one_chunk(monkeypatch, tmp_path, fused):
    """With the small-chunk budget every sub-layer of a small block runs as one chunk (the
    fused attention path too): still serial Boltz's result. On one GPU only: a whole-block
    chunk is what the grid tests' guard against N²·C-sized tensors would (rightly) flag — the
    budget is for blocks whose whole-block transients are small, in MiB."""
    from foldcp.distributed import layout, triangle_attention, triangle_multiplication

    if fused:
        monkeypatch.setattr(fused_attention, "KERNEL", reference_kernel)
        monkeypatch.setattr(fused_attention, "fused_available", lambda q: True)
    monkeypatch.setenv("FOLDCP_SMALL_CHUNK_MIB", "64")  # the forked rank inherits it
    chunk_rows, calls = layout.chunk_rows, tmp_path / "calls"

    def recorded(rows, chunk, bytes_per_row):  # each sub-layer's chunk, noted by the rank
        rows_per_chunk = chunk_rows(rows, chunk, bytes_per_row)
        with open(calls, "a") as out:
            out.write(f"{rows} {chunk} {rows_per_chunk}\n")
        return rows_per_chunk

    for module in (layout, triangle_attention, triangle_multiplication):
        monkeypatch.setattr(module, "chunk_rows", recorded)
    run_on_grid(1, 1, compare_on_grid, "layer", 37, torch.float64, 12)
    made = [tuple(map(int, line.split())) for line in calls.read_text().splitlines()]
    # two triangle multiplications (channels, output rows), two attentions, one transition
    assert len(made) == 7, made
    assert all(whole == rows and own < rows for rows, own, whole in made), made


class _NoGuard:
    """Stands in for LargestTensor where whole-block chunks are the point."""
    numel, shape, op = 0, (), None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def _compare_with_the_default_budget(grid, kind, n, dtype, seed):
    global LargestTensor
    LargestTensor = _NoGuard  # (this forked rank's module)
    return compare_on_grid(grid, kind, n, dtype, seed)


@pytest.mark.parametrize("rows, cols", [(1, 2), (2, 3)])
def test_layer_on_grids_with_the_default_small_chunk_budget(monkeypatch, rows, cols):
    """The small-chunk budget's default (layout.SMALL_CHUNK_MIB) on grids: every sub-layer of
    these small blocks runs as one chunk of all rows — still serial Boltz's result. (The
    other grid tests turn the budget off, conftest.py, so their guard against N²·C-sized
    tensors sees the row-chunked path of real sizes.)"""
    monkeypatch.delenv("FOLDCP_SMALL_CHUNK_MIB")
    run_on_grid(rows, cols, _compare_with_the_default_budget, "layer", 37, torch.float64, 13)


@pytest.mark.parametrize("kind", ["tri_mul_out", "tri_mul_in"])
@pytest.mark.parametrize("rows, cols", [(1, 1), (1, 2)])
def test_triangle_multiplication_without_masked_tokens(kind, rows, cols):
    """Every token real and N a multiple of the grid (no padding): the all-ones pair mask is
    not multiplied in (an exact no-op skipped); the result still equals serial Boltz's."""
    run_on_grid(rows, cols, compare_on_grid, kind, 12, torch.float64, 5, "cpu", None, False)


def test_triton_kernel_under_the_interpreter():
    """foldcp's Triton kernel, alone and inside the layers on CPU grids, run by Triton's CPU
    interpreter. The interpreter must be on before Triton is imported, so the checks run in a
    fresh interpreter process (tests/distributed/triton_interpreted.py)."""
    pytest.importorskip("triton")
    env = {**os.environ, "TRITON_INTERPRET": "1"}
    done = subprocess.run([sys.executable, "-m", "tests.distributed.triton_interpreted"], env=env,
                          cwd=Path(__file__).resolve().parents[2], capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "all checks passed" in done.stdout


def fused_with_mask(grid, mask_kind):
    module = build("tri_att_start", torch.float64)
    _, z, mask, pair_mask = inputs(13, torch.float64, 10)
    if mask_kind == "not an outer product":
        pair_mask = pair_mask.clone()
        pair_mask[0, 3, 5] = 0  # one pair of two real tokens masked
    layout = Layout.for_tokens(grid, 13)
    with torch.inference_mode():
        DistTriangleAttention(module)(layout.shard_pair(z), layout.shard_pair(pair_mask), layout)


def test_fused_path_refuses_a_pair_mask_it_cannot_represent(fused_path_on_cpu):
    """The fused path folds the pair mask into a per-key bias, exact only for Boltz's
    outer-product mask; any other mask must stop it rather than be silently misread."""
    run_on_grid(1, 1, fused_with_mask, "outer product")
    with pytest.raises(Exception, match="outer-product pair mask"):
        run_on_grid(1, 1, fused_with_mask, "not an outer product")


def test_qkvg_projection_equals_the_four_projections():
    """One GEMM gives Boltz's q / √d, k, v and gate logits, with and without a gate bias
    (Boltz 2.2.1's triangle attention has none; the bias branch is for modules that do)."""
    import math

    from foldcp.distributed.triangle_attention import qkvg_projection

    mha = build("tri_att_start", torch.float64).mha
    x = torch.randn(5, mha.linear_q.in_features, dtype=torch.float64)
    for gate_bias in (None, torch.randn(mha.linear_g.out_features, dtype=torch.float64)):
        if gate_bias is not None:
            mha.linear_g.bias = torch.nn.Parameter(gate_bias)
        weight, bias = qkvg_projection(mha)
        assert (bias is None) == (gate_bias is None)
        q, k, v, g = torch.nn.functional.linear(x, weight, bias).chunk(4, dim=-1)
        with torch.no_grad():
            torch.testing.assert_close(q, mha.linear_q(x) / math.sqrt(mha.c_hidden))
            torch.testing.assert_close(k, mha.linear_k(x))
            torch.testing.assert_close(v, mha.linear_v(x))
            torch.testing.assert_close(g, mha.linear_g(x))


@pytest.mark.parametrize("module_name, launcher, wanted, kind, message", [
    # attention with pair bias: Boltz's element-wise core instead
    ("triton_attention", "shared_bias_attention", "usable", "attention",
     "Triton attention kernel unavailable"),
    # the gated projections (triangle multiplications' inputs, pair transition): GEMMs + gates
    ("triton_gated_projection", "gated_projection", "wanted", "layer",
     "gated-projection kernel unavailable"),
    # the fused pair transition: the unfused transition
    ("triton_transition", "add_transition_", "applies", "layer", "transition kernel unavailable"),
    # the triangle attention's gated output: gate, projection and add unfused
    ("triton_gated_output", "add_gated_output_", "applies", "layer",
     "gated-output kernel unavailable"),
    # the triangle multiplication's output stage: norm, projections and gated add unfused
    ("triton_product_output", "add_product_output_", "applies", "layer",
     "product-output kernel unavailable"),
])
def test_kernel_falls_back_where_it_cannot_build(monkeypatch, caplog, module_name, launcher,
                                                 wanted, kind, message):
    """A GPU whose shared memory cannot hold a kernel's tiles raises Triton's OutOfResources
    when it is built: the layer then runs the PyTorch path (same result, checked against serial
    Boltz), says so once, and does not try the kernel again."""
    import importlib

    from triton.runtime.errors import OutOfResources

    from foldcp.distributed.grid import Grid

    module = importlib.import_module(f"foldcp.distributed.{module_name}")
    switch = getattr(module, "SWITCH", None)  # the optional kernels' triton_attention.KernelSwitch
    attempts = []

    def failed() -> bool:
        return switch.failed if switch is not None else module._failed

    def cannot_build(*args, **kwargs):
        attempts.append(1)
        raise OutOfResources(232448, 101376, "shared memory")

    if switch is not None:
        monkeypatch.setattr(switch, "failed", False)
    else:
        monkeypatch.setattr(module, "_failed", False)
    monkeypatch.setattr(module, launcher, cannot_build)
    monkeypatch.setattr(module, wanted, lambda *args: not failed())  # as on a GPU
    if kind == "attention":  # the fused path, where the kernel is asked for
        monkeypatch.setattr(fused_attention, "fused_available", lambda x: True)
    with caplog.at_level("WARNING"):
        for _ in range(2):
            compare_on_grid(Grid(1, 1, 0), kind, 13, torch.float32, 3)
    assert len(attempts) == 1 and failed()
    assert sum(message in r.message for r in caplog.records) == 1


@pytest.mark.parametrize("rows, cols, n", [(1, 1, 12), (1, 3, 37), (2, 2, 37)])
def test_channel_chunks_are_multiples_of_16(monkeypatch, tmp_path, rows, cols, n):
    """The triangle multiplication's channel chunks, whatever the memory budget allows, are
    multiples of 16 channels (or all of them): the gated-projection kernel then sees row
    counts divisible by 16 at every size, one Triton specialisation (compiled ahead). Still
    serial Boltz's result, on grids too (N not divisible by them)."""
    from foldcp.distributed import triangle_multiplication

    assert triangle_multiplication.channel_chunk(128, 69) == 64  # 1,392 tokens on one GPU
    assert triangle_multiplication.channel_chunk(128, 32) == 32
    assert triangle_multiplication.channel_chunk(128, 300) == 128
    assert triangle_multiplication.channel_chunk(128, 9) == 9  # below 16: as the budget says
    calls = tmp_path / "calls"
    monkeypatch.setitem(globals(), "C_Z", 32)  # pair channels: two chunks of 16 (build, inputs)
    # a budget that allows 23 channels a chunk (the forked rank inherits the patches)
    chunk_rows = triangle_multiplication.chunk_rows  # the output's row chunks: as ever
    monkeypatch.setattr(triangle_multiplication, "chunk_rows", lambda rows, chunk, bytes_per_row:
                        23 if rows == C_Z else chunk_rows(rows, chunk, bytes_per_row))
    projection = triangle_multiplication.triton_gated_projection.gated_projection_or_none

    def spy(x, w_p, w_g, *args, **kwargs):
        with open(calls, "a") as out:
            out.write(f"{w_p.shape[0]}\n")
        return projection(x, w_p, w_g, *args, **kwargs)

    monkeypatch.setattr(triangle_multiplication.triton_gated_projection,
                        "gated_projection_or_none", spy)
    run_on_grid(rows, cols, compare_on_grid, "tri_mul_out", n, torch.float64, 3)
    # each rank: 32 channels as two chunks of 16 (a and b: 2 × 16 projection rows each)
    assert [int(r) for r in calls.read_text().split()] == [2 * 16] * 2 * rows * cols
