"""Checks of foldcp's Triton attention kernel under Triton's CPU interpreter.

Run by test_pairformer.test_triton_kernel_under_the_interpreter as
`TRITON_INTERPRET=1 python -m tests.distributed.triton_interpreted` (the interpreter must be
on before Triton is imported). Prints "all checks passed" when every check holds.

1. The attention kernel alone vs a float64 softmax: float32 and float16, head widths 4 (padded to 16
   inside) and 32, a head-split (strided) q, sizes off the block grid, a masked key column at
   Boltz's finite -1e9, the log-sum-exp too.
2. The LayerNorm kernel vs PyTorch's: channel-last and channel-first (strided) input, rows off
   the block grid, float32 and float16 output, element offsets past 2^31.
3. Both kernels inside the distributed layers on CPU grids (fused path, float32) vs serial
   Boltz; each rank reports how many attention and LayerNorm kernel calls it made, so the
   paths are proven taken.
4. The diffusion token transformer (attention with its cached pair bias shared by 2 samples,
   a masked token) on 1×1 and 1×2 vs Boltz's DiffusionTransformer, the kernel's calls counted.
   (With FOLDCP_GATED_KERNEL=0: the triangle multiplications' unfused projections.)
5. The gated-projection kernel (on by default) alone vs float64 (sizes off its
   blocks, a mask, float32 and float16; the triangle multiplication's sigmoid gate
   channel-first, the transition's silu gate channel-last), then inside the triangle
   multiplications and a layer (transition included) on CPU grids vs serial Boltz, its calls
   counted.
6. The fused pair transition (norm, silu-gated hidden layer, output and residual add in one
   kernel; on by default) alone vs float64 on a strided block view (hidden sizes off its
   slices, float32 and float16 compute), then inside a layer on CPU grids, its calls counted;
   with FOLDCP_FUSED_TRANSITION=0 the unfused path runs instead.
7. The triangle attention's gated output kernel (gate, output projection, add into z) alone vs
   float64 — o as a heads view, z a strided and a transposed view, sizes off its blocks —
   then inside layers on CPU grids (starting and ending node, each adding into z), its calls
   counted; with FOLDCP_GATED_OUTPUT_KERNEL=0 the unfused path.
8. The triangle multiplication's output kernel (norm of the channel-first product, p_out,
   g_out gate, add into z) alone vs float64 on strided views and with channel offsets past
   2^31, then inside layers on CPU
   grids, its calls counted; with FOLDCP_PRODUCT_OUTPUT_KERNEL=0 the unfused path.
"""

import os

import torch

from foldcp.distributed import (
    fused_attention,
    triton_attention,
    triton_gated_output,
    triton_gated_projection,
    triton_layer_norm,
    triton_product_output,
    triton_transition,
)
from tests.distributed.harness import run_on_grid
from tests.distributed import test_pairformer
from tests.distributed.test_pairformer import compare_on_grid


def check_kernel_alone() -> None:
    torch.manual_seed(0)
    for dtype, tol in ((torch.float32, 1e-5), (torch.float16, 2e-2)):
        # keys against 64-key blocks: two (the second partial), less than one, exactly two
        for width, keys in ((4, 70), (32, 70), (32, 40), (32, 128)):
            rows, heads, queries = 3, 2, 37
            q = torch.randn(rows, queries, heads * width).to(dtype)
            q = q.view(rows, queries, heads, width).transpose(1, 2)  # strided, as in the layer
            k, v = (torch.randn(rows, heads, keys, width).to(dtype) for _ in range(2))
            bias = torch.randn(heads, queries, keys).to(dtype)
            bias[:, :, 5] = -1e9 if dtype == torch.float32 else -6e4
            out, lse = triton_attention.shared_bias_attention(q, k, v, bias)
            scores = q.double() @ k.double().mT + bias.double()
            want = torch.softmax(scores, dim=-1) @ v.double()
            torch.testing.assert_close(out.double(), want, rtol=tol, atol=tol)
            torch.testing.assert_close(lse.double(), torch.logsumexp(scores, dim=-1), rtol=tol, atol=tol)
            # with a scale and a per-row key bias (the single track's token mask)
            key_bias = torch.randn(rows, keys).to(dtype)
            key_bias[1, 60:] = -1e6 if dtype == torch.float32 else -6e4
            scores = 0.3 * (q.double() @ k.double().mT) + bias.double() + key_bias.double()[:, None, None]
            want = torch.softmax(scores, dim=-1) @ v.double()
            # as configured
            name = "CONFIG_FLOAT32" if dtype == torch.float32 else "CONFIG"
            saved = getattr(triton_attention, name)
            variants = [saved]
            if dtype == torch.float32:  # float32 dots on CUDA cores and as three TF32 products
                variants += [{**saved, "FLOAT32_PRECISION": p} for p in ("ieee", "tf32x3")
                             if p != saved.get("FLOAT32_PRECISION")]
            for config in variants:
                setattr(triton_attention, name, config)
                try:
                    out, lse = triton_attention.shared_bias_attention(
                        q, k, v, bias, key_bias=key_bias, scale=0.3)
                finally:
                    setattr(triton_attention, name, saved)
                torch.testing.assert_close(out.double(), want, rtol=tol, atol=tol)
                torch.testing.assert_close(lse.double(), torch.logsumexp(scores, dim=-1),
                                           rtol=tol, atol=tol)


