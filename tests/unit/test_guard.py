"""LargestTensor, the tests' proof that no rank makes an N×N×C tensor: it counts what an op
allocates, not the views and in-place results that share an input's memory."""

import torch

from foldcp.distributed.guard import LargestTensor


def largest(fn):
    with torch.inference_mode(), LargestTensor() as guard:
        fn()
    return guard.numel, guard.op


def test_new_tensors_count_and_an_inputs_memory_does_not():
    weight = torch.nn.Linear(64, 8).weight  # a parameter: its views under inference mode too
    x = torch.zeros(4, 4)
    assert largest(lambda: weight.reshape(8, 8, 8)) == (0, None)
    assert largest(lambda: weight.t()) == (0, None)
    assert largest(lambda: x.add_(1)) == (0, None)
    numel, op = largest(lambda: weight.reshape(8, 8, 8) + 1)
    assert numel == 512 and op == torch.ops.aten.add.Tensor
    numel, op = largest(lambda: weight.contiguous().reshape(8, 64).t().contiguous())
    assert numel == 512  # the transposed copy (the first .contiguous() is the weight itself)


def test_an_input_resized_in_place_counts():
    x = torch.zeros(4)
    numel, op = largest(lambda: x.resize_(1000))
    assert numel == 1000 and op == torch.ops.aten.resize_.default


def test_sparse_and_meta_tensors_are_counted_without_error():
    sparse = torch.eye(6).to_sparse()
    assert largest(lambda: sparse * 2)[0] == 36
    assert largest(lambda: torch.zeros(10, device="meta") + torch.zeros(10, device="meta"))[0] == 10
