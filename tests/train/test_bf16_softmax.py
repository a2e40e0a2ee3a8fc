"""The full softmax's bf16 products (`train.precision: bf16`): the fused kernel with bf16 matrix-product inputs
against the fp32 kernel and against autograd's reference in fp64, in both block layouts."""

import pytest
import torch
import torch.nn.functional as F

from seqrec.models.layers.similarity import DotProduct
from seqrec.train.losses import _DotSoftmaxCE, full_softmax_ce


def _case(rows=700, dim=24, items=300, seed=0):
    g = torch.Generator().manual_seed(seed)
    states = (torch.randn(rows, dim, generator=g) * 0.6).requires_grad_()
    table = (torch.randn(items + 1, dim, generator=g) * 0.6).requires_grad_()
    targets = torch.randint(1, items + 1, (rows,), generator=g)
    return states, table, targets


def _reference(states, table, targets):
    """fp64 autograd: loss and gradients."""
    s, t = states.detach().double().requires_grad_(), table.detach().double().requires_grad_()
    loss = F.cross_entropy(s @ t[1:].T, targets - 1)
    loss.backward()
    return loss.item(), s.grad.float(), t.grad.float()


def _rel(a, b):
    return ((a - b).norm() / b.norm()).item()


@pytest.mark.parametrize("transposed", [False, True])
def test_bf16_products_stay_close_to_fp64(transposed):
    states, table, targets = _case()
    loss, grad_states, grad_table = _reference(states, table, targets)
    errors = {}
    for dtype in (None, torch.bfloat16):
        states.grad = table.grad = None
        value = _DotSoftmaxCE.apply(states, table, targets, transposed, dtype)
        value.backward()
        assert value.dtype == torch.float32 and states.grad.dtype == table.grad.dtype == torch.float32
        errors[dtype] = (abs(value.item() - loss) / loss, _rel(states.grad, grad_states), _rel(table.grad, grad_table))
        assert table.grad[0].abs().max() == 0                                   # the padding row gets nothing
    assert max(errors[None]) < 1e-5                                             # fp32: exact up to rounding
    loss_err, states_err, table_err = errors[torch.bfloat16]
    assert loss_err < 2e-3 and states_err < 2e-2 and table_err < 2e-2          # bf16: 8-bit mantissa inputs
    assert states_err > 1e-5                                                    # and the products did run in bf16


def test_full_softmax_ce_passes_the_type_only_to_the_dot_kernel():
    states, table, targets = _case(rows=50, items=40)
    fp32 = full_softmax_ce(states, targets, table, DotProduct())
    bf16 = full_softmax_ce(states, targets, table, DotProduct(), torch.bfloat16)
    assert fp32.item() != bf16.item() and abs(fp32.item() - bf16.item()) < 1e-2
