"""How many rows one chunk of a chunked computation takes (the custom autograd functions that recompute their
large intermediates chunk by chunk: MoL's gathered scores, the loss's gathered negatives, HSTU's fused attention).
"""

from __future__ import annotations

import torch


def chunk_rows(values_per_row: int, per_thread: int, device: torch.device, accelerator: int) -> int:
    """Rows per chunk: `per_thread` intermediate values for each CPU thread (so a chunk stays in cache), or
    `accelerator` values on another device; at least one row."""
    budget = per_thread * torch.get_num_threads() if device.type == "cpu" else accelerator
    return max(1, budget // max(1, values_per_row))
