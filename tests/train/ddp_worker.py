"""A DDP worker for tests/train/test_distributed.py, started by torchrun (one process per rank).

    torchrun --standalone --nproc-per-node 2 tests/train/ddp_worker.py OUT_DIR [MICRO_BATCHES]

Trains one epoch of a small SASRec on the demo data (length batching) with the real Trainer under DDP (gloo),
from the weights every rank builds with the same seed, then ranks the test targets with the distributed
evaluator. Rank 0 saves the initial weights, the weights after the epoch, the epoch's global batches and the
gathered ranks to OUT_DIR; every rank saves the rows it trained on, so the test can check the shards and redo
the epoch in one process. MICRO_BATCHES (default 1) cuts each rank's rows into that many parts per step
(`train.micro_batches`): the one-process epoch it is compared with takes whole batches.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch

from seqrec import api
from seqrec.evaluate.ranking import target_ranks
from seqrec.models import build_model
from seqrec.train import distributed
from seqrec.train.trainer import Trainer

CONFIG = {"model": {"name": "sasrec", "dim": 16, "num_blocks": 1, "max_len": 20, "dropout": 0.0},
          "train": {"epochs": 1, "batch_size": 64, "seed": 3, "progress": False, "num_threads": 1,
                    "batching": "length"},
          "loss": {"name": "ce"}}


def main(out: Path, micro_batches: int = 1) -> None:
    config = api.make_config(**{**CONFIG, "train": {**CONFIG["train"], "micro_batches": micro_batches}})
    dist, device = distributed.setup(config.train.device, 120)
    torch.set_num_threads(1)
    torch.manual_seed(config.train.seed)
    split = api.load_split(config)
    model = build_model("sasrec", split.data.num_items, config.model.params)
    initial = {k: v.clone() for k, v in model.state_dict().items()}
    trainer = Trainer(model, split, config, dist=dist, device=device)
    batches = trainer.epoch_batches(1)
    trainer.rng = np.random.default_rng(config.train.seed)             # the epoch draws the batches again
    seen = []
    step = trainer._step

    def recording_step(rows, rng=None):
        seen.append(rows.copy())
        return step(rows, rng)

    trainer._step = recording_step
    trainer._train_epoch(1)
    ranks = target_ranks(model, split.test, batch_size=97, shard=(dist.rank, dist.world))
    gathered = distributed.sum_array(dist, ranks)
    torch.save({"rows": seen}, out / f"rows{dist.rank}.pt")
    if dist.is_main:
        torch.save({"initial": initial, "trained": model.state_dict(), "batches": batches,
                    "ranks": torch.from_numpy(gathered), "own_ranks": torch.from_numpy(ranks)}, out / "result.pt")
    distributed.teardown()


if __name__ == "__main__":
    main(Path(sys.argv[1]), *(int(arg) for arg in sys.argv[2:3]))
