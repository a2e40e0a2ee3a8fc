"""Training speed per step of models against SASRec on the same ML-1M batches (HSTU; the model zoo).

Builds each pair's trainers on the ML-1M SASRec file (leave-one-out training rows, max length 200), then times
full training steps (batch, forward, sampled-softmax loss, backward, AdamW step) in interleaved rounds: each
round runs every config on the same batches, so background load hits every config alike. Reports the median
milliseconds per step and the ratio to the pair's SASRec. Pairs (the HSTU paper's ML-1M settings):

- `configs/ml1m_hstu.yaml` (2 blocks, 1 head, dims 50) vs `configs/ml1m_sasrec_sampled.yaml` (2 blocks, 1 head, D 50);
- `configs/ml1m_hstu_large.yaml` (8 blocks, 2 heads, dims 25 per head) vs the SASRec config with 8 blocks and
  2 heads.

Target (the HSTU issue): HSTU's seconds per epoch at most 1.5x SASRec's at the same depth and width.

`--set zoo` times the ML-1M configs of the model zoo instead (`configs/ml1m_<model>.yaml`: SASRec, GRU4Rec,
BERT4Rec, NextItNet, full softmax CE); target (the model-zoo issue): NextItNet at most 2x SASRec. `--set
sessions` times SR-GNN, GC-SAN and LESSR on ML-1M (`configs/ml1m_<model>.yaml`, max length 50, one row per
prefix: ~3,834 steps an epoch against SASRec's 47) for their seconds-per-epoch estimates. `--set ml1m` times every
shipped ML-1M sequence config (`configs/ml1m_*.yaml` but the session models and Pop), the figures the
reproduction table quotes. `--set short` times GRU4Rec (packed and over the padded width) against SASRec on a
log of short histories (Amazon Video Games, SASRec's file: mean length 9.3, windows of 50). `--set precision`
times SASRec (full CE) and HSTU-large in fp32 and with `train.precision=bf16`. `--set mol` times HSTU-large with
and without the MoL similarity; `--set scores` HSTU and SASRec-sampled with their per-position negatives scored
through all-items products and through chunked gathers (the loss's two paths, switched within one process);
`--set fused` HSTU and HSTU-large with the plain and the fused attention (also switched within one process);
`--set micro --batching config` SASRec, BERT4Rec and HSTU-large on random batches, on the same random batches cut
into 4 or 8 length-sorted parts (`train.micro_batches`: the same steps with less padding) and on length batches.

`--full-epochs` times whole epochs instead of sampled steps (each round is one epoch of every config, all of its
batches): the training seconds per epoch measured, not estimated. Run it alone: speed figures count only when
nothing else shares the cores; the results file records the load average before and after.

    SEQREC_DATA=../shared/datasets python benchmarks/bench_step_speed.py [--set hstu|zoo] [--rounds 5] [--steps 6]
        [--with train.precision=bf16]

Writes `benchmarks/results/step_speed_<set>.json`.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import platform
import statistics
import sys
import time
from datetime import date
from pathlib import Path

HERE = Path(__file__).resolve().parent
CONFIGS = HERE.parent / "configs"
CASES = {
    "sasrec (2 blocks)": ("ml1m_sasrec_sampled.yaml", []),
    "hstu (2 blocks)": ("ml1m_hstu.yaml", []),
    "sasrec (8 blocks, 2 heads)": ("ml1m_sasrec_sampled.yaml", ["model.num_blocks=8", "model.num_heads=2"]),
    "hstu-large (8 blocks, 2 heads)": ("ml1m_hstu_large.yaml", []),
}
PAIRS = {"hstu (2 blocks)": "sasrec (2 blocks)", "hstu-large (8 blocks, 2 heads)": "sasrec (8 blocks, 2 heads)"}
ZOO = {name: (f"ml1m_{name}.yaml", []) for name in ("sasrec", "gru4rec", "bert4rec", "nextitnet")}
ZOO_PAIRS = {name: "sasrec" for name in ("gru4rec", "bert4rec", "nextitnet")}
SESSIONS = {name: (f"ml1m_{name}.yaml", []) for name in ("sasrec", "srgnn", "gcsan", "lessr")}
SESSION_PAIRS = {name: "sasrec" for name in ("srgnn", "gcsan", "lessr")}
ML1M = {name: (f"ml1m_{name}.yaml", []) for name in ("sasrec", "sasrec_sampled", "gru4rec", "bert4rec", "nextitnet",
                                                      "hstu", "hstu_large", "hstu_large_mol")}
ML1M_PAIRS = {"gru4rec": "sasrec", "bert4rec": "sasrec", "nextitnet": "sasrec", "hstu": "sasrec_sampled"}
VIDEO = ["data.path=${SEQREC_DATA}/amazon-video-sasrec/Video.txt", "model.max_len=50"]
SHORT = {"sasrec": ("ml1m_sasrec.yaml", VIDEO), "gru4rec (packed)": ("ml1m_gru4rec.yaml", VIDEO),
         "gru4rec (padded)": ("ml1m_gru4rec.yaml", [*VIDEO, "model.packed=false"])}
SHORT_PAIRS = {"gru4rec (packed)": "sasrec", "gru4rec (padded)": "sasrec"}
# `--set precision`: the shipped ML-1M configs in fp32 and with `train.precision: bf16` (bf16 matrix products in the
# encoder and the full softmax; the ratio is bf16 / fp32)
PRECISION = {"sasrec": ("ml1m_sasrec.yaml", []), "sasrec (bf16)": ("ml1m_sasrec.yaml", ["train.precision=bf16"]),
             "hstu_large": ("ml1m_hstu_large.yaml", []),
             "hstu_large (bf16)": ("ml1m_hstu_large.yaml", ["train.precision=bf16"])}
PRECISION_PAIRS = {"sasrec (bf16)": "sasrec", "hstu_large (bf16)": "hstu_large"}
# `--set mol`: HSTU-large with and without the mixture-of-logits similarity (the ratio is MoL's cost)
# (hstu_large_mol: the RAILS reference's MoL; "additive": seqrec's additive gate, the config's settings before
# 2026-12-05's evening)
MOL_ADDITIVE = ["model.mol_gating=additive", "model.mol_query_components=null", "model.mol_query_hidden=0",
                "model.mol_item_dropout=0", "model.mol_gate_hidden=null", "model.mol_gate_dropout=0",
                "model.mol_balance=0", "model.mol_user_buckets=0", "model.mol_user_dropout=0", "model.mol_user_l2=0",
                "model.mol_dim=32", "model.output_norm=l2", "train.weight_decay=0"]
MOL = {"hstu_large": ("ml1m_hstu_large.yaml", []), "hstu_large_mol": ("ml1m_hstu_large_mol.yaml", []),
       "hstu_large_mol (additive gate)": ("ml1m_hstu_large_mol.yaml", MOL_ADDITIVE)}
MOL_PAIRS = {"hstu_large_mol": "hstu_large", "hstu_large_mol (additive gate)": "hstu_large"}
# `--set scores`: per-position negatives scored through all-items products (the loss's path for catalogues of at
# most 8 table rows per negative) against chunked gathers of the drawn vectors (its path beyond), same process
SCORES = {f"{name} ({path})": (f"ml1m_{name}.yaml", []) for name in ("hstu", "sasrec_sampled")
          for path in ("all-items scores", "gathered")}
SCORES_PAIRS = {f"{name} (gathered)": f"{name} (all-items scores)" for name in ("hstu", "sasrec_sampled")}
# `--set fused`: HSTU's blocks with their attention maps made whole (autograd) or a few rows at a time
FUSED = {f"{name} ({path})": (f"ml1m_{name}.yaml", []) for name in ("hstu", "hstu_large")
         for path in ("plain attention", "fused attention")}
FUSED_PAIRS = {f"{name} (fused attention)": f"{name} (plain attention)" for name in ("hstu", "hstu_large")}
# module settings a case steps under (restored after it): {case: {(module, attribute): value}}
# random batches padded to their longest row, the same batches cut into 4 or 8 length-sorted parts (micro_batches),
# and length batching; run with --batching config (each case's own batching)
MICRO = {f"{name} ({label})": (f"ml1m_{name}.yaml", overrides) for name in ("sasrec", "bert4rec", "hstu_large")
         for label, overrides in (("random", ["train.batching=random"]),
                                  ("random, 4 parts", ["train.batching=random", "train.micro_batches=4"]),
                                  ("random, 8 parts", ["train.batching=random", "train.micro_batches=8"]),
                                  ("length", ["train.batching=length"]))}
MICRO_PAIRS = {f"{name} ({label})": f"{name} (random)" for name in ("sasrec", "bert4rec", "hstu_large")
               for label in ("random, 4 parts", "random, 8 parts", "length")}
SETTINGS = {**{f"{name} (all-items scores)": {("seqrec.train.losses", "DENSE_ROWS_PER_NEGATIVE"): 10 ** 9}
               for name in ("hstu", "sasrec_sampled")},
            **{f"{name} (plain attention)": {("seqrec.models.layers.hstu", "FUSE_ATTENTION"): False}
               for name in ("hstu", "hstu_large")}}
SETS = {"hstu": (CASES, PAIRS), "mol": (MOL, MOL_PAIRS), "scores": (SCORES, SCORES_PAIRS),
        "fused": (FUSED, FUSED_PAIRS), "precision": (PRECISION, PRECISION_PAIRS), "zoo": (ZOO, ZOO_PAIRS),
        "sessions": (SESSIONS, SESSION_PAIRS), "ml1m": (ML1M, ML1M_PAIRS), "short": (SHORT, SHORT_PAIRS),
        "micro": (MICRO, MICRO_PAIRS)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--set", dest="which", default="hstu", choices=sorted(SETS), help="which configs")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds (the median is over them)")
    parser.add_argument("--steps", type=int, default=6, help="training steps per config per round")
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    parser.add_argument("--batching", default="random", choices=["random", "length", "config"],
                        help="train.batching for every config, or each config's own (config)")
    parser.add_argument("--full-epochs", action="store_true",
                        help="each round times one whole epoch of every config (--steps is ignored)")
    parser.add_argument("--with", dest="extra", action="append", default=[], metavar="KEY=VALUE",
                        help="a config override for every config (e.g. train.precision=bf16); repeatable")
    parser.add_argument("--result", default=None, help="default: results/step_speed_<set>.json")
    args = parser.parse_args()
    args.result = args.result or str(HERE / "results" / f"step_speed_{args.which}.json")
    cases, pairs = SETS[args.which]
    load_at_start = os.getloadavg()

    import numpy as np
    import torch

    from seqrec import api
    from seqrec.config import load_config
    from seqrec.models import build_model
    from seqrec.train.trainer import Trainer, length_batches

    torch.set_num_threads(args.threads)
    trainers, split = {}, None
    for name, (file, overrides) in cases.items():
        batching = [] if args.batching == "config" else [f"train.batching={args.batching}"]
        config = load_config(CONFIGS / file, [*overrides, "train.progress=false", *batching, *args.extra])
        split = split or api.load_split(config)
        torch.manual_seed(0)
        model = build_model(config.model.name, split.data.num_items, config.model.params)
        trainers[name] = Trainer(model, split, config)
        trainers[name].model.train()
    def epoch_batches(trainer) -> list:
        """One epoch's batches of a trainer's rows, drawn with the same seed for every config (configs of the
        same objective get the same batches)."""
        rng = np.random.default_rng(0)
        order = rng.permutation(trainer.starts.shape[0])
        size = trainer.train_cfg.batch_size
        if trainer.train_cfg.batching == "length":
            lengths = np.minimum(trainer.ends - trainer.starts, trainer.model.max_len + 1)
            return length_batches(order, lengths, size, rng)
        return [order[i:i + size] for i in range(0, order.shape[0] - size + 1, size)]

    def steps(name: str, chosen: list) -> float:
        """Seconds for `chosen` batches of the case `name`, under its loss settings."""
        settings = {(importlib.import_module(module), attribute): value
                    for (module, attribute), value in SETTINGS.get(name, {}).items()}
        saved = {key: getattr(*key) for key in settings}
        for (module, attribute), value in settings.items():
            setattr(module, attribute, value)
        try:
            started = time.perf_counter()
            for rows in chosen:
                trainers[name]._step(rows)
            return time.perf_counter() - started
        finally:
            for (module, attribute), value in saved.items():
                setattr(module, attribute, value)

    batches = {name: epoch_batches(trainer) for name, trainer in trainers.items()}
    for name in trainers:                                                      # warm-up
        steps(name, batches[name][:1])
    times: dict[str, list[float]] = {name: [] for name in trainers}
    for round_ in range(args.rounds):
        for name in trainers:
            chosen = (batches[name] if args.full_epochs
                      else batches[name][1 + round_ * args.steps: 1 + (round_ + 1) * args.steps])
            times[name].append(steps(name, chosen) / len(chosen) * 1000)
        print(f"round {round_ + 1}: " + ", ".join(f"{n} {t[-1]:.0f} ms" for n, t in times.items()), flush=True)
    rows = {name: {"ms_per_step_median": round(statistics.median(t), 1), "ms_per_step": [round(x, 1) for x in t],
                   "steps_per_epoch": len(batches[name]), "batching": trainers[name].train_cfg.batching,
                   "seconds_per_epoch_estimate": round(statistics.median(t) * len(batches[name]) / 1000, 1),
                   "parameters": sum(p.numel() for p in trainers[name].model.parameters())}
            for name, t in times.items()}
    for model, sasrec in pairs.items():
        rows[model]["ratio_to_sasrec"] = round(rows[model]["seconds_per_epoch_estimate"]
                                               / rows[sasrec]["seconds_per_epoch_estimate"], 2)   # per epoch
    result = {"date": date.today().isoformat(), "set": args.which, "threads": args.threads, "batching": args.batching,
              "overrides": args.extra, "rounds": args.rounds, "pairs": pairs,
              "steps_per_round": "epoch" if args.full_epochs else args.steps,
              "loadavg_1_5_15_at_start": [round(x, 2) for x in load_at_start],
              "loadavg_1_5_15_at_end": [round(x, 2) for x in os.getloadavg()],
              "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                          "torch": torch.__version__}, "cases": rows}
    Path(args.result).parent.mkdir(parents=True, exist_ok=True)
    Path(args.result).write_text(json.dumps(result, indent=1) + "\n")
    print("| config | ms/step (median) | steps/epoch | s/epoch (estimate) | x SASRec (epoch) | parameters |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, row in rows.items():
        print(f"| {name} | {row['ms_per_step_median']} | {row['steps_per_epoch']} | "
              f"{row['seconds_per_epoch_estimate']} | {row.get('ratio_to_sasrec', '-')} | {row['parameters']:,} |")
    print(f"wrote {args.result}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
