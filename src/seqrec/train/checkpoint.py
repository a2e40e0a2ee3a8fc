"""Checkpoints that survive kills and refuse pickled code, and RNG state capture.

`save_checkpoint` writes through `atomic_write`, so a process killed at any moment (even by SIGKILL) leaves the
previous complete checkpoint or the new complete one under the path, never a partial file. `load_checkpoint` reads
with `torch.load(weights_only=True)`: a checkpoint carrying pickled classes or callables is refused without
running them. `rng_state`/`set_rng_state` capture and restore every random generator a training run draws from,
so a resumed run continues bit-exactly.
"""

from __future__ import annotations

import errno
import json
import logging
import pickle
import random
import re
import warnings
from collections import OrderedDict
from os import PathLike
from pathlib import Path
from typing import Any

import numpy as np
import torch

from seqrec.errors import SeqrecError
from seqrec.fileio import atomic_write

logger = logging.getLogger(__name__)

CHECKPOINT_FORMAT = 1

class CheckpointError(SeqrecError):
    """A checkpoint is missing, unreadable, of an unknown format, or refused as unsafe."""


# Exactly the types `torch.load(weights_only=True)` rebuilds. Exact type checks, not isinstance: subclasses
# such as numpy.float64 (a float) or a custom dict are pickled by class reference and would be refused on load.
_LEAF_TYPES = (str, int, float, bool, type(None), torch.dtype, torch.device)
_TENSOR_TYPES = (torch.Tensor, torch.nn.Parameter)
_KEY_TYPES = (str, int, float, bool, type(None))


def _check_loadable(value: Any, where: str, seen: set[int]) -> None:
    """Raise TypeError naming `where` if `value` holds anything `weights_only` loading would refuse."""
    kind = type(value)
    if kind in _LEAF_TYPES or kind in _TENSOR_TYPES:
        return
    if kind not in (dict, OrderedDict, list, tuple, torch.Size):
        raise TypeError(
            f"checkpoint value at {where} has type {kind.__module__}.{kind.__qualname__}, which "
            "torch.load(weights_only=True) refuses; store tensors, dicts, lists, tuples, str, int, float, bool "
            "or None (e.g. convert numpy arrays with torch.from_numpy and numpy scalars with .item())"
        )
    if id(value) in seen:
        raise TypeError(f"checkpoint value at {where} contains itself (a reference cycle)")
    seen.add(id(value))
    if kind in (dict, OrderedDict):
        for key, item in value.items():
            if type(key) not in _KEY_TYPES:
                raise TypeError(f"checkpoint key {key!r} in {where} has type {type(key).__qualname__}; "
                                "use str, int, float, bool or None keys")
            _check_loadable(item, f"{where}[{key!r}]", seen)
    else:
        for index, item in enumerate(value):
            _check_loadable(item, f"{where}[{index}]", seen)
    seen.discard(id(value))


def save_checkpoint(path: str | PathLike[str], payload: dict[str, Any]) -> None:
    """Atomically save `payload` to `path` with `torch.save`.

    The payload should carry `"format": CHECKPOINT_FORMAT` (it is added when absent) so `load_checkpoint`
    accepts it.

    Args:
        path: the checkpoint file; its directory must exist.
        payload: tensors and plain containers/scalars only (what `weights_only` loading accepts).

    Raises:
        TypeError: the payload holds a value that could not be loaded back; the message names its key path.
    """
    if type(payload) not in (dict, OrderedDict):
        raise TypeError(f"checkpoint payload must be a dict, got {type(payload).__qualname__}")
    # Validate before writing so a bad payload never replaces a good checkpoint with an unloadable one.
    _check_loadable(payload, "payload", set())
    payload = {"format": CHECKPOINT_FORMAT, **payload}
    try:
        atomic_write(path, lambda handle: torch.save(payload, handle))
    except RuntimeError as error:        # torch's stream writer reports a failed write (e.g. a full disk) so
        raise OSError(errno.EIO, f"cannot write the checkpoint ({error}); is the disk full?", str(path)) from None
    logger.debug("saved checkpoint %s", path)


