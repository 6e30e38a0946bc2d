"""Communication primitives for context parallelism, each with an explicit post / wait.

`post` starts the transfer and returns a `Pending`; the caller computes on what it already
holds and calls `wait()` only when it needs the data, so transfers overlap with compute.
Everything is plain torch.distributed (NCCL on GPUs, gloo on CPU); point-to-point messages
address global ranks.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.distributed as dist

from foldcp.distributed.grid import Grid


@dataclass
class Pending:
    """Posted operations; `wait()` completes them and returns the received tensor(s)."""

    works: list = field(default_factory=list)
    result: object = None

    def wait(self):
        for work in self.works:
            work.wait()
        self.works = []
        return self.result


class RingShift:
    """Shift tensors around a ring of ranks (a grid row or column).

    Each rank sends to the rank `distance` places before it and receives from the one
    `distance` places after it: shifting by one step at a time, after t steps a rank holds the
    block that started t places further along; `post(tensors, distance=t)` fetches that block
    in one transfer (straight from its owner, who may send different tensors to each
    distance). Post the next transfer while computing on the current block (double buffering).
    Received tensors have the shapes of the ones sent; distance 0 (mod the ring) returns the
    tensors themselves.
    """

    def __init__(self, ranks: list[int], me: int) -> None:
        self.ranks = ranks
        self.index = ranks.index(me)

    def post(self, tensors: list[torch.Tensor], distance: int = 1) -> Pending:
        size = len(self.ranks)
        if distance % size == 0:
            return Pending([], tensors)
        send_to = self.ranks[(self.index - distance) % size]
        recv_from = self.ranks[(self.index + distance) % size]
        received = [torch.empty(t.shape, dtype=t.dtype, device=t.device) for t in tensors]
        ops = []
        for sent, buffer in zip(tensors, received):
            ops.append(dist.P2POp(dist.isend, sent.contiguous(), send_to))
            ops.append(dist.P2POp(dist.irecv, buffer, recv_from))
        # One batch: NCCL runs unbatched sends/receives one after another on a stream, and a
        # send that waits for its peer's receive would then deadlock the ring.
        return Pending(dist.batch_isend_irecv(ops), received)


class GroupBroadcast:
    """Broadcast a block from one member of a process group to the others."""

    def __init__(self, group, ranks: list[int], me: int) -> None:
        self.group = group
        self.ranks = ranks
        self.me = me

    def post(self, tensor: torch.Tensor | None, shape, dtype, device, src_index: int) -> Pending:
        """`tensor` is the payload on the source (ignored elsewhere)."""
        src = self.ranks[src_index]
        if src == self.me:
            buffer = tensor.contiguous()
        else:
            buffer = torch.empty(shape, dtype=dtype, device=device)
        if len(self.ranks) == 1:
            return Pending([], buffer)
        work = dist.broadcast(buffer, src, group=self.group, async_op=True)
        return Pending([work], buffer)


def grid_group(grid: Grid):
    """The group of every rank of the grid (None on a grid of one)."""
    return dist.group.WORLD if grid.size > 1 else None


def all_reduce(tensor: torch.Tensor, group, op=dist.ReduceOp.SUM) -> torch.Tensor:
    """All-reduce over a group (no-op for a group of one); use the returned tensor.

    NCCL needs contiguous buffers (einsum outputs are often permuted views), so a
    non-contiguous input is reduced in a contiguous copy.
    """
    if group is not None and dist.get_world_size(group) > 1:
        tensor = tensor.contiguous()
        dist.all_reduce(tensor, op=op, group=group)
    return tensor


def all_gather_cat(tensor: torch.Tensor, group, dim: int) -> torch.Tensor:
    """Concatenate the group members' tensors (equal shapes) along `dim`, in rank order."""
    if group is None or dist.get_world_size(group) == 1:
        return tensor
    parts = [torch.empty_like(tensor) for _ in range(dist.get_world_size(group))]
    dist.all_gather(parts, tensor.contiguous(), group=group)
    return torch.cat(parts, dim=dim)


