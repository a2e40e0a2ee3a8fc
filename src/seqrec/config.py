"""Run configuration: YAML with typed, validated sections (data, split, model, loss, train, eval).

    config = load_config("configs/ml1m_sasrec.yaml", ["train.lr=1e-3", "model.dim=64"])

Every section is a frozen pydantic model that rejects unknown keys; the `model` section holds the model's
`name` plus that model's own hyper-parameters, validated by the model's config class. Every error becomes one
`ConfigError` naming the key (`train.lr`), the value and what is allowed, with the closest valid key for a
misspelt one. Values from YAML and `--set` are parsed with `yaml.safe_load` (never `eval`).
"""

from __future__ import annotations

import difflib
import hashlib
import json
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator, model_validator

from seqrec.errors import ConfigError
from seqrec.models import ModelConfig, get_model_class


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DataConfig(Section):
    path: str = Field("demo", description="interaction file, or 'demo' for the built-in synthetic data; "
                                          "$SEQREC_DATA and ~ are expanded")
    format: str | None = Field(None, description="dat, csv, tsv, parquet, inter, pairs, sequences or sessions; "
                                                 "detected when empty")
    columns: dict[str, str | int] | None = Field(None, description="canonical column -> file column name or "
                                                                   "0-based position")
    separator: str | None = Field(None, description="field separator (detected when empty)")
    header: bool | None = Field(None, description="whether the first line names the columns (detected when empty)")
    dedupe: bool = Field(False, description="drop exact duplicate interactions")
    min_rating: float | None = Field(None, description="keep interactions rated at least this")
    min_user_count: int = Field(0, ge=0, description="k-core: users with fewer interactions are dropped")
    min_item_count: int = Field(0, ge=0, description="k-core: items with fewer interactions are dropped")
    cache: bool = Field(True, description="read and write the prepared-data cache")


class SplitConfig(Section):
    protocol: Literal["leave_one_out", "temporal"] = Field("leave_one_out", description="how to split")
    valid_fraction: float | None = Field(None, gt=0, lt=1, description="temporal: share of the latest "
                                                                       "interactions for validation")
    test_fraction: float | None = Field(None, gt=0, lt=1, description="temporal: share for test")
    targets: Literal["all", "first"] = Field("all", description="temporal: every interaction of the period, or "
                                                                "each user's first")


class ModelSection(Section):
    """`name` plus the model's own hyper-parameters (flat in YAML), validated by the model's config class."""

    name: str = Field("sasrec", description="registered model name")
    params: ModelConfig = Field(default_factory=lambda: get_model_class("sasrec").config_class())

    @model_validator(mode="before")
    @classmethod
    def _split_params(cls, value: Any) -> Any:
        if isinstance(value, ModelSection):
            return value
        if not isinstance(value, dict):
            raise ValueError("the model section must be a mapping such as {name: sasrec, dim: 64}")
        values = dict(value)
        name = str(values.pop("name", "sasrec"))
        params = values.pop("params", None)
        model_cls = get_model_class(name)
        if isinstance(params, ModelConfig):
            return {"name": model_cls.name, "params": params}
        return {"name": model_cls.name, "params": model_cls.config_class(**{**(params or {}), **values})}

    def to_dict(self) -> dict:
        return {"name": self.name, **self.params.model_dump()}


class LossConfig(Section):
    name: Literal["ce", "bce", "bpr", "sampled_softmax"] = Field("ce", description="training loss")
    num_negatives: int = Field(1, ge=1, description="negatives per position (bce, bpr, uniform sampled softmax)")
    negatives: Literal["uniform", "in_batch"] = Field("uniform", description="sampled softmax negatives")
    log_q_correction: bool = Field(True, description="in-batch negatives: subtract log popularity")


class TrainConfig(Section):
    optimizer: Literal["adam", "adamw"] = Field("adam", description="optimizer")
    lr: float = Field(1e-3, gt=0, description="learning rate")
    weight_decay: float = Field(0.0, ge=0, description="weight decay")
    clip_norm: float | None = Field(5.0, gt=0, description="gradient norm clipping (empty: none)")
    epochs: int = Field(200, ge=1, description="epochs at most")
    batch_size: int = Field(128, ge=1, description="sequences per batch")
    patience: int = Field(10, ge=0, description="evaluations without improvement before stopping (0: never)")
    seed: int = Field(42, description="random seed")
    deterministic: bool = Field(False, description="torch deterministic algorithms")
    device: str = Field("cpu", description="cpu, cuda, cuda:N or auto")
    eval_every: int = Field(1, ge=1, description="validate every this many epochs")
    num_threads: int | None = Field(None, ge=1, description="torch CPU threads (empty: torch's default)")
    progress: bool = Field(True, description="show a progress bar")
    max_minutes: float | None = Field(None, gt=0, description="stop after the epoch that crosses this budget")
    align: Literal["right", "left"] = Field("right", description="padding side of training rows")


    @field_validator("device")
    @classmethod
    def _device(cls, device: str) -> str:
        if not re.fullmatch(r"cpu|auto|cuda(:\d+)?", device):
            raise ValueError("'cpu', 'cuda', 'cuda:N' or 'auto'")
        return device


