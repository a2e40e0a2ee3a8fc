"""Several processes, one run: PyTorch's own distributed engine (torchrun, c10d rendezvous, DDP) seen from seqrec.

`torchrun --nproc-per-node N -m seqrec train ...` (or `seqrec train --nproc N ...`, which starts the same through
`torch.distributed.run`) sets `RANK`, `WORLD_SIZE`, `LOCAL_RANK` and `LOCAL_WORLD_SIZE` in every process; `setup`
reads them, joins the process group (gloo on CPU, nccl on CUDA), binds the rank's device and sets its CPU
threads. A process started without them, or with `WORLD_SIZE=1`, is an ordinary single process: every helper
here is then a no-op, so the trainer has one code path.

What the ranks share (see `Trainer`): one seeded permutation of the training rows per epoch (each rank takes a
disjoint part of every global batch), gradients (DDP), evaluation ranks (each rank scores a disjoint set of
evaluation batches; the ranks are summed, so every metric is the one-process figure), and rank 0's decisions
(stop or not). Rank 0 alone writes the run directory.

A rank that dies: torchrun's agent on that machine sees it exit and stops its other workers, then exits non-zero
with a summary naming the rank; a rank on another machine loses its connection in its next collective, which
`lost_peer` turns into one `DistributedError` message. A rank that hangs without dying is caught when a
collective waits longer than `train.dist_timeout` seconds.
"""

from __future__ import annotations

import datetime
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import numpy as np
import torch
import torch.distributed as tdist

from seqrec.errors import ConfigError, SeqrecError

_T = TypeVar("_T")

log = logging.getLogger(__name__)

ENV = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE")


class DistributedError(SeqrecError):
    """Another rank of a distributed run is gone (killed, crashed or unreachable) or did not answer in time."""


@dataclass(frozen=True)
class Dist:
    """Where this process stands in the run: `rank` of `world` processes, `local_rank` of `local_world` on its
    machine. The default is the single process."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0
    local_world: int = 1
    backend: str | None = None

    @property
    def active(self) -> bool:
        """True when there are other ranks to talk to."""
        return self.world > 1

    @property
    def is_main(self) -> bool:
        """Rank 0: the one that writes the run directory, logs and shows progress."""
        return self.rank == 0

    def describe(self) -> dict:
        return {"world_size": self.world, "rank": self.rank, "backend": self.backend}


SINGLE = Dist()


def env_dist() -> Dist:
    """The ranks torchrun announced in the environment (the single process when it announced none).

    Raises:
        ConfigError: a torchrun variable that is not a number, or a rank outside its world.
    """
    if "WORLD_SIZE" not in os.environ:
        return SINGLE
    try:
        world = int(os.environ["WORLD_SIZE"])
        rank = int(os.environ.get("RANK", "0"))
        local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        local_world = int(os.environ.get("LOCAL_WORLD_SIZE", str(world)))
    except ValueError:
        values = {name: os.environ.get(name) for name in ENV}
        raise ConfigError(f"the distributed environment is not numeric: {values}") from None
    if world < 1 or not 0 <= rank < world or not 0 <= local_rank < max(local_world, 1):
        raise ConfigError(f"RANK {rank} / LOCAL_RANK {local_rank} do not fit WORLD_SIZE {world} / "
                          f"LOCAL_WORLD_SIZE {local_world}")
    return Dist(rank, world, local_rank, local_world)


def default_threads(local_world: int) -> int:
    """CPU threads per rank when `train.num_threads` is not set: the machine's cores shared by its ranks."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, cores // max(local_world, 1))


def setup(device_name: str, timeout_s: float) -> tuple[Dist, str]:
    """Join the process group torchrun prepared, if any; returns (Dist, the device this rank trains on).

    The backend follows the device: nccl for CUDA (each rank takes `cuda:LOCAL_RANK`), gloo for the CPU.
    Called once per process; a second call returns the group already joined.
    """
    dist = env_dist()
    if not dist.active:
        return dist, device_name
    wants_cuda = device_name.startswith("cuda") or (device_name == "auto" and torch.cuda.is_available())
    if wants_cuda:
        if not torch.cuda.is_available():
            raise ConfigError(f"train.device: value {device_name!r} is not available on this machine (no CUDA)")
        device_name = f"cuda:{dist.local_rank % torch.cuda.device_count()}"
        torch.cuda.set_device(torch.device(device_name))
        backend = "nccl"
    else:
        device_name = "cpu"
        backend = "gloo"
    if not tdist.is_initialized():
        tdist.init_process_group(backend, timeout=datetime.timedelta(seconds=timeout_s))
        log.debug("rank %d of %d joined the %s process group", dist.rank, dist.world, backend)
    return Dist(dist.rank, dist.world, dist.local_rank, dist.local_world, tdist.get_backend()), device_name