class NoGuard:
    """Stands in for LargestTensor: the interpreter copies whole storages to the host, which
    says nothing about the layer's memory (the GPU runs have the guard's measurements)."""

    numel = 0

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def check_layer_norm_alone() -> None:
    torch.manual_seed(0)
    norm = torch.nn.LayerNorm(24)
    with torch.no_grad():
        norm.weight.normal_()
        norm.bias.normal_()
    channel_last = torch.randn(2, 70, 24) * 3 + 1
    channel_first = (torch.randn(2, 24, 7, 10) * 3 + 1).flatten(2).movedim(1, -1)  # [2, 70, 24]
    for x in (channel_last, channel_first):
        want = norm(x.contiguous())
        for dtype, tol in ((torch.float32, 1e-5), (torch.float16, 2e-3)):
            got = triton_layer_norm.layer_norm(norm, x, dtype)
            assert got.dtype == dtype and got.is_contiguous()
            torch.testing.assert_close(got.float(), want.detach(), rtol=tol, atol=tol)


def check_layer_norm_offsets_past_2_31() -> None:
    """A channel-first block whose channel stride × channels passes 2^31 elements, as the
    triangle multiplication's product is from ~4,100 tokens on one GPU: int32 offsets wrapped
    there and the H100 runs at 4,800 / 6,000 tokens ended in NaN coordinates."""
    channels, stride = 128, 2**24 + 2**20  # (channels - 1) · stride ≈ 2.26e9 > 2^31
    storage = torch.empty(channels * stride, dtype=torch.float16)  # untouched pages: virtual
    x = storage.as_strided((1, 3, channels), (0, 1, stride))
    x.copy_(torch.randn(1, 3, channels))
    norm = torch.nn.LayerNorm(channels)
    with torch.no_grad():
        norm.weight.normal_()
        norm.bias.normal_()
    got = triton_layer_norm.layer_norm(norm, x, torch.float32)
    torch.testing.assert_close(got, norm(x.float().contiguous()).detach(), rtol=2e-3, atol=2e-3)


def check_gated_projection_alone() -> None:
    torch.manual_seed(0)
    for dtype, tol in ((torch.float32, 1e-5), (torch.float16, 2e-2)):
        for rows in (10, 70):  # one weight block, and three (32 rows each under the interpreter)
            x = torch.randn(2, 50, 24).to(dtype)  # 50 positions, 24 channels: off the blocks
            w_p, w_g = torch.randn(rows, 24), torch.randn(rows, 24)
            keep = (torch.rand(2, 1, 50) > 0.3).to(dtype)
            p = w_p.to(dtype).double() @ x.double().mT  # [2, rows, 50]
            g = w_g.to(dtype).double() @ x.double().mT
            for mask in (None, keep):
                got = triton_gated_projection.gated_projection(x, w_p, w_g, mask)
                want = p * torch.sigmoid(g) * (1.0 if mask is None else mask.double())
                assert got.dtype == dtype and got.shape == (2, rows, 50)
                torch.testing.assert_close(got.double(), want, rtol=tol, atol=tol)
            # the pair transition's: silu(fc1(x)) · fc2(x), channel-last
            got = triton_gated_projection.gated_projection(x, w_p, w_g, gate="silu",
                                                           channel_last=True)
            want = (torch.nn.functional.silu(p) * g).mT
            assert got.dtype == dtype and got.shape == (2, 50, rows)
            torch.testing.assert_close(got.double(), want, rtol=tol, atol=tol)