def load_checkpoint(path: str | PathLike[str], map_location: Any = "cpu") -> dict[str, Any]:
    """Load a checkpoint written by `save_checkpoint`, refusing pickled code.

    Args:
        path: the checkpoint file.
        map_location: passed to `torch.load` (default: everything onto the CPU).

    Returns:
        The payload dict.

    Raises:
        CheckpointError: the file is missing, truncated or corrupt, carries pickled objects or code (refused,
            never executed), or is not a format-`CHECKPOINT_FORMAT` checkpoint.
    """
    path = Path(path)
    if not path.is_file():
        what = "is a directory, not a checkpoint file" if path.is_dir() else "does not exist"
        raise CheckpointError(f"checkpoint {path} {what}")
    try:
        with warnings.catch_warnings():
            # torch warns about the pickle protocol of foreign pickles just before refusing them; the refusal
            # below is the message that matters.
            warnings.filterwarnings("ignore", message="Detected pickle protocol", category=UserWarning)
            payload = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        # Every pickle object or callable is reached through a GLOBAL opcode, which torch names when refusing
        # it; any other unpickling failure (unknown opcode, bad stack) is damage, not pickled code.
        found = re.search(r"GLOBAL ([\w.]+)", str(exc))
        if found is None:
            raise CheckpointError(f"checkpoint {path} is not a readable checkpoint (truncated or corrupt): "
                                  f"{_unpickling_detail(exc)}") from None
        raise CheckpointError(
            f"checkpoint {path} carries pickled code/objects (it references {found.group(1)}) and was refused; "
            "seqrec only loads checkpoints made of tensors and plain values, and never runs code from a checkpoint"
        ) from None
    except PermissionError as exc:
        raise CheckpointError(f"checkpoint {path} could not be read: {exc.strerror}") from None
    except Exception as exc:  # torch reports damage as RuntimeError, EOFError, KeyError, ... depending on where
        raise CheckpointError(f"checkpoint {path} is not a readable checkpoint (truncated or corrupt): "
                              f"{type(exc).__name__}: {_first_line(exc)}") from None
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        stated = payload.get("format") if isinstance(payload, dict) else type(payload).__name__
        raise CheckpointError(f"checkpoint {path} has format {stated!r}, expected {CHECKPOINT_FORMAT} "
                              "(not a seqrec checkpoint, or one from an incompatible version)")
    return payload


def _unpickling_detail(exc: BaseException) -> str:
    # torch prefixes the real cause with paragraphs of advice about weights_only; keep only the cause.
    found = re.search(r"Unsupported operand[^\n]*", str(exc))
    return found.group(0).strip() if found else _first_line(exc)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    # torch's messages run on for paragraphs; the first sentence says what is wrong.
    return text.splitlines()[0].split(". ")[0][:200] if text else "(no message)"


def _json_default(value: Any) -> Any:
    # MT19937-style bit generator states hold uint32 arrays; tag them so they come back as arrays.
    if isinstance(value, np.ndarray):
        return {"__ndarray__": value.tolist(), "dtype": str(value.dtype)}
    if isinstance(value, np.integer):
        return int(value)
    raise TypeError(f"cannot store {type(value).__qualname__} in an RNG state")


def _json_hook(obj: dict[str, Any]) -> Any:
    if "__ndarray__" in obj:
        return np.asarray(obj["__ndarray__"], dtype=obj["dtype"])
    return obj


def rng_state(generator: np.random.Generator | None = None) -> dict[str, Any]:
    """Capture the state of every random generator a run draws from.

    Non-tensor states are stored as JSON strings (Python ints of any size, e.g. PCG64's 128-bit state, survive
    JSON exactly), so the result can go into a checkpoint and be loaded with `weights_only=True`.

    Args:
        generator: the run's numpy Generator, if it has one.

    Returns:
        A dict for `set_rng_state`.
    """
    legacy = np.random.get_state()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "python": json.dumps(random.getstate()),
        "numpy_global": json.dumps(legacy, default=_json_default),
    }
    if torch.cuda.is_available():
        state["torch_cuda"] = torch.cuda.get_rng_state_all()
    if generator is not None:
        state["numpy"] = json.dumps(generator.bit_generator.state, default=_json_default)
    return state


def set_rng_state(state: dict[str, Any], generator: np.random.Generator | None = None) -> None:
    """Restore generators from a `rng_state` result so later draws equal those after the capture.

    Args:
        state: what `rng_state` returned (possibly after a checkpoint round trip).
        generator: the numpy Generator to restore into; required if the state holds one.

    Raises:
        CheckpointError: the state is incomplete or does not fit `generator`.
    """
    try:
        torch.set_rng_state(state["torch"])
        version, internal, gauss = json.loads(state["python"])
        random.setstate((version, tuple(internal), gauss))
        name, keys, pos, has_gauss, cached = json.loads(state["numpy_global"], object_hook=_json_hook)
        np.random.set_state((name, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f"RNG state is incomplete or damaged: {type(exc).__name__}: {exc}") from None
    if "torch_cuda" in state:
        if torch.cuda.is_available() and torch.cuda.device_count() == len(state["torch_cuda"]):
            torch.cuda.set_rng_state_all(state["torch_cuda"])
        else:
            logger.warning("checkpoint holds CUDA RNG states for %d device(s) that are not all available here; "
                           "GPU random draws will differ from the original run", len(state["torch_cuda"]))
    if generator is None:
        return
    if "numpy" not in state:
        raise CheckpointError("RNG state holds no numpy Generator state to restore into the given generator")
    try:
        generator.bit_generator.state = json.loads(state["numpy"], object_hook=_json_hook)
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"numpy RNG state does not fit the given generator: {exc}") from None