def teardown(wait: bool = True) -> None:
    """Leave the process group at the end of a run, after the other ranks are done too (`wait`), so that no rank
    closes its connections while another still writes or talks."""
    if tdist.is_available() and tdist.is_initialized():
        if wait:
            tdist.barrier()
        tdist.destroy_process_group()


def _device(dist: Dist) -> torch.device:
    return torch.device("cuda", torch.cuda.current_device()) if dist.backend == "nccl" else torch.device("cpu")


def barrier(dist: Dist) -> None:
    if dist.active:
        tdist.barrier()


def staged(dist: Dist, load: Callable[[], _T]) -> _T:
    """`load()` on every rank, in three turns: rank 0 alone first (it prepares and caches the data), then the
    first rank of every other machine (a cache hit on a shared file system, else its machine's one
    preparation), then all the others (cache hits). No N-fold preparation and no race on a cache entry."""
    result: list[_T] = [load()] if dist.is_main else []
    barrier(dist)
    if not dist.is_main and dist.local_rank == 0:
        result.append(load())
    barrier(dist)
    if dist.local_rank != 0:
        result.append(load())
    return result[0]


def broadcast_object(dist: Dist, value: _T) -> _T:
    """Rank 0's `value` on every rank."""
    if not dist.active:
        return value
    box = [value]
    tdist.broadcast_object_list(box, src=0)
    return box[0]


def sum_array(dist: Dist, values: np.ndarray) -> np.ndarray:
    """Element-wise sum over ranks of a numeric array (float64 or int64 kept exactly)."""
    if not dist.active:
        return values
    tensor = torch.from_numpy(np.array(values, copy=True)).to(_device(dist))      # never in place on `values`
    tdist.all_reduce(tensor, op=tdist.ReduceOp.SUM)
    return tensor.cpu().numpy()


def sum_scalar(dist: Dist, value: torch.Tensor) -> torch.Tensor:
    """Sum over ranks of a 0-d tensor (on the rank's device)."""
    if not dist.active:
        return value
    value = value.detach().clone()
    tdist.all_reduce(value, op=tdist.ReduceOp.SUM)
    return value


def gather_ids(dist: Dist, ids: torch.Tensor) -> torch.Tensor:
    """The 1-D int64 `ids` of every rank, concatenated in rank order (ranks may hold different counts)."""
    if not dist.active:
        return ids
    count = torch.tensor([ids.shape[0]], dtype=torch.int64, device=ids.device)
    counts = [torch.zeros_like(count) for _ in range(dist.world)]
    tdist.all_gather(counts, count)
    longest = int(max(int(c) for c in counts))
    padded = torch.zeros(longest, dtype=ids.dtype, device=ids.device)
    padded[:ids.shape[0]] = ids
    parts = [torch.empty_like(padded) for _ in range(dist.world)]
    tdist.all_gather(parts, padded)
    return torch.cat([part[:int(c)] for part, c in zip(parts, counts, strict=True)])


def shard_rows(rows: np.ndarray, dist: Dist) -> np.ndarray:
    """This rank's contiguous part of one global batch (parts differ in size by at most one row)."""
    if not dist.active:
        return rows
    return np.array_split(rows, dist.world)[dist.rank]


def merge_short_tail(batches: list[np.ndarray], world: int) -> list[np.ndarray]:
    """Batches with at least `world` rows each: a last batch smaller than that joins the one before, so that
    every rank takes at least one row of every step (a step with an empty rank would stall DDP)."""
    if world > 1 and len(batches) > 1 and batches[-1].shape[0] < world:
        return [*batches[:-2], np.concatenate([batches[-2], batches[-1]])]
    return batches


def is_lost_peer(error: BaseException) -> bool:
    """Whether an exception raised in a collective means another rank is gone or timed out."""
    if isinstance(error, getattr(tdist, "DistError", ())):
        return True
    text = str(error).lower()
    return isinstance(error, RuntimeError) and any(
        mark in text for mark in ("connection closed", "connection reset", "broken pipe", "timed out",
                                  "gloo", "nccl", "socket", "peer"))


def lost_peer(dist: Dist, error: BaseException, run_dir: str | os.PathLike[str] | None) -> DistributedError:
    """The one message a rank prints when another rank of the run is gone."""
    first = str(error).strip().splitlines()[0][:300] if str(error).strip() else type(error).__name__
    where = f"; the last checkpoint in {run_dir}/checkpoints is intact, continue with --resume" if run_dir else ""
    return DistributedError(f"rank {dist.rank} of {dist.world}: another rank stopped answering (killed, crashed or "
                            f"unreachable), so this rank stops too ({first}){where}")
