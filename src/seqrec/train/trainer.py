"""The model-agnostic training loop: epochs, optimizer, clipping, validation, early stopping, checkpoints.

A run directory holds everything needed to understand and continue a run:

    config.yaml        the resolved configuration
    data.json          the data fingerprint (cache key, source, counts) and the split summary
    log.jsonl          one record per epoch: loss, validation metrics, seconds, sequences/s
    checkpoints/last.pt  model + optimizer + RNG state after the last finished epoch (for --resume)
    checkpoints/best.pt  model weights of the best validation epoch
    curves.png         training loss and the validation metric per epoch
    results.json       {"valid": {...}, "test": {...}} for the best epoch, plus when and how it was reached

`train.micro_batches` k > 1 cuts each step's rows, sorted by length, into k parts, each padded only to its own
longest row, and accumulates their gradients (each part's mean loss weighted by its share of the scored
positions): the whole batch's step at the cost of the parts' padding, so random batches (the references'
training) cost nearly what length batches do.

Resuming after a crash or `kill -9` restarts from the last finished epoch with its RNG state, so the resumed
run draws the same batches and dropout masks as an uninterrupted one.

Under DDP (`seqrec.train.distributed`, started by torchrun) every rank runs this same loop:

- `train.batch_size` is the GLOBAL batch: every rank draws the same seeded permutation (and, with length
  batching, the same batches) and takes its contiguous part of each batch, about batch_size / world rows, so the
  optimiser sees the same batches as one process and the learning rate keeps its meaning;
- the loss of each rank's part is scaled by (its scored positions x world / the global batch's positions), so
  the gradient DDP averages is exactly the gradient of the global batch's mean loss; with micro-batches only the
  last part's backward synchronises (`no_sync` before it), so ranks may cut different numbers of parts;
- draws that are per rank (dropout, uniform negatives, BERT4Rec's masks) come from generators seeded by
  (seed, epoch, rank), so a run resumes exactly with any number of ranks;
- evaluation batches are split between ranks and their ranks summed (`target_ranks(shard=...)`): the metrics are
  exactly the one-process ones; rank 0 decides whether to stop and tells the others;
- rank 0 alone writes the run directory and shows progress; every rank can resume from it.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import nn

from seqrec.data.batches import CausalBatch, data_side_inputs
from seqrec.data.splits import Split, Targets
from seqrec.errors import ConfigError
from seqrec.evaluate.metrics import metrics_from_ranks
from seqrec.evaluate.ranking import target_ranks
from seqrec.models.base import SequentialRecommender
from seqrec.rundir import BEST, LAST, RunDir
from seqrec.train import distributed
from seqrec.train.checkpoint import load_checkpoint, rng_state, save_checkpoint, set_rng_state
from seqrec.train.distributed import SINGLE, Dist
from seqrec.train.losses import LossSpec, compute_loss
from seqrec.train.objectives import expand_rows, make_batch
from seqrec.train.optim import Optimizers, clip_gradients, decay_groups, enable_sparse_items, is_sparse, schedule_factor
from seqrec.train.runlog import EpochLog, Progress, peak_memory_mb, plot_curves, write_json

if TYPE_CHECKING:
    from seqrec.config import RunConfig

log = logging.getLogger(__name__)
AnyOptimizer = torch.optim.Optimizer | Optimizers     # dense, or dense + the item table's SparseAdam
CHECKPOINT_FORMAT = 1


@dataclass
class TrainState:
    """What changes from epoch to epoch and is saved in `last.pt`."""

    epoch: int = 0                       # last finished epoch (0 = none)
    best_epoch: int = 0
    best_value: float = -math.inf
    bad_evals: int = 0                   # evaluations since the last improvement
    elapsed: float = 0.0                 # training + validation seconds so far, over all sessions
    stopped: str | None = None           # why training ended early, if it did
    history: list = field(default_factory=list)

    def to_json(self) -> str:
        return json.dumps(self.__dict__)


def resolve_device(name: str) -> torch.device:
    """`auto` -> cuda when available else cpu; a CUDA device on a machine without one is a ConfigError."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"train.device: value {name!r} is not available on this machine (no CUDA); "
                          "expected 'cpu' or 'auto'")
    return torch.device(name)


