"""Causal dilated 1-D convolution in the [B, L, C] layout the rest of seqrec uses (no transposes)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class CausalConv1d(nn.Module):
    """out[t] = W · concat(x[t], x[t - d], ..., x[t - (k-1)d]) + b, with zeros before the start of the row.

    The same function as a `Conv1d(kernel_size=k, dilation=d)` left-padded by (k - 1)·d; written as k shifted
    views and one matrix product, which is faster on CPU for the small channel counts of recommenders and keeps
    the sequence-major layout. The output at t never reads a position after t.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, dilation: int = 1) -> None:
        super().__init__()
        if kernel_size < 1 or dilation < 1:
            raise ValueError(f"kernel_size and dilation must be >= 1, got {kernel_size} and {dilation}")
        self.kernel_size, self.dilation = kernel_size, dilation
        self.linear = nn.Linear(in_channels * kernel_size, out_channels)

    def forward(self, x: Tensor) -> Tensor:
        length = x.shape[1]
        reach = (self.kernel_size - 1) * self.dilation
        padded = F.pad(x, (0, 0, reach, 0))                                        # [B, reach + L, C]
        # tap j reads x[t - j*d]; taps ordered from the current position backwards
        taps = [padded[:, reach - j * self.dilation: reach - j * self.dilation + length]
                for j in range(self.kernel_size)]
        return self.linear(torch.cat(taps, dim=-1))                                # [B, L, out]