class EvalConfig(Section):
    ks: list[int] = Field([1, 5, 10, 20, 50, 100], description="cut-offs for HR@K, NDCG@K, MRR@K")
    exclude_history: bool = Field(False, description="never rank items already in the user's history")
    batch_size: int = Field(256, ge=1, description="targets ranked together")
    metric: str = Field("NDCG@10", description="validation metric for early stopping and model selection")

    @field_validator("ks")
    @classmethod
    def _ks(cls, ks: list[int]) -> list[int]:
        if not ks or any(k < 1 for k in ks):
            raise ValueError("a non-empty list of cut-offs >= 1")
        return sorted(set(ks))

    @field_validator("metric")
    @classmethod
    def _metric(cls, metric: str, info: ValidationInfo) -> str:
        ks = info.data.get("ks") or []
        allowed = [f"{m}@{k}" for m in ("HR", "NDCG", "MRR") for k in ks] + ["MRR"]
        if metric not in allowed:
            raise ValueError(f"one of the computed metrics: {', '.join(allowed)}")
        return metric


class RunConfig(Section):
    data: DataConfig = DataConfig()
    split: SplitConfig = SplitConfig()
    model: ModelSection = Field(default_factory=lambda: ModelSection.model_validate({}))
    loss: LossConfig = LossConfig()
    train: TrainConfig = TrainConfig()
    eval: EvalConfig = EvalConfig()


SECTIONS: dict[str, type[Section]] = {"data": DataConfig, "split": SplitConfig, "model": ModelSection,
                                      "loss": LossConfig, "train": TrainConfig, "eval": EvalConfig}


# ----------------------------------------------------------------------------------------------- loading

def load_config(path: str | Path | None = None, overrides: Sequence[str] = ()) -> RunConfig:
    """Read a YAML config (defaults when None), apply `section.key=value` overrides, validate, expand paths."""
    tree: dict = {}
    source = "config"
    if path is not None:
        tree, source = _read_yaml(Path(path)), str(path)
    for text in overrides:
        _apply_override(tree, text)
    if overrides:
        source = f"{source} with --set" if path is not None else "--set"
    return config_from_dict(tree, source=source)


def _read_yaml(path: Path) -> dict:
    if not path.exists():
        raise ConfigError(f"config file {path} does not exist")
    try:
        tree = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f":{mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(f"{path}{where}: invalid YAML ({problem})") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not a UTF-8 text file") from None
    if tree is None:
        return {}
    if not isinstance(tree, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of sections ({', '.join(SECTIONS)}), "
                          f"got {type(tree).__name__}")
    return tree


def _apply_override(tree: dict, text: str) -> None:
    key, eq, raw = text.partition("=")
    key = key.strip()
    if not eq or not key:
        raise ConfigError(f"--set {text!r}: expected SECTION.KEY=VALUE, e.g. train.lr=1e-3")
    parts = key.split(".")
    if len(parts) < 2 or not all(parts):
        raise ConfigError(f"--set {text!r}: expected SECTION.KEY=VALUE, e.g. train.lr=1e-3")
    _check_section(parts[0], f"--set {text!r}")
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError:
        value = raw
    node = tree
    for part in parts[:-1]:
        child = node.get(part)
        if not isinstance(child, dict):
            child = node[part] = {}
        node = child
    node[parts[-1]] = value


def _check_section(name: str, where: str) -> None:
    if name not in SECTIONS:
        close = difflib.get_close_matches(name, SECTIONS, n=1, cutoff=0.0)
        raise ConfigError(f"{where}: unknown section {name!r}; did you mean {close[0]!r}? "
                          f"sections: {', '.join(SECTIONS)}")