def training_rows(split: Split) -> tuple[np.ndarray, np.ndarray]:
    """Start and end (absolute indices into `data.items`) of every training prefix with >= 2 items."""
    starts = split.data.offsets[:-1]
    keep = (split.train_end - starts) >= 2
    return starts[keep], split.train_end[keep]


def epoch_line(record: dict, metric: str) -> str:
    """The per-epoch log line, naming what it shows: `epoch 3  loss 6.7966  valid NDCG@10 0.0867 (best)  24.3 s`."""
    parts = [f"epoch {record['epoch']}", f"loss {record['loss']:.4f}"]
    if "valid" in record:
        parts.append(f"valid {metric} {record['valid'][metric]:.4f}" + (" (best)" if record.get("improved") else ""))
    elif "test" in record:
        parts.append(f"test {metric} {record['test'][metric]:.4f} (no validation: logged only)")
    parts.append(f"{record['seconds']:.1f} s")
    return "  ".join(parts)


def length_batches(order: np.ndarray, lengths: np.ndarray, batch_size: int, rng: np.random.Generator,
                   pool: int = 64) -> list[np.ndarray]:
    """Batches of the shuffled rows `order` grouped by length: pools of `pool` batches of consecutive shuffled
    rows, each sorted by `lengths` (stable), cut into batches, and all batches shuffled.

    Every row is in exactly one batch; rows of a batch have similar lengths, so padding to the batch's longest
    row costs little. Vectorised: one lexsort.
    """
    pools = np.arange(order.shape[0]) // (batch_size * pool)                  # pool of each shuffled row
    grouped = order[np.lexsort((lengths[order], pools))]                       # by pool, then by length
    batches = [grouped[i:i + batch_size] for i in range(0, grouped.shape[0], batch_size)]
    return [batches[i] for i in rng.permutation(len(batches))]


def _scored(batch: CausalBatch) -> torch.Tensor:
    """How many positions of a training batch have a target (0-d int64 tensor)."""
    if batch.targets is None:
        raise ValueError("a training batch needs targets (CausalBatch.targets)")
    return batch.targets.ne(0).sum()


PRECISIONS = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


class TrainingStep(nn.Module):
    """The model and its loss as one module, so that DDP's forward covers the whole step (the item table is read
    both by the encoder and by the loss). `forward(batch)` returns the mean loss over the batch's scored positions
    (in fp32 whatever the autocast precision), plus the similarity's own regulariser where it has one
    (`aux_loss()`: the reference MoL's load-balancing term), and how many positions were scored."""

    def __init__(self, model: SequentialRecommender, spec: LossSpec, log_popularity: torch.Tensor | None,
                 dist: Dist = SINGLE, negatives_across_ranks: bool = False, sparse: bool = False,
                 matmul_dtype: torch.dtype | None = None) -> None:
        super().__init__()
        self.model, self.spec = model, spec
        self.log_popularity = log_popularity
        self.gather = (lambda ids: distributed.gather_ids(dist, ids)) if negatives_across_ranks else None
        self.sparse = sparse
        self.matmul_dtype = matmul_dtype               # the full-softmax products' input type (bf16 precision)

    def forward(self, batch: CausalBatch) -> tuple[torch.Tensor, torch.Tensor]:
        targets = batch.targets
        if targets is None:
            raise ValueError("a training batch needs targets (CausalBatch.targets)")
        begin_step = getattr(self.model.similarity, "begin_step", None)             # a similarity with its own
        if begin_step is not None:                                                  # regulariser (aux_loss)
            begin_step()
        states = self.model(batch)                                                  # [B, L, D]
        scored = targets != 0                                                       # [B, L]
        with torch.autocast(states.device.type, enabled=False):                     # the loss in fp32
            loss = compute_loss(self.spec, states[scored].float(), targets[scored],
                                self.model.item_embeddings().float(), self.model.similarity,
                                log_popularity=self.log_popularity, gather_ids=self.gather, sparse=self.sparse,
                                matmul_dtype=self.matmul_dtype)
            aux_loss = getattr(self.model.similarity, "aux_loss", None)   # the reference MoL's load balance
            extra = aux_loss() if aux_loss is not None else None
            if extra is not None:
                loss = loss + extra
        return loss, scored.sum()