def check_transition_alone() -> None:
    from boltz.model.layers.transition import Transition

    from foldcp.model.weights import randomize_weights

    for dtype, tol in ((torch.float32, 1e-5), (torch.float16, 1e-2)):
        # hidden 40 (two 32-unit slices under the interpreter, the second partial) and 96
        for channels, hidden in ((16, 40), (32, 96)):
            transition = Transition(channels, hidden).double()
            randomize_weights(transition, seed=5, std=0.3)
            torch.manual_seed(1)
            block = torch.randn(2, 9, 12, channels, dtype=torch.float64)
            x = block[:, 1:8, 2:11]  # a strided view: rows and columns off the whole block
            with torch.inference_mode():
                want = x + transition(x)
            got = block.float()
            got_view = got[:, 1:8, 2:11]
            with torch.inference_mode():
                out = triton_transition.add_transition_(got_view, transition.float(), dtype)
            assert out is got_view
            torch.testing.assert_close(got_view.double(), want, rtol=tol, atol=tol)
            outside = torch.ones(block.shape[:3], dtype=torch.bool)
            outside[:, 1:8, 2:11] = False
            assert torch.equal(got[outside], block.float()[outside])  # nothing else written
            assert (want - x).abs().mean() > 0.1  # a real update


def check_gated_output_alone() -> None:
    torch.manual_seed(2)
    for dtype, tol in ((torch.float32, 1e-5), (torch.float16, 1e-2)):
        for heads, width, channels in ((2, 4, 8), (3, 4, 12), (4, 8, 16)):  # 12: off the blocks
            # Boltz-2's has no bias; a bias is added where one is
            linear_o = torch.nn.Linear(heads * width, channels, bias=channels == 12).double()
            torch.nn.init.normal_(linear_o.weight, std=0.3)
            if linear_o.bias is not None:
                torch.nn.init.normal_(linear_o.bias)
            rows, cols = 5, 7
            # o as the attention leaves it: [B, r, J, H, d] viewed from [B, r, H, J, d] memory
            o = torch.randn(2, rows, heads, cols, width).to(dtype).transpose(2, 3)
            # g a quarter of a q|k|v|g GEMM's output: strided rows
            g = torch.randn(2, rows, cols, 4 * heads * width).to(dtype)[..., -heads * width:]
            gated = o.double() * torch.sigmoid(g.double().view(o.shape))
            update = linear_o(gated.reshape(2, rows, cols, -1))
            for transposed in (False, True):
                shape = (cols + 3, rows + 2) if transposed else (rows + 2, cols + 3)
                base = torch.randn(2, *shape, channels, dtype=torch.float64)
                whole = base.transpose(1, 2) if transposed else base
                z = whole[:, 1:rows + 1, 2:cols + 2]  # [B, r, J, C] view, strided either way
                want = z + update
                got_base = base.float()
                got_whole = got_base.transpose(1, 2) if transposed else got_base
                target = got_whole[:, 1:rows + 1, 2:cols + 2]
                with torch.inference_mode():
                    out = triton_gated_output.add_gated_output_(target, o, g, linear_o.float())
                assert out is target
                torch.testing.assert_close(target.double(), want.detach(), rtol=tol, atol=tol)
                outside = torch.ones(got_whole.shape[:3], dtype=torch.bool)
                outside[:, 1:rows + 1, 2:cols + 2] = False
                assert torch.equal(got_whole[outside], whole.float()[outside])  # nothing else
            assert update.abs().mean() > 0.1


def check_product_output_alone() -> None:
    from boltz.model.layers.triangular_mult import TriangleMultiplicationOutgoing

    from foldcp.model.weights import randomize_weights

    for dtype, tol in ((torch.float32, 1e-5), (torch.float16, 1e-2)):
        for channels in (8, 16):
            tri_mul = TriangleMultiplicationOutgoing(channels).double()
            randomize_weights(tri_mul, seed=6, std=0.3)
            torch.manual_seed(3)
            rows, cols = 5, 7
            # the product channel-first, a row chunk of a bigger block
            product = torch.randn(2, channels, rows + 3, cols, dtype=torch.float64)[:, :, 2:rows + 2]
            x = torch.randn(2, rows, cols + 2, channels).to(dtype)[:, :, 1:cols + 1]  # strided
            with torch.inference_mode():
                normed = tri_mul.norm_out(product.movedim(1, -1))
                update = tri_mul.p_out(normed) * torch.sigmoid(tri_mul.g_out(x.double()))
            base = torch.randn(2, rows + 2, cols + 3, channels, dtype=torch.float64)
            z = base[:, 1:rows + 1, 2:cols + 2]
            want = z + update
            got = base.float()
            target = got[:, 1:rows + 1, 2:cols + 2]
            with torch.inference_mode():
                out = triton_product_output.add_product_output_(
                    target, product.to(dtype), x, tri_mul.float())
            assert out is target
            torch.testing.assert_close(target.double(), want, rtol=tol, atol=tol)
            outside = torch.ones(got.shape[:3], dtype=torch.bool)
            outside[:, 1:rows + 1, 2:cols + 2] = False
            assert torch.equal(got[outside], base.float()[outside])  # nothing else written
            assert update.abs().mean() > 0.05