def config_from_dict(tree: dict, *, source: str = "config") -> RunConfig:
    """Validate a nested dict into a RunConfig; one ConfigError naming key, value and what is allowed."""
    if not isinstance(tree, dict):
        raise ConfigError(f"{source}: expected a mapping of sections, got {type(tree).__name__}")
    for name, value in tree.items():
        _check_section(str(name), source)
        if value is not None and not isinstance(value, dict):
            raise ConfigError(f"{source}: section {name!r} must be a mapping, got {value!r}")
    tree = {name: dict(value or {}) for name, value in tree.items()}
    if "data" in tree and isinstance(tree["data"].get("path"), str):
        tree["data"]["path"] = _expand(tree["data"]["path"])
    try:
        return RunConfig.model_validate(tree)
    except ValidationError as exc:
        raise _translate(exc, tree, source) from None


def _expand(path: str) -> str:
    for name in re.findall(r"\$\{?([A-Za-z_][A-Za-z0-9_]*)\}?", path):
        if name not in os.environ:
            raise ConfigError(f"data.path: value {path!r} uses ${name}, which is not set; "
                              f"expected e.g. `export {name}=../shared/datasets`")
    return os.path.expanduser(os.path.expandvars(path))


def _translate(exc: ValidationError, tree: dict, source: str) -> ConfigError:
    error = exc.errors()[0]
    loc = [str(p) for p in error["loc"] if p != "params"]
    if error["type"] == "value_error" and isinstance(error.get("ctx", {}).get("error"), ConfigError):
        return error["ctx"]["error"]
    key = ".".join(loc)
    if error["type"] == "extra_forbidden":
        section = loc[0] if loc else ""
        valid = _section_keys(section, tree)
        words = [*valid, *(alias for alias, target in _ALIASES.items() if target in valid)]
        guess = next(iter(difflib.get_close_matches(loc[-1].lower(), words, 1, 0.0)), None)
        close = _ALIASES.get(guess, guess)
        hint = f"; did you mean '{section}.{close}'?" if close in valid else ""
        return ConfigError(f"{source}: unknown key {key!r}{hint} valid keys: {', '.join(valid)}")
    value = error.get("input")
    shown = f" value {value!r}" if not isinstance(value, dict) else ""
    return ConfigError(f"{source}: {key or 'config'}:{shown} is not allowed; expected {_expected(error)}")


_BOUNDS = {"greater_than": ">", "greater_than_equal": ">=", "less_than": "<", "less_than_equal": "<="}
# names other libraries use for our keys, so a misspelt or foreign key still gets the right suggestion
_ALIASES = {"learning_rate": "lr", "n_layers": "num_blocks", "num_layers": "num_blocks", "n_blocks": "num_blocks",
            "hidden_size": "dim", "embedding_size": "dim", "hidden_units": "dim", "n_heads": "num_heads",
            "max_seq_length": "max_len", "maxlen": "max_len", "dropout_prob": "dropout", "epoch": "epochs",
            "train_batch_size": "batch_size", "stopping_step": "patience", "topk": "ks"}


def _expected(error: dict) -> str:
    kind, ctx = error["type"], error.get("ctx", {})
    for name, sign in _BOUNDS.items():
        if kind == name:
            limit = next(iter(ctx.values()))
            return f"a number {sign} {limit}"
    message = error["msg"].removeprefix("Value error, ")
    text = message[0].lower() + message[1:] if message else message
    return text.replace("input should be", "").strip()


def _section_keys(section: str, tree: dict) -> list[str]:
    if section == "model":
        name = str(tree.get("model", {}).get("name", "sasrec"))
        return ["name", *get_model_class(name).config_class.model_fields]
    cls = SECTIONS.get(section)
    return list(cls.model_fields) if cls is not None else list(SECTIONS)


# ----------------------------------------------------------------------------------------------- output

def config_to_dict(config: RunConfig) -> dict:
    """Plain YAML-safe nested dict; `config_from_dict(config_to_dict(c)) == c`."""
    tree = {name: getattr(config, name).model_dump(mode="json") for name in SECTIONS if name != "model"}
    tree["model"] = config.model.to_dict()
    return {name: tree[name] for name in SECTIONS}


def dump_config(config: RunConfig, path: str | Path) -> None:
    """Write the config as YAML, atomically."""
    from seqrec.train.runlog import write_text

    write_text(Path(path), yaml.safe_dump(config_to_dict(config), sort_keys=False))


def config_hash(config: RunConfig) -> str:
    """Short stable digest of the resolved config."""
    canonical = json.dumps(config_to_dict(config), sort_keys=True)
    return hashlib.blake2b(canonical.encode(), digest_size=8).hexdigest()


def describe_keys() -> dict[str, str]:
    """`section.key` -> description, for help texts."""
    out = {}
    for name, cls in SECTIONS.items():
        if name == "model":
            out["model.name"] = "registered model name; the model's own hyper-parameters sit beside it"
            continue
        for key, field in cls.model_fields.items():
            out[f"{name}.{key}"] = field.description or ""
    return out
