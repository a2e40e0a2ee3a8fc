"""GRU4Rec's packed recurrence: the same states as the GRU over the padded width, gradients included."""

import torch

from seqrec.data.batches import CausalBatch
from seqrec.models import build_model

N = 30
PARAMS = {"dim": 8, "hidden_size": 12, "num_layers": 2, "max_len": 10, "dropout": 0.0}


def rows() -> torch.Tensor:
    g = torch.Generator().manual_seed(3)
    items = torch.randint(1, N + 1, (5, 10), generator=g)
    lengths = torch.tensor([10, 1, 0, 6, 3])                                     # an empty row included
    keep = torch.arange(10)[None, :] >= (10 - lengths)[:, None]                  # right-aligned
    return items * keep


def states_and_grads(packed: bool, items: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
    torch.manual_seed(0)
    model = build_model("gru4rec", N, {**PARAMS, "packed": packed}).train()
    out = model(CausalBatch(items=items))
    (out * torch.linspace(-1, 1, out.numel()).view_as(out)).sum().backward()
    return out.detach(), [p.grad.clone() for p in model.parameters()]


def test_packed_equals_padded_states_and_gradients():
    items = rows()
    packed, packed_grads = states_and_grads(True, items)
    padded, padded_grads = states_and_grads(False, items)
    assert packed.shape == (5, 10, 8)
    assert torch.allclose(packed, padded, atol=1e-5)
    assert packed[2].abs().sum() == 0 and packed[1, :9].abs().sum() == 0          # padding stays zero
    assert packed[1, 9].abs().sum() > 0
    for a, b in zip(packed_grads, padded_grads, strict=True):
        assert torch.allclose(a, b, atol=1e-5)