def transpose_pair(x: torch.Tensor, grid: Grid, n_padded: int, pair_dims: tuple[int, int] = (1, 2)
                   ) -> torch.Tensor:
    """Natural layout of X → natural layout of Xᵀ: rank (p, q) ends with Xᵀ[R_p, C_q].

    x: X[R_p, C_q] on rank (p, q), its pair dimensions at `pair_dims` — [B, |R_p|, |C_q|, ...]
    by default, [B, D, |R_p|, |C_q|] for channel-first blocks with pair_dims=(2, 3). Rank (p, q)
    needs X[C_q, R_p]; the piece X[R_s ∩ C_q, C_t ∩ R_p] comes from rank (s, t). On a square
    grid this is a swap with rank (q, p); on r != c grids each rank exchanges with up to
    (r+c-1)² others. Returns the same layout as x, contiguous.
    """
    if grid.size == 1:
        return x.transpose(*pair_dims).contiguous()
    # Work on a view with the pair dimensions at 1, 2; the result is stored in x's layout.
    view = x.movedim(pair_dims, (1, 2))
    r0, r1 = grid.row_range(n_padded)
    c0, c1 = grid.col_range(n_padded)
    stored = x.new_empty(x.shape)  # Xᵀ[R_p, C_q], contiguous in x's layout
    out = stored.movedim(pair_dims, (1, 2)).transpose(1, 2)  # X[C_q, R_p]: a view of it
    ops, landing = [], []
    for p in range(grid.rows):
        for q in range(grid.cols):
            peer = grid.rank_of(p, q)
            # what I send to (p, q): X[R_me ∩ C_q', C_me ∩ R_p']
            dr0, dr1 = grid.row_range(n_padded, p)
            dc0, dc1 = grid.col_range(n_padded, q)
            rows = (max(r0, dc0), min(r1, dc1))
            cols = (max(c0, dr0), min(c1, dr1))
            if rows[0] < rows[1] and cols[0] < cols[1]:
                piece = view[:, rows[0] - r0 : rows[1] - r0, cols[0] - c0 : cols[1] - c0].contiguous()
                if peer == grid.rank:
                    out[:, rows[0] - c0 : rows[1] - c0, cols[0] - r0 : cols[1] - r0] = piece
                else:
                    ops.append(dist.P2POp(dist.isend, piece, peer))
            # what I receive from (p, q): X[R_p' ∩ C_me, C_q' ∩ R_me]
            if peer == grid.rank:
                continue
            rows = (max(dr0, c0), min(dr1, c1))
            cols = (max(dc0, r0), min(dc1, r1))
            if rows[0] < rows[1] and cols[0] < cols[1]:
                target = out[:, rows[0] - c0 : rows[1] - c0, cols[0] - r0 : cols[1] - r0]
                buffer = torch.empty(target.shape, dtype=x.dtype, device=x.device)
                ops.append(dist.P2POp(dist.irecv, buffer, peer))
                landing.append((target, buffer))
    # All sends and receives in one batch (see RingShift.post), then land the pieces.
    if ops:
        for work in dist.batch_isend_irecv(ops):
            work.wait()
    for target, buffer in landing:
        target.copy_(buffer)
    return stored


def gather_pair(block: torch.Tensor, grid: Grid, n_padded: int, dst: int = 0) -> torch.Tensor | None:
    """Assemble the whole padded pair tensor on rank `dst` (tests and I/O only)."""
    if grid.size == 1:
        return block
    parts = [torch.empty_like(block) for _ in range(grid.size)] if grid.rank == dst else None
    dist.gather(block.contiguous(), parts, dst=dst)
    if grid.rank != dst:
        return None
    full = block.new_zeros((block.shape[0], n_padded, n_padded, *block.shape[3:]))
    for rank, part in enumerate(parts):
        rows, cols = grid.block_of(n_padded, rank)
        full[:, rows, cols] = part
    return full


def all_gather_pair(block: torch.Tensor, grid: Grid, n_padded: int,
                    channels_per_round: int = 32) -> torch.Tensor:
    """The whole padded pair tensor [B, N', N', C] on every rank, from the blocks [B, |R_p|,
    |C_q|, C] (sampling with the pair representation replicated: replicated_sampling.py).
    Gathered `channels_per_round` channels at a time, so what it holds beside the result is
    that share of it."""
    if grid.size == 1:
        return block
    channels = block.shape[-1]
    full = block.new_empty((block.shape[0], n_padded, n_padded, channels))
    for c0 in range(0, channels, channels_per_round):
        c1 = min(channels, c0 + channels_per_round)
        piece = block[..., c0:c1].contiguous()
        parts = [torch.empty_like(piece) for _ in range(grid.size)]
        dist.all_gather(parts, piece)
        for rank, part in enumerate(parts):
            rows, cols = grid.block_of(n_padded, rank)
            full[:, rows, cols, c0:c1] = part
        del parts
    return full


def scatter_pair(full: torch.Tensor | None, grid: Grid, n_padded: int, like: torch.Tensor,
                 src: int = 0) -> torch.Tensor:
    """Inverse of gather_pair: rank `src` holds the whole tensor, every rank gets its block.

    `like` gives the block's dtype and trailing shape on every rank.
    """
    r0, r1 = grid.row_range(n_padded)
    c0, c1 = grid.col_range(n_padded)
    block = like.new_empty((like.shape[0], r1 - r0, c1 - c0, *like.shape[3:]))
    if grid.size == 1:
        block.copy_(full)
        return block
    parts = None
    if grid.rank == src:
        parts = []
        for rank in range(grid.size):
            rows, cols = grid.block_of(n_padded, rank)
            parts.append(full[:, rows, cols].contiguous())
    dist.scatter(block, parts, src=src)
    return block
