"""LESSR specifics beyond the contract suite."""

import torch

from seqrec.models import build_model


def test_item_rows_start_at_norm_one_as_the_references_max_norm_lookup_leaves_them():
    torch.manual_seed(0)
    model = build_model("lessr", 500, {"dim": 32})
    norms = model.items.weight.detach().norm(dim=-1)
    assert float(norms[0]) == 0.0                                            # padding row
    assert torch.allclose(norms[1:], torch.ones(500), atol=1e-5)
    assert torch.allclose(model.item_embeddings(), model.items.weight, atol=1e-6)  # the rescaling is then ~identity
