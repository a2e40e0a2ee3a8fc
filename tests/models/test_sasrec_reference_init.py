"""SASRec's reference-initialisation keys: `qkv_init: xavier` (torch's nn.MultiheadAttention in-projection, as in
the SASRec authors' PyTorch port) and `norm_eps` (their LayerNorm epsilon 1e-8)."""

import math

import torch
from torch import nn

from seqrec.models import build_model

PARAMS = {"dim": 64, "num_blocks": 2, "num_heads": 1, "max_len": 20, "block": "sasrec"}


def test_qkv_xavier_bound_and_rest_unchanged():
    torch.manual_seed(0)
    default = build_model("sasrec", 500, PARAMS)
    torch.manual_seed(0)
    xavier = build_model("sasrec", 500, {**PARAMS, "qkv_init": "xavier"})
    bound = math.sqrt(6 / (64 + 3 * 64))                                        # fan_in D, fan_out 3D
    for block in xavier.blocks:
        weight = block.attn.qkv.weight
        assert weight.abs().max() <= bound
        assert abs(weight.std().item() - bound / math.sqrt(3)) < 0.01           # uniform(-b, b): std b / sqrt 3
        assert block.attn.qkv.bias.abs().max() == 0
    for block in default.blocks:
        assert abs(block.attn.qkv.weight.std().item() - 0.02) < 0.002
    # the item table and the other linear layers keep the normal(0, 0.02) initialisation
    assert torch.equal(default.items.weight, xavier.items.weight)
    assert abs(xavier.blocks[0].attn.out.weight.std().item() - 0.02) < 0.002


def test_norm_eps_reaches_every_layer_norm():
    model = build_model("sasrec", 50, {**PARAMS, "norm_eps": 1e-8})
    norms = [m for m in model.modules() if isinstance(m, nn.LayerNorm)]
    assert len(norms) == 2 * 2 + 1 and all(m.eps == 1e-8 for m in norms)
    assert all(m.eps == 1e-5 for m in build_model("sasrec", 50, PARAMS).modules() if isinstance(m, nn.LayerNorm))
