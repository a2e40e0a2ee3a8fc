"""Run configuration: typed, validated YAML sections `data`, `split`, `model`, `loss`, `train`, `eval`.

    config = load_config("configs/ml1m_sasrec.yaml", ["train.lr=1e-3", "model.dim=32"])
    config.model.name, config.model.params.dim, config.train.lr

Every field has a default and a description (`describe_keys()` lists them for help texts). The model section is
flat in YAML (`model: {name: sasrec, dim: 64}`) and `ModelSection(name, params)` in Python, `params` being an
instance of the model's own `config_class`. Every problem surfaces as ONE `ConfigError` naming the key path, the
value and what is allowed, e.g. `train.lr: value -1 is not allowed; expected a number > 0`, and the file line or
`--set` it came from.

The package: `schema` (the sections and their fields), `problems` (the wording of errors), `yamlfile` (the YAML
loader, config files and `--set` overrides); this module joins them into the calls the rest of seqrec makes.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Sequence
from pathlib import Path

import yaml
from pydantic import ValidationError

from seqrec.config.problems import collect_problems, config_error, short
from seqrec.config.schema import (
    SECTIONS,
    DataConfig,
    EvalConfig,
    LossConfig,
    ModelSection,
    RunConfig,
    SplitConfig,
    TrainConfig,
    describe_keys,
)
from seqrec.config.yamlfile import apply_override, key_lines, read_yaml

__all__ = ["SECTIONS", "DataConfig", "EvalConfig", "LossConfig", "ModelSection", "RunConfig", "SplitConfig",
           "TrainConfig", "config_from_dict", "config_hash", "config_to_dict", "describe_keys", "dump_config",
           "load_config"]


def config_from_dict(tree: dict) -> RunConfig:
    """Validate a nested dict (section -> key -> value, the model section flat) into a RunConfig.

    Raises:
        ConfigError: naming each problem's key path, value and what is allowed.
    """
    try:
        return RunConfig.model_validate(tree)
    except ValidationError as error:
        raise config_error(collect_problems(error, RunConfig)) from None


def load_config(path: str | Path | None = None, overrides: Sequence[str] = ()) -> RunConfig:
    """Read a YAML config (the defaults when `path` is None), apply `--set` overrides, validate.

    Args:
        path: the YAML file.
        overrides: `section.key=value` strings, the value read as YAML (`train.lr=1e-3` is a number,
            `eval.ks=[1,10]` a list, nothing after `=` null); `data.columns.user=uid` sets a nested key. Setting
            `model.name` to another model drops the hyper-parameters given for the previous one.

    Raises:
        ConfigError: a missing or malformed file, a malformed override, or an invalid value; the message names
            the file and line, or the `--set` that the value came from.
    """
    text, tree = read_yaml(Path(path)) if path is not None else (None, {})
    origin: dict[str, str] = {}  # key path -> the override that set it, to say where a bad value came from
    for item in overrides:
        key = apply_override(tree, item)
        origin = {k: v for k, v in origin.items() if not k.startswith(key)} | {key: item}
    try:
        return RunConfig.model_validate(tree)
    except ValidationError as error:
        problems = collect_problems(error, RunConfig)
    lines = key_lines(text) if text is not None else {}

    def annotate(key: str, message: str) -> str:
        chain = _prefixes(key)
        setter = next((origin[k] for k in chain if k in origin), None) or next(
            (v for k, v in origin.items() if k.startswith(key + ".")), None)
        if setter is not None:
            return f"{message} (from --set {short(setter)})"
        line = next((lines[k] for k in chain if k in lines), None)
        return message if path is None else f"{path}:{line}: {message}" if line else f"{path}: {message}"

    raise config_error(problems, annotate)


def _prefixes(key: str) -> list[str]:
    """`eval.ks[2]` -> ['eval.ks[2]', 'eval.ks', 'eval']: where to look for a key's line or override."""
    parts = re.sub(r"\[\d+\]", "", key).split(".")
    return list(dict.fromkeys([key] + [".".join(parts[:n]) for n in range(len(parts), 0, -1)]))


def config_to_dict(config: RunConfig) -> dict:
    """Plain YAML-safe nested dict (the model section flat); `config_from_dict(config_to_dict(c)) == c`."""
    return config.model_dump(mode="json")


def dump_config(config: RunConfig, path: str | Path) -> None:
    """Write `config` as YAML to `path` atomically (temporary file, fsync, rename; normal file permissions)."""
    from seqrec.train.runlog import write_text  # lazy: runlog imports matplotlib lazily, torch eagerly

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text(path, yaml.safe_dump(config_to_dict(config), sort_keys=False, allow_unicode=True))


def config_hash(config: RunConfig) -> str:
    """12 hex digits of SHA-256 over the canonical (sorted-key JSON) dict: equal configs, equal hashes."""
    canonical_json = json.dumps(config_to_dict(config), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical_json.encode("utf-8")).hexdigest()[:12]