def check_product_output_offsets_past_2_31() -> None:
    """The triangle product's channel stride is its whole block's positions: at 128 channels
    channel offsets pass 2^31 from ~4,100 tokens on one GPU (int32 offsets wrapped there)."""
    from boltz.model.layers.triangular_mult import TriangleMultiplicationIncoming

    from foldcp.model.weights import randomize_weights

    channels, stride = 128, 2**24 + 2**20  # (channels - 1) · stride ≈ 2.26e9 > 2^31
    tri_mul = TriangleMultiplicationIncoming(channels)
    randomize_weights(tri_mul, seed=8, std=0.1)
    storage = torch.empty(channels * stride, dtype=torch.float16)  # untouched pages: virtual
    product = storage.as_strided((1, channels, 1, 3), (0, stride, 3, 1))
    product.copy_(torch.randn(1, channels, 1, 3))
    x = torch.randn(1, 1, 3, channels).to(torch.float16)
    z = torch.randn(1, 1, 3, channels)
    with torch.inference_mode():
        want = z.double() + tri_mul.p_out(tri_mul.norm_out(product.float().movedim(1, -1))).double() \
            * torch.sigmoid(tri_mul.g_out(x.float())).double()
        triton_product_output.add_product_output_(z, product, x, tri_mul)
    torch.testing.assert_close(z.double(), want, rtol=2e-2, atol=2e-2)


def count_kernel_calls(grid, kind, n, dtype, seed):
    calls = {"attention": 0, "layer_norm": 0, "gated_projection": 0, "transition": 0,
             "gated_output": 0, "product_output": 0}

    def counted(module, name, key):
        original = getattr(module, name)

        def wrapper(*args, **kwargs):
            calls[key] += 1
            return original(*args, **kwargs)
        setattr(module, name, wrapper)

    counted(triton_attention, "shared_bias_attention", "attention")
    counted(triton_layer_norm, "layer_norm", "layer_norm")
    counted(triton_gated_projection, "gated_projection", "gated_projection")
    counted(triton_transition, "add_transition_", "transition")
    counted(triton_gated_output, "add_gated_output_", "gated_output")
    counted(triton_product_output, "add_product_output_", "product_output")
    test_pairformer.LargestTensor = NoGuard
    compare_on_grid(grid, kind, n, dtype, seed)
    return calls


def token_transformer_vs_boltz(grid) -> int:
    """foldcp's token transformer on the fused path vs Boltz's (float32, multiplicity 2);
    returns this rank's attention-kernel calls."""
    from boltz.model.modules.transformersv2 import DiffusionTransformer
    from foldcp.distributed.diffusion import DistTokenTransformer, ShardedPairBias
    from foldcp.distributed.layout import Layout
    from foldcp.model.weights import randomize_weights

    depth, heads, dim, c_z, n, samples = 2, 2, 16, 8, 13, 2
    torch.manual_seed(0)
    serial = DiffusionTransformer(depth, heads, dim, dim).eval()
    projections = torch.nn.ModuleList(
        torch.nn.Sequential(torch.nn.LayerNorm(c_z), torch.nn.Linear(c_z, heads, bias=False))
        for _ in range(depth))
    randomize_weights(serial, seed=2, std=0.3)
    randomize_weights(projections, seed=3, std=0.3)
    gen = torch.Generator().manual_seed(4)
    a = torch.randn(samples, n, dim, generator=gen)
    s = torch.randn(samples, n, dim, generator=gen)
    z = torch.randn(1, n, n, c_z, generator=gen)
    mask = torch.ones(samples, n)
    mask[:, 4] = 0
    layout = Layout.for_tokens(grid, n)
    calls = [0]
    original = triton_attention.shared_bias_attention

    def counted(*args, **kwargs):
        calls[0] += 1
        return original(*args, **kwargs)

    triton_attention.shared_bias_attention = counted
    with torch.inference_mode():
        bias = torch.cat([projection(z) for projection in projections], dim=-1)
        want = serial(a, s, bias=bias, mask=mask, multiplicity=samples)
        sharded = ShardedPairBias(layout.shard_pair(z), projections)
        got = DistTokenTransformer(serial, layout)(a, s, sharded, mask=mask, multiplicity=samples)
    real = mask[0] > 0
    assert want.abs().mean() > 1e-2
    torch.testing.assert_close(got[:, real], want[:, real], rtol=1e-5, atol=2e-5)
    return calls[0]