class Trainer:
    """Trains `model` on `split` as the run config says; model-specific code never lives here.

    Args:
        model: any registered model (see `seqrec.models.base`).
        split: training prefixes and validation/test targets.
        config: the resolved `seqrec.config.RunConfig` (train, loss and eval sections are used here).
        run_dir: where checkpoints, logs and results go (None: keep nothing on disk); under DDP every rank reads
            it (resume) and rank 0 alone writes it.
        dist: this process's place in a distributed run (`seqrec.train.distributed.setup`); default one process.
        device: the device to train on (default `train.device`; under DDP the one `setup` bound to the rank).
        on_epoch: called on rank 0 after every epoch as `on_epoch(epoch, record)` with the epoch's log record
            (loss, lr, valid metrics when validated, seconds); a non-empty string returned stops training after
            this epoch with that reason (as early stopping does: checkpoints, log and results are written); an
            exception propagates. Used by experiment tracking and by `seqrec tune`'s pruning.
    """

    def __init__(self, model: SequentialRecommender, split: Split, config: RunConfig, run_dir: Path | None = None, *,
                 dist: Dist = SINGLE, device: str | None = None,
                 on_epoch: Callable[[int, dict], str | None] | None = None) -> None:
        self.model, self.split, self.config, self.dist = model, split, config, dist
        self.on_epoch = on_epoch
        self.train_cfg, self.eval_cfg = config.train, config.eval
        self.validating = len(split.valid) > 0   # without validation targets the latest epoch is kept and tested
        self.loss_spec = LossSpec.of(config.loss)
        self.device = resolve_device(device or self.train_cfg.device)
        self.run_dir = Path(run_dir) if run_dir is not None else None
        self.writes = dist.is_main                         # rank 0 owns the run directory
        self.model.to(self.device)
        self.starts, self.ends = expand_rows(model, *training_rows(split))   # per the model's objective
        self.rng = np.random.default_rng(self.train_cfg.seed)        # shared draws: the same on every rank
        self.side = data_side_inputs(model, split.data)    # CSR side inputs the model reads (times, ...), if any
        self.sparse = bool(self.train_cfg.sparse_embeddings) and model.trainable
        if self.sparse and dist.backend == "nccl":
            raise ConfigError("train.sparse_embeddings: nccl cannot all-reduce sparse gradients; train the large "
                              "table with dense gradients on GPUs (set it to false) or use the gloo backend")
        if self.sparse:
            enable_sparse_items(model, config.loss.name)
        if self.train_cfg.micro_batches > 1:
            self._check_micro_batches()
        self.optimizer: AnyOptimizer | None = self._make_optimizer() if model.trainable else None
        self.log_popularity = self._log_popularity() if config.loss.negatives == "in_batch" else None
        self.state = TrainState()
        self.autocast = PRECISIONS[self.train_cfg.precision]
        self.scaler = (torch.amp.GradScaler(self.device.type) if self.train_cfg.precision == "fp16" and
                       model.trainable else None)
        self.step_module: nn.Module | None = self._make_step() if model.trainable else None
        if dist.active and dist.is_main:
            log.info("DDP: %d processes (%s), global batch %d (about %d rows per process and step)", dist.world,
                     dist.backend, self.train_cfg.batch_size, -(-self.train_cfg.batch_size // dist.world))

    # ------------------------------------------------------------------------------------------- set-up

    @property
    def _optim(self) -> AnyOptimizer:
        """The optimiser of a trainable model (a model fitted otherwise, such as Pop, has none)."""
        if self.optimizer is None:
            raise RuntimeError(f"model {self.model.name!r} is not trained by gradient descent")
        return self.optimizer

    @property
    def _step_module(self) -> nn.Module:
        """The model and its loss as one module (`TrainingStep`, wrapped by DDP when distributed)."""
        if self.step_module is None:
            raise RuntimeError(f"model {self.model.name!r} is not trained by gradient descent")
        return self.step_module

    def _check_micro_batches(self) -> None:
        """Refuse `train.micro_batches` where a part's loss is not its share of the whole batch's: in-batch
        negatives (the other rows' targets) and the reference MoL's load balance and user-norm terms (defined
        over all the step's scores)."""
        loss, similarity = self.config.loss, getattr(self.model, "similarity", None)
        if loss.name != "ce" and loss.negatives == "in_batch":
            raise ConfigError("train.micro_batches: with loss.negatives 'in_batch' a part's negatives would be "
                              "its own rows' targets only, not the batch's; use uniform negatives or "
                              "micro_batches 1")
        regularisers = [key for key, attr in (("mol_balance", "balance"), ("mol_user_l2", "user_l2"))
                        if float(getattr(similarity, attr, 0) or 0) > 0]
        if regularisers:
            raise ConfigError(f"train.micro_batches: model.{' and model.'.join(regularisers)} regularise the "
                              "whole step's gate weights and user vectors, which parts would split; set "
                              "micro_batches 1 (or those keys to 0)")

    def _make_step(self) -> nn.Module:
        # bf16 precision: the full softmax's products take bf16 inputs too (its sums stay fp32)
        step = TrainingStep(self.model, self.loss_spec, self.log_popularity, self.dist,
                            negatives_across_ranks=self.config.loss.negatives_across_ranks, sparse=self.sparse,
                            matmul_dtype=torch.bfloat16 if self.train_cfg.precision == "bf16" else None)
        if not self.dist.active:
            return step
        from torch.nn.parallel import DistributedDataParallel

        ids = [self.device.index] if self.device.type == "cuda" else None
        return DistributedDataParallel(step, device_ids=ids, find_unused_parameters=self._has_unused_parameters())

    def _has_unused_parameters(self) -> bool:
        """Whether some parameter may get no gradient in a step, so that DDP must look for such parameters every
        step (an extra pass over the graph) instead of waiting for their gradients forever. True for a model that
        declares data-dependent use (`dynamic_parameters`, LESSR's GRU when no node has two in-edges); else found
        by one probe step on two training rows, outside the run's random streams and leaving no gradients."""
        if getattr(self.model, "dynamic_parameters", False):
            return True
        probe = TrainingStep(self.model, self.loss_spec, self.log_popularity, sparse=self.sparse)
        rows = np.arange(min(2, self.starts.shape[0]))
        devices = [self.device] if self.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            batch = make_batch(self.model, self.split.data.items, self.starts[rows], self.ends[rows],
                               rng=np.random.default_rng(0), side=self.side).to(self.device)
            probe(batch)[0].backward()
        params = [p for p in self.model.parameters() if p.requires_grad]
        unused = any(p.grad is None for p in params)
        for p in params:
            p.grad = None
        return unused

    def _make_optimizer(self) -> AnyOptimizer:
        cls = torch.optim.AdamW if self.train_cfg.optimizer == "adamw" else torch.optim.Adam
        sparse = [p for p in self.model.parameters() if is_sparse(p)]
        params = [p for p in self.model.parameters() if not is_sparse(p)]
        # The fused kernel updates each tensor in one pass instead of ~10 (on CPU 59 -> 8 ms for a 43k x 100
        # item table, a fifth of an SR-GNN step on Diginetica); same update up to float rounding.
        fused = all(p.device.type in ("cpu", "cuda") and p.dtype in (torch.float32, torch.float64) for p in params)
        groups = decay_groups(self.model, params, self.train_cfg.weight_decay, self.train_cfg.no_decay)
        beta1, beta2 = self.train_cfg.betas
        dense = cls(groups, lr=self.train_cfg.lr, betas=(beta1, beta2), fused=fused)
        if not sparse:
            return dense
        lazy = torch.optim.SparseAdam(sparse, lr=self.train_cfg.lr, betas=(beta1, beta2))
        return Optimizers(dense, lazy)

    def _set_lr(self, epoch: int) -> None:
        """Step decay, a function of the epoch alone (resume-safe): lr x lr_decay^k, k = 0 before epoch
        `lr_decay_start` (default lr_decay_every + 1) and 1 + (epoch - start) // lr_decay_every from it on."""
        cfg = self.train_cfg
        start = cfg.lr_decay_start if cfg.lr_decay_start is not None else cfg.lr_decay_every + 1
        decays = 0 if epoch < start else 1 + (epoch - start) // cfg.lr_decay_every
        self.epoch_lr = cfg.lr * cfg.lr_decay ** decays
        for group in self._optim.param_groups:
            group["lr"] = self.epoch_lr

    def _set_step_lr(self, epoch: int, index: int, steps: int) -> None:
        """The epoch's rate times the warm-up/decay schedule at step `index` of `steps` in `epoch`."""
        cfg = self.train_cfg
        if not cfg.warmup_steps and cfg.schedule == "constant":
            return
        factor = schedule_factor((epoch - 1) * steps + index, cfg.epochs * steps, cfg.warmup_steps, cfg.schedule,
                                 cfg.min_lr_ratio)
        for group in self._optim.param_groups:
            group["lr"] = self.epoch_lr * factor

    def _log_popularity(self) -> torch.Tensor:
        """[N + 1] log share of each item among training targets (in-batch negatives' sampling law)."""
        data = self.split.data
        user_of = np.repeat(np.arange(data.num_users), data.lengths)
        in_train = np.arange(data.items.shape[0]) < self.split.train_end[user_of]
        counts = np.bincount(data.items[in_train], minlength=data.num_items + 1).astype(np.float64) + 1.0
        return torch.from_numpy(np.log(counts / counts.sum())).float().to(self.device)

    @property
    def checkpoint_dir(self) -> Path | None:
        return RunDir(self.run_dir).checkpoints if self.run_dir is not None else None

    # ------------------------------------------------------------------------------------------- loop

    def fit(self, *, resume: bool = False) -> TrainState:
        """Train until `epochs`, early stopping or the time budget; keeps the best weights in the model."""
        if not self.model.trainable:
            self.model.fit(self.split)
            self.state.best_epoch = self.state.epoch = 0
            return self.state
        if resume:
            self._resume()
        epoch_log = EpochLog(RunDir(self.run_dir).log) if self.run_dir is not None and self.writes else None
        if epoch_log is not None:
            epoch_log.truncate_after(self.state.epoch)
        # without validation the latest epoch is the one kept: no copy of the weights, best.pt written at the end
        best_weights = self._best_weights() if self.validating else None
        while self.state.epoch < self.train_cfg.epochs and self.state.stopped is None:
            record = self._run_epoch(self.state.epoch + 1)
            if record.get("improved") and self.validating:
                best_weights = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
                self._save(BEST, best_weights)
            self.state.history.append(record)
            if epoch_log is not None:
                epoch_log.append(record)
            self._save_last()
        if best_weights is not None:
            self.model.load_state_dict(best_weights)
        if not self.validating and self.state.epoch:
            self._save(BEST, self.model.state_dict())
        if self.run_dir is not None and self.writes:
            plot_curves(self.state.history, RunDir(self.run_dir).curves, metric=self.eval_cfg.metric)
        return self.state

    def _run_epoch(self, epoch: int) -> dict:
        started = time.perf_counter()
        loss, sequences, train_seconds = self._train_epoch(epoch)
        record = {"epoch": epoch, "loss": loss, "lr": self._optim.param_groups[0]["lr"],
                  "train_seconds": round(train_seconds, 3),
                  "sequences_per_second": round(sequences / max(train_seconds, 1e-9), 1)}
        self.state.epoch = epoch
        due = epoch % self.train_cfg.eval_every == 0 or epoch == self.train_cfg.epochs
        if due and (self.validating or self.eval_cfg.report_test):
            eval_started = time.perf_counter()
            valid = self.validate() if self.validating else None
            if valid is not None:
                record["valid"] = valid
            if self.eval_cfg.report_test:
                record["test"] = self.evaluate("test")                              # logged, never selects
            record["eval_seconds"] = round(time.perf_counter() - eval_started, 3)
            if valid is not None:
                record["improved"] = self._track(epoch, valid[self.eval_cfg.metric])
        if not self.validating:
            self.state.best_epoch, record["improved"] = epoch, True                 # the latest epoch is kept
        record["seconds"] = round(time.perf_counter() - started, 3)
        self.state.elapsed += record["seconds"]
        record["elapsed"] = round(self.state.elapsed, 3)
        if not math.isfinite(loss):
            self.state.stopped = (f"the training loss became {loss} at epoch {epoch}; "
                                  "lower train.lr or set train.clip_norm")
        budget = self.train_cfg.max_minutes
        if budget is not None and self.state.elapsed >= budget * 60 and self.state.stopped is None:
            self.state.stopped = f"time budget of {budget} minutes reached"
        record["peak_memory_mb"] = peak_memory_mb(self.device)
        if self.on_epoch is not None and self.writes:
            self.state.stopped = self.state.stopped or self.on_epoch(epoch, record) or None
        # every rank computes the same metrics, but clocks differ: rank 0 decides, the others follow
        self.state.stopped = distributed.broadcast_object(self.dist, self.state.stopped)
        if self.writes:
            log.info("%s", epoch_line(record, self.eval_cfg.metric))
        return record

    def _track(self, epoch: int, value: float) -> bool:
        if value > self.state.best_value:
            self.state.best_value, self.state.best_epoch, self.state.bad_evals = value, epoch, 0
            return True
        self.state.bad_evals += 1
        patience = self.train_cfg.patience
        if patience and self.state.bad_evals >= patience:
            self.state.stopped = (f"early stop: no {self.eval_cfg.metric} improvement in {patience} evaluations "
                                  f"(best {self.state.best_value:.4f} at epoch {self.state.best_epoch})")
        return False

    def epoch_batches(self, epoch: int) -> list[np.ndarray]:
        """The global batches of `epoch` (indices into the training rows), the same on every rank: one draw of
        the shared generator per epoch; every row in exactly one batch."""
        cfg = self.train_cfg
        order = self.rng.permutation(self.starts.shape[0])
        if cfg.batching == "length":
            lengths = np.minimum(self.ends - self.starts, self.model.max_len + 1)
            batches = length_batches(order, lengths, cfg.batch_size, self.rng)
        else:
            batches = [order[i:i + cfg.batch_size] for i in range(0, order.shape[0], cfg.batch_size)]
        return distributed.merge_short_tail(batches, self.dist.world)

    def _seed_rank(self, epoch: int) -> np.random.Generator:
        """The generator of this rank's own draws in `epoch` (masks), after seeding torch's (dropout, negatives).
        One process keeps drawing from the shared generator and torch's restored state, as before DDP."""
        if not self.dist.active:
            return self.rng
        seeds = np.random.SeedSequence([self.train_cfg.seed % 2**32, epoch, self.dist.rank])
        torch.manual_seed(int(seeds.generate_state(1, np.uint64)[0] >> 1))
        return np.random.default_rng(seeds)

    def _train_epoch(self, epoch: int) -> tuple[float, int, float]:
        model, cfg = self.model, self.train_cfg
        model.train()
        self._set_lr(epoch)
        batches = self.epoch_batches(epoch)
        local_rng = self._seed_rank(epoch)
        total, count = 0.0, 0
        show = cfg.progress and self.writes
        with Progress(len(batches), f"epoch {epoch}", enabled=show) as progress:
            for index, rows in enumerate(batches):
                self._set_step_lr(epoch, index, len(batches))
                part = distributed.shard_rows(rows, self.dist)
                loss = self._step(part, local_rng)
                total += loss * part.shape[0]
                count += part.shape[0]
                progress.update(loss=loss, sequences=int(rows.shape[0]))
        total, count = distributed.sum_array(self.dist, np.array([total, count], dtype=np.float64))
        return float(total / max(count, 1)), int(count), progress.seconds

    def _step(self, rows: np.ndarray, rng: np.random.Generator | None = None) -> float:
        """One optimiser step on the training rows `rows` (this rank's part of a global batch); returns the mean
        loss of those rows' scored positions.

        With `train.micro_batches` k > 1 the rows, sorted by length, are cut into k parts, each padded only to its
        own longest row; every part's mean loss is weighted by its share of the scored positions and the
        gradients accumulate, so the step is the whole batch's (up to rounding and the random draws: dropout,
        masks, negatives), at the cost of the parts' padding rather than the batch's. Under DDP only the last
        part's backward synchronises (`no_sync`), so ranks may cut different numbers of parts."""
        rng = self.rng if rng is None else rng
        parts = [rows]
        if self.train_cfg.micro_batches > 1 and rows.shape[0] > 1:
            by_length = rows[np.argsort(self.ends[rows] - self.starts[rows], kind="stable")]
            parts = np.array_split(by_length, min(self.train_cfg.micro_batches, rows.shape[0]))
        batches = [make_batch(self.model, self.split.data.items, self.starts[part], self.ends[part],
                              align=self.train_cfg.align, rng=rng, side=self.side).to(self.device)
                   for part in parts]
        scored = [_scored(batch).float() for batch in batches]                      # scored positions per part
        local = sum(scored[1:], scored[0])
        # the objective is this rank's mean loss times its share of the global batch's scored positions (1 in
        # one process), split over the parts by their scored positions; the loss alone for one whole batch
        total = distributed.sum_scalar(self.dist, local) / self.dist.world if self.dist.active else local
        weights = [n / total.clamp(min=1) for n in scored] if self.dist.active or len(batches) > 1 else [None]
        optimizer = self._optim
        optimizer.zero_grad(set_to_none=True)
        module, mean = self._step_module, 0.0
        no_sync = getattr(module, "no_sync", None)                                  # DDP's
        for index, (batch, weight) in enumerate(zip(batches, weights, strict=True)):
            last = index == len(batches) - 1
            with no_sync() if no_sync is not None and not last else contextlib.nullcontext():
                with torch.autocast(self.device.type, dtype=self.autocast, enabled=self.autocast is not None):
                    loss, _ = module(batch)
                objective = loss if weight is None else loss * weight.to(loss.dtype)
                if self.scaler is not None:
                    self.scaler.scale(objective).backward()
                else:
                    objective.backward()
            mean += float(loss.detach()) * float(scored[index] / local.clamp(min=1))
        if self.scaler is not None:
            # GradScaler reads param_groups only: a sparse+dense `Optimizers` pair is unscaled and stepped as one
            self.scaler.unscale_(optimizer)  # type: ignore[arg-type]
        if self.train_cfg.clip_norm:
            clip_gradients(list(self.model.parameters()), self.train_cfg.clip_norm)
        if self.scaler is not None:
            self.scaler.step(optimizer)  # type: ignore[arg-type]
            self.scaler.update()
        else:
            optimizer.step()
        return mean

    def validate(self) -> dict[str, float]:
        """Validation metrics; on a seeded sample of `eval.max_users` users when set (the epoch's choice)."""
        targets = self.split.valid
        limit = self.eval_cfg.max_users
        if limit is not None and limit < len(targets):
            chosen = np.sort(np.random.default_rng(self.train_cfg.seed).choice(len(targets), limit, replace=False))
            targets = type(targets)(targets.data, targets.users[chosen], targets.positions[chosen])
        return self._metrics(targets)

    def evaluate(self, split_name: str = "test") -> dict[str, float]:
        """Full-ranking metrics on every `valid` or `test` target (ranks split between DDP ranks, then summed)."""
        return self._metrics(self.split.targets(split_name))

    def _metrics(self, targets: Targets) -> dict[str, float]:
        ranks = target_ranks(self.model, targets, exclude_history=self.eval_cfg.exclude_history,
                             batch_size=self.eval_cfg.batch_size, device=self.device,
                             shard=(self.dist.rank, self.dist.world))
        return metrics_from_ranks(distributed.sum_array(self.dist, ranks), tuple(self.eval_cfg.ks))

    # ------------------------------------------------------------------------------------------- checkpoints

    def _save(self, name: str, state_dict: dict) -> None:
        if self.checkpoint_dir is None or not self.writes:
            return
        self.checkpoint_dir.mkdir(parents=True, exist_ok=True)
        save_checkpoint(self.checkpoint_dir / name, {
            "format": CHECKPOINT_FORMAT, "model": self.model.name, "num_items": self.model.num_items,
            "model_config": json.dumps(self.model.config.model_dump()), "state_dict": state_dict,
            "epoch": self.state.epoch})

    def _save_last(self) -> None:
        if self.checkpoint_dir is None or not self.writes:
            return
        self.checkpoint_dir.mkdir(parents=True, exist_ok=True)
        extra = {"scaler": self.scaler.state_dict()} if self.scaler is not None else {}
        save_checkpoint(self.checkpoint_dir / LAST, {
            "format": CHECKPOINT_FORMAT, "model": self.model.name, "num_items": self.model.num_items,
            "model_config": json.dumps(self.model.config.model_dump()),
            "state_dict": self.model.state_dict(), "optimizer": self._optim.state_dict(),
            "epoch": self.state.epoch, "train_state": self.state.to_json(), "rng": rng_state(self.rng),
            "world_size": self.dist.world, **extra})

    def _resume(self) -> None:
        path = self.checkpoint_dir / LAST if self.checkpoint_dir is not None else None
        if path is None or not path.exists():
            if self.writes:
                log.info("no checkpoint to resume from in %s; starting from scratch", self.run_dir)
            return
        payload = load_checkpoint(path, map_location=self.device)
        self.model.load_state_dict(payload["state_dict"])
        self._optim.load_state_dict(payload["optimizer"])
        if self.scaler is not None and "scaler" in payload:
            self.scaler.load_state_dict(payload["scaler"])
        self.state = TrainState(**json.loads(payload["train_state"]))
        set_rng_state(payload["rng"], self.rng)
        self.state.stopped = self._stop_reason_on_resume(self.state.stopped)
        if self.writes:
            before = payload.get("world_size", 1)
            change = f" (saved by {before} process(es), now {self.dist.world})" if before != self.dist.world else ""
            log.info("resumed from %s after epoch %d%s", path, self.state.epoch, change)

    def _stop_reason_on_resume(self, stored: str | None) -> str | None:
        """Why a resumed run is still stopped under the current config: a time budget or early stop that the
        resumed config extends (a larger `max_minutes` or `patience`) no longer stops it; a non-finite loss does."""
        if stored is None or not stored.startswith(("time budget", "early stop")):
            return stored
        budget, patience = self.train_cfg.max_minutes, self.train_cfg.patience
        if budget is not None and self.state.elapsed >= budget * 60:
            return f"time budget of {budget} minutes reached"
        if patience and self.state.bad_evals >= patience:
            return stored if stored.startswith("early stop") else (
                f"early stop: no {self.eval_cfg.metric} improvement in {patience} evaluations "
                f"(best {self.state.best_value:.4f} at epoch {self.state.best_epoch})")
        return None

    def _best_weights(self) -> dict | None:
        path = self.checkpoint_dir / BEST if self.checkpoint_dir is not None else None
        if self.state.best_epoch and path is not None and path.exists():
            return load_checkpoint(path, map_location=self.device)["state_dict"]
        return None

    def write_results(self, extra: dict | None = None, *, test: bool = True) -> dict:
        """Evaluate the (best) model on validation and test (unless `test` is False) and write `results.json`."""
        results = {"valid": self.evaluate("valid") if self.validating else {},
                   **({"test": self.evaluate("test")} if test else {}),
                   "best_epoch": self.state.best_epoch, "epochs_run": self.state.epoch,
                   "stopped": self.state.stopped, "train_seconds": round(self.state.elapsed, 3), **(extra or {})}
        if self.eval_cfg.max_users is not None:
            results["valid_users_per_epoch"] = min(self.eval_cfg.max_users, len(self.split.valid))
        if self.dist.active:
            results["distributed"] = {"world_size": self.dist.world, "backend": self.dist.backend,
                                      "batch_size": "global"}
        if self.run_dir is not None and self.writes:
            write_json(RunDir(self.run_dir).results, results)
        return results
