"""SASRec with the SASRec authors' block (`block: sasrec`): the contract's causality and padding properties,
`predict` equal to the last real state, and the block's formula checked by hand."""

import torch
import torch.nn.functional as F

from seqrec.data.batches import CausalBatch
from seqrec.models import build_model
from seqrec.models.layers.attention import TransformerBlock, attention_mask

N = 30
PARAMS = {"dim": 12, "num_blocks": 2, "num_heads": 2, "max_len": 10, "dropout": 0.0, "block": "sasrec",
          "activation": "relu", "positions": "from_start"}


def model():
    torch.manual_seed(0)
    return build_model("sasrec", N, PARAMS).eval()


def rows() -> torch.Tensor:
    g = torch.Generator().manual_seed(4)
    items = torch.randint(1, N + 1, (4, 10), generator=g)
    lengths = torch.tensor([10, 6, 1, 3])
    return items * (torch.arange(10)[None, :] >= (10 - lengths)[:, None])       # right-aligned


def test_no_future_leakage_and_predict_is_the_last_state():
    m = model()
    items = torch.randint(1, N + 1, (1, 10), generator=torch.Generator().manual_seed(1))
    before = m(CausalBatch(items))
    for t in range(9):
        changed = items.clone()
        changed[0, t + 1:] = torch.randint(1, N + 1, (9 - t,))
        assert torch.allclose(m(CausalBatch(changed))[0, :t + 1], before[0, :t + 1], atol=1e-5)
    batch = rows()
    assert torch.allclose(m.predict(batch), m(CausalBatch(batch))[:, -1], atol=1e-5)


def test_padding_does_not_change_states():
    m = model()
    right = rows()
    left = torch.zeros_like(right)
    for r in range(right.shape[0]):                                              # test-only reference
        real = right[r][right[r] != 0]
        left[r, :real.numel()] = real
    assert torch.allclose(m(CausalBatch(right))[right != 0], m(CausalBatch(left))[left != 0], atol=1e-5)
    assert torch.allclose(m.predict(right[:, 4:][1:]), m.predict(right)[1:], atol=1e-5)


def test_block_formula():
    torch.manual_seed(2)
    block = TransformerBlock(8, 1, 0.0, style="sasrec", activation="relu").eval()
    x = torch.randn(2, 5, 8)
    mask = attention_mask(torch.ones(2, 5, dtype=torch.bool), causal=True)
    q = block.norm1(x)
    w_q, w_k, w_v = block.attn.qkv.weight.split(8)
    b_q, b_k, b_v = block.attn.qkv.bias.split(8)
    scores = (F.linear(q, w_q, b_q) @ F.linear(x, w_k, b_k).transpose(1, 2)) / 8 ** 0.5
    attended = block.attn.out(scores.masked_fill(~mask[:, 0], float("-inf")).softmax(-1) @ F.linear(x, w_v, b_v))
    y = block.norm2(q + attended)
    expected = y + block.ffn.down(F.relu(block.ffn.up(y)))
    assert torch.allclose(block(x, mask), expected, atol=1e-5)