def main() -> None:
    assert os.environ.get("TRITON_INTERPRET") == "1", "run with TRITON_INTERPRET=1"
    check_kernel_alone()
    check_layer_norm_alone()
    check_layer_norm_offsets_past_2_31()
    check_gated_projection_alone()
    check_transition_alone()
    check_gated_output_alone()
    check_product_output_alone()
    check_product_output_offsets_past_2_31()
    fused_attention.fused_available = lambda q: True  # the forked ranks inherit it
    os.environ["FOLDCP_GATED_KERNEL"] = "0"  # the forked ranks inherit it: GEMMs + gates here
    os.environ["FOLDCP_FUSED_TRANSITION"] = "0"  # and the transition unfused
    os.environ["FOLDCP_GATED_OUTPUT_KERNEL"] = "0"  # and the triangle attention's output
    os.environ["FOLDCP_PRODUCT_OUTPUT_KERNEL"] = "0"  # and the triangle multiplication's
    for kind, rows, cols in (("tri_att_start", 1, 1), ("tri_att_end", 1, 1), ("tri_att_end", 1, 2),
                             ("tri_mul_in", 2, 1), ("attention", 1, 1), ("attention", 1, 2),
                             ("layer", 2, 1)):
        calls = run_on_grid(rows, cols, count_kernel_calls, kind, 21, torch.float32, 12)
        for rank_calls in calls:
            assert rank_calls["layer_norm"] > 0, (kind, rows, cols, calls)
            assert rank_calls["attention"] > 0 or kind.startswith("tri_mul"), (kind, rows, cols, calls)
            assert rank_calls["gated_projection"] == 0, (kind, rows, cols, calls)  # turned off
            assert rank_calls["transition"] == 0, (kind, rows, cols, calls)
            assert rank_calls["gated_output"] == 0, (kind, rows, cols, calls)
            assert rank_calls["product_output"] == 0, (kind, rows, cols, calls)
    del os.environ["FOLDCP_GATED_KERNEL"]  # the default: the gated-projection kernel on
    # the unfused transition takes the gated kernel's silu path (GPUs that cannot build the
    # fused transition)
    calls = run_on_grid(2, 1, count_kernel_calls, "layer", 21, torch.float32, 12)
    assert all(c["gated_projection"] > 0 and c["transition"] == 0 for c in calls), calls
    del os.environ["FOLDCP_FUSED_TRANSITION"]  # the default: the transition fused
    del os.environ["FOLDCP_GATED_OUTPUT_KERNEL"]  # and the triangle attention's output
    del os.environ["FOLDCP_PRODUCT_OUTPUT_KERNEL"]  # and the triangle multiplication's
    for kind, rows, cols in (("tri_mul_out", 1, 1), ("tri_mul_in", 1, 2), ("layer", 2, 1),
                             ("layer", 1, 2)):
        calls = run_on_grid(rows, cols, count_kernel_calls, kind, 21, torch.float32, 12)
        assert all(rank_calls["gated_projection"] > 0 for rank_calls in calls), (kind, calls)
        expected = 1 if kind == "layer" else 0  # one call per layer: the whole block at once
        assert all(rank_calls["transition"] == expected for rank_calls in calls), (kind, calls)
        # in a layer the starting node adds into z through it, and on grids of one row the
        # ending node too (with more rows its transposed update is added afterwards)
        # in a layer the incoming triangle multiplication adds into z (the outgoing one too
        # where the caller hands z over; the tri_mul kinds return their update)
        assert all((rank_calls["product_output"] >= 1) == (kind == "layer") for rank_calls in calls), \
            (kind, calls)
        least = 0 if kind != "layer" else 2 if rows == 1 else 1
        assert all((rank_calls["gated_output"] >= least) and (least or not rank_calls["gated_output"])
                   for rank_calls in calls), (kind, calls)
    for rows, cols in ((1, 1), (1, 2)):
        calls = run_on_grid(rows, cols, token_transformer_vs_boltz)
        assert all(count == 2 for count in calls), (rows, cols, calls)  # one per layer
    print("all checks passed")


if __name__ == "__main__":
    main()
