"""Run configuration: typed, validated YAML sections `data`, `split`, `model`, `loss`, `train`, `eval`.

    config = load_config("configs/ml1m_sasrec.yaml", ["train.lr=1e-3", "model.dim=32"])
    config.model.name, config.model.params.dim, config.train.lr

Every field has a default and a description (`describe_keys()` lists them for help texts). The model section is
flat in YAML (`model: {name: sasrec, dim: 64}`) and `ModelSection(name, params)` in Python, `params` being an
instance of the model's own `config_class`. YAML is read with a `yaml.SafeLoader` (never `eval`) that also reads
`1e-3` as a number. Every problem surfaces as ONE `ConfigError` naming the key path, the value and what is
allowed, e.g. `train.lr: value -1 is not allowed; expected a number > 0`, and the file line or `--set` it came from.
"""

from __future__ import annotations

import difflib
import hashlib
import inspect
import json
import os
import re
from collections.abc import Callable, Hashable, Sequence
from pathlib import Path
from typing import Annotated, Any, Literal, get_args

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializeAsAny,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_serializer,
    model_validator,
)
from pydantic_core import PydanticCustomError

from seqrec.data import columns as canonical
from seqrec.data.formats import FORMATS, SESSION_FORMATS
from seqrec.errors import ConfigError
from seqrec.models import MODELS, ModelConfig, get_model_class

# YAML 1.1 reads `12:30` as the base-60 integer 750 and `017` as the octal 15: silent changes of meaning for
# values such as `model.dim=12:30`; both are text here, as in YAML 1.2 (a wrong type for a number key)
_AMBIGUOUS_NUMBER = re.compile(r"[-+]?(?:0[0-9_]+|[0-9][0-9_]*(?::[0-5]?[0-9])+(?:\.[0-9_]*)?)\Z")


class _Loader(yaml.SafeLoader):
    """SafeLoader that reads `1e-3` as a float (YAML 1.1 wants `1.0e-3`), `12:30` and `017` as text (YAML 1.1
    wants base-60 and octal numbers), and rejects duplicate keys."""

    def resolve(self, kind, value, implicit):
        if kind is yaml.ScalarNode and implicit[0] and _AMBIGUOUS_NUMBER.match(value):
            return "tag:yaml.org,2002:str"
        return super().resolve(kind, value, implicit)

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen: set = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            if isinstance(key, Hashable):
                if key in seen:
                    raise yaml.constructor.ConstructorError(None, None, f"duplicate key {key!r}", key_node.start_mark)
                seen.add(key)
        return super().construct_mapping(node, deep)


_Loader.add_implicit_resolver("tag:yaml.org,2002:float", re.compile(r"^[-+]?[0-9][0-9_]*(\.[0-9_]*)?[eE][-+]?[0-9]+$"),
                              list("-+0123456789"))


def _fail(message: str, **context: Any) -> PydanticCustomError:
    """A validation error shown as `key: message` (`key=` overrides the location pydantic reports)."""
    return PydanticCustomError("seqrec", "{message}", {"message": message, **context})


class _Section(BaseModel):
    # strict: YAML already types its scalars, so `epochs: true` or `path: 12` are mistakes, not values to coerce
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False)


_VAR = re.compile(r"\$(?:\{(\w+)\}|(\w+))")


def _expand_path(value: str) -> str:
    """`$VAR`, `${VAR}` and `~` expanded; an unset variable is an error naming it."""
    def variable(match: re.Match) -> str:
        name = match.group(1) or match.group(2)
        if name not in os.environ:
            raise _fail(f"environment variable {name} is not set (used in {value!r}); set it to the folder "
                        f"holding the data, e.g. `export {name}=/path/to/datasets`")
        return os.environ[name]

    return os.path.expanduser(_VAR.sub(variable, value))


class DataConfig(_Section):
    path: str = Field("demo", description="data file, or 'demo' for the built-in synthetic data; $VAR, ~ expanded")
    format: str | None = Field(None, description=f"{', '.join(FORMATS)}, or {', '.join(SESSION_FORMATS)} (raw "
                                                 "train-item-views.csv, session protocol); null = detect")
    columns: dict[str, str | int] | None = Field(None, description="user/item/time/rating/session -> the file's "
                                                                   "column name or 0-based position")
    separator: str | None = Field(None, description="CSV/TSV field separator; null = detect")
    header: bool | None = Field(None, description="whether a CSV/TSV file starts with a header line; null = detect")
    dedupe: bool = Field(False, description="drop exact duplicate rows")
    min_rating: float | None = Field(None, description="keep only interactions rated at least this")
    min_user_count: int = Field(0, ge=0, description="k-core: drop users with fewer interactions (0 = keep all)")
    min_item_count: int = Field(0, ge=0, description="k-core: drop items with fewer interactions (0 = keep all)")
    cache: bool = Field(True, description="read and write the prepared-data cache")
    test_path: str | None = Field(None, description="session protocol: a separate test file of preprocessed "
                                                    "sessions (one per line); null = split `path` by time")

    @field_validator("test_path")
    @classmethod
    def _expand_test(cls, value: str | None) -> str | None:
        return None if value is None else _expand_path(value)

    @field_validator("path", mode="before")
    @classmethod
    def _path_like(cls, value: Any) -> Any:
        return os.fspath(value) if isinstance(value, os.PathLike) else value

    @field_validator("path")
    @classmethod
    def _expand(cls, value: str) -> str:
        return _expand_path(value)

    @field_validator("columns")
    @classmethod
    def _known_columns(cls, value: dict | None) -> dict | None:
        for name in value or {}:
            if name not in canonical.ALL:
                raise _fail(f"unknown column {name!r}; expected one of {', '.join(canonical.ALL)}",
                            key=f"data.columns.{name}")
        return value


class SplitConfig(_Section):
    protocol: Literal["leave_one_out", "temporal", "session"] = Field(
        "leave_one_out", description="leave_one_out: last item test, the one before valid; temporal: time cut-offs; "
                                     "session: every prefix of the test sessions (SR-GNN), validation = valid_fraction "
                                     "of the training sessions (split.valid_sessions)")
    test_days: float = Field(7, gt=0, description="session protocol on a raw click log: sessions of the last this "
                                                   "many days are the test set (Diginetica 7, Yoochoose 1)")
    max_session_len: int | None = Field(None, ge=2, description="session protocol on a raw click log: keep the "
                                                                "first this many clicks of each session (LESSR: 20)")
    valid_fraction: float | None = Field(None, gt=0, lt=1, description="temporal: share of interactions in the "
                                                                       "validation window; session: share of the "
                                                                       "(latest) training sessions, default 0.1; "
                                                                       "validation window")
    valid_sessions: Literal["latest", "random"] = Field("latest", description="session: which training sessions "
                                                                                "validate, the latest or a seeded "
                                                                                "random draw (split.seed)")
    seed: int = Field(0, ge=0, description="session: seed of the random validation draw")
    test_fraction: float | None = Field(None, gt=0, lt=1, description="temporal: share of (latest) interactions "
                                                                      "in the test window")
    targets: Literal["all", "first"] = Field("all", description="temporal: every interaction of a window, or "
                                                                "each user's first")

    @model_validator(mode="after")
    def _temporal_needs_fractions(self) -> SplitConfig:
        if self.protocol == "temporal":
            if self.valid_fraction is None or self.test_fraction is None:
                raise _fail("the temporal protocol needs split.valid_fraction and split.test_fraction",
                            key="split.protocol")
            if self.valid_fraction + self.test_fraction >= 1:
                raise _fail(f"valid_fraction + test_fraction must be below 1, got {self.valid_fraction} + "
                            f"{self.test_fraction}", key="split.test_fraction")
        return self


class ModelSection(BaseModel):
    """`name` plus the model's own hyper-parameters: flat in YAML, validated `params` in Python."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field("sasrec", description=f"registered model: {', '.join(sorted(MODELS))}")
    params: SerializeAsAny[ModelConfig] = Field(default_factory=lambda: get_model_class("sasrec").config_class(),
                                                description="the model's hyper-parameters, written beside `name`")

    @model_validator(mode="before")
    @classmethod
    def _from_flat(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data  # pydantic reports "expected a mapping"
        data = dict(data)
        name = data.pop("name", "sasrec")
        if not isinstance(name, str):
            raise _fail(f"value {name!r} has the wrong type; expected a model name (a string)", key="model.name")
        try:
            model_class = get_model_class(name)
        except ConfigError as error:  # the registry's own message, with its did-you-mean
            raise _fail(str(error), key="model.name") from None
        # ModelSection(name=..., params=...) from Python; a flat mapping from YAML
        params = data.pop("params") if set(data) == {"params"} else data
        if isinstance(params, ModelConfig):
            params = params.model_dump()  # re-validated, so another model's config is caught
        try:
            validated = model_class.config_class.model_validate(params)
        except ValidationError as error:
            raise _fail("invalid hyper-parameters", problems=_problems(
                error, model_class.config_class, ("model",), extra_keys=("name",))) from None
        return {"name": model_class.name, "params": validated}

    @model_serializer(mode="wrap")
    def _to_flat(self, handler: Callable[[Any], dict]) -> dict:
        dumped = handler(self)
        return {"name": dumped["name"], **dumped["params"]}


class LossConfig(_Section):
    name: Literal["ce", "bce", "bpr", "sampled_softmax"] = Field(
        "ce", description="ce: full softmax cross-entropy; bce, bpr: sampled negatives; sampled_softmax")
    num_negatives: int = Field(1, ge=1, description="negatives per position (bce, bpr, uniform sampled_softmax)")
    negatives: Literal["uniform", "in_batch"] = Field("uniform", description="sampled_softmax negatives: uniform "
                                                                             "over items, or the batch's targets")
    log_q_correction: bool = Field(True, description="in_batch negatives: subtract log popularity from logits")
    shared_negatives: bool = Field(True, description="uniform sampled_softmax: one draw of num_negatives for the "
                                                     "whole batch (true), or num_negatives per position (false, as "
                                                     "generative-recommenders' local negatives; more memory)")
    negatives_across_ranks: bool = Field(False, description="in_batch negatives under DDP: draw them from the "
                                                            "targets of every rank's part of the global batch "
                                                            "(all-gather of the ids), not only this rank's")

    @model_validator(mode="after")
    def _across_ranks_needs_in_batch(self) -> LossConfig:
        if self.negatives_across_ranks and (self.name != "sampled_softmax" or self.negatives != "in_batch"):
            raise _fail(f"negatives_across_ranks gathers in-batch negatives; it needs loss.name: sampled_softmax "
                        f"and loss.negatives: in_batch (got {self.name}, {self.negatives})",
                        key="loss.negatives_across_ranks")
        return self


class TrainConfig(_Section):
    optimizer: Literal["adam", "adamw"] = Field("adam", description="optimiser")
    lr: float = Field(1e-3, gt=0, description="learning rate")
    weight_decay: float = Field(0.0, ge=0, description="weight decay (coupled for adam, decoupled for adamw)")
    betas: list[Annotated[float, Field(ge=0, lt=1)]] = Field(
        [0.9, 0.999], min_length=2, max_length=2, description="Adam/AdamW moment decay rates [beta1, beta2]")
    lr_decay: float = Field(1.0, gt=0, le=1, description="multiply the learning rate by this every lr_decay_every "
                                                       "epochs (SR-GNN: 0.1 every 3); 1 = constant")
    lr_decay_every: int = Field(1, ge=1, description="epochs between learning-rate decays (see lr_decay)")
    lr_decay_start: int | None = Field(None, ge=2, description="epoch (1-based) that first runs at the decayed "
                                       "rate; null = lr_decay_every + 1 (SR-GNN's code: 3, it steps its "
                                       "scheduler before each epoch)")
    warmup_steps: int = Field(0, ge=0, description="raise the learning rate linearly from lr / warmup_steps to "
                                                    "lr over the first this many optimiser steps; 0 = none")
    schedule: Literal["constant", "linear", "cosine"] = Field(
        "constant", description="per-step decay after the warm-up, down to min_lr_ratio x lr at the last step of "
                                "train.epochs: constant (none), linear or cosine")
    min_lr_ratio: float = Field(0.0, ge=0, le=1, description="linear/cosine schedule: final lr as a share of lr")
    no_decay: list[Literal["embeddings", "biases", "norms"]] = Field(
        [], description="parameters that get no weight decay: embeddings (every nn.Embedding table), biases, "
                        "norms (layer-norm weights); [] = decay all (when weight_decay > 0)")
    clip_norm: float | None = Field(5.0, gt=0, description="clip the gradient norm to this; null = never")
    epochs: int = Field(200, ge=1, description="most passes over the training data")
    batch_size: int = Field(128, ge=1, description="training sequences per step")
    patience: int = Field(10, ge=0, description="validations without improvement before stopping (one per "
                                                "eval_every epochs); 0 = never stop early")
    seed: int = Field(42, description="seed of every random generator")
    deterministic: bool = Field(False, description="use deterministic torch kernels (slower)")
    device: str = Field("cpu", description="cpu, cuda, cuda:N, or auto (cuda when available)")
    eval_every: int = Field(1, ge=1, description="validate every this many epochs")
    num_threads: int | None = Field(None, ge=1, description="torch CPU threads; null = torch's default")
    progress: bool = Field(True, description="show a progress bar")
    max_minutes: float | None = Field(None, gt=0, description="wall-clock budget: stop after the epoch that "
                                                              "crosses it; null = none")
    align: Literal["right", "left"] = Field("right", description="padding side of training rows")
    batching: Literal["random", "length"] = Field(
        "random", description="random: batches of shuffled rows; length: shuffled rows grouped by length in pools "
                              "of 64 batches, batches in random order (less padding, about 2x faster on ML-1M)")

    precision: Literal["fp32", "bf16", "fp16"] = Field(
        "fp32", description="training arithmetic: fp32, or autocast to bf16 / fp16 (fp16 with a gradient scaler); "
                            "the loss and evaluation stay fp32. Meant for CUDA; on a CPU only when asked")
    sparse_embeddings: bool = Field(False, description="sampled losses on huge catalogues: the item table gets "
                                                       "sparse gradients and a row-wise (lazy) Adam that updates "
                                                       "only the rows a batch used, instead of a dense step over "
                                                       "every row (no weight decay on the table)")
    dist_timeout: float = Field(1800, gt=0, description="DDP (torchrun): seconds a rank waits in a collective "
                                                        "(including for rank 0 to prepare the data) before it "
                                                        "gives up on the others")
    tensorboard: bool = Field(False, description="also write per-epoch loss, learning rate, validation metrics "
                                                 "and the config as TensorBoard events under <run dir>/tensorboard "
                                                 "(needs the tensorboard package: pip install 'seqrec[tensorboard]')")
    mlflow: bool = Field(False, description="also log the config, per-epoch metrics and the final results to "
                                            "MLflow (pip install 'seqrec[mlflow]'); the run directory stays the "
                                            "source of truth")
    mlflow_uri: str | None = Field(None, description="MLflow tracking URI; null = a local SQLite store "
                                                     "<run dir>/mlflow.db (nothing leaves the machine)")
    mlflow_experiment: str = Field("seqrec", description="MLflow experiment name")

    @field_validator("device")
    @classmethod
    def _device(cls, value: str) -> str:
        if not re.fullmatch(r"cpu|auto|cuda(:\d+)?", value):
            raise _fail(f"value {value!r} is not allowed; expected 'cpu', 'cuda', 'cuda:N' or 'auto'")
        return value


class EvalConfig(_Section):
    ks: list[Annotated[int, Field(ge=1)]] = Field([1, 5, 10, 20, 50, 100], min_length=1,
                                                  description="cut-offs k of HR@k, NDCG@k and MRR@k")
    exclude_history: bool = Field(False, description="never rank items already in the user's history")
    batch_size: int = Field(256, ge=1, description="users ranked per evaluation batch")
    report_test: bool = Field(False, description="also rank the test targets after every validation and log them "
                                                 "(for comparison with papers that pick epochs on the test set; "
                                                 "never used to choose the epoch)")
    max_users: int | None = Field(None, ge=1, description="validate on a seeded sample of this many users "
                                                          "(train.seed) instead of all of them, for large logs; "
                                                          "the final validation and test use every user; "
                                                          "null = all")
    metric: str = Field("NDCG@10", description="validation metric (early stopping, best epoch): HR@k, NDCG@k or "
                                               "MRR@k with k in ks, or MRR")

    @field_validator("ks")
    @classmethod
    def _sorted(cls, value: list[int]) -> list[int]:
        return sorted(set(value))

    @field_validator("metric")
    @classmethod
    def _metric(cls, value: str, info: ValidationInfo) -> str:
        if "ks" not in info.data:
            return value  # ks itself is invalid and reported
        allowed = [f"{name}@{k}" for name in ("HR", "NDCG", "MRR") for k in info.data["ks"]] + ["MRR"]
        by_upper = {name.upper(): name for name in allowed}
        if value.upper() in by_upper:
            return by_upper[value.upper()]
        close = difflib.get_close_matches(value.upper(), by_upper, n=1)
        hint = f"; did you mean {by_upper[close[0]]!r}?" if close else ""
        raise _fail(f"value {value!r} is not allowed; expected one of {', '.join(allowed)} (k from eval.ks){hint}")


class RunConfig(BaseModel):
    """A whole run: every section, each with its defaults."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    data: DataConfig = Field(default_factory=DataConfig, description="where the interactions come from")
    split: SplitConfig = Field(default_factory=SplitConfig, description="how they are split")
    model: ModelSection = Field(default_factory=ModelSection, description="the model and its hyper-parameters")
    loss: LossConfig = Field(default_factory=LossConfig, description="the training loss")
    train: TrainConfig = Field(default_factory=TrainConfig, description="the training loop")
    eval: EvalConfig = Field(default_factory=EvalConfig, description="full-ranking evaluation")

    @model_validator(mode="before")
    @classmethod
    def _empty_sections(cls, data: Any) -> Any:
        # `train:` with every key commented out is null in YAML: read it as "all defaults"
        return {k: ({} if v is None else v) for k, v in data.items()} if isinstance(data, dict) else data


SECTIONS: dict[str, type[BaseModel]] = {name: kind for name, field in RunConfig.model_fields.items()
                                         if isinstance(kind := field.annotation, type) and issubclass(kind, BaseModel)}

# ------------------------------------------------------------------------------------------- error messages

# common spellings from other libraries, so that `learning_rate` suggests `lr`
_ALIASES = {"learning_rate": "lr", "num_epochs": "epochs", "n_epochs": "epochs", "hidden_size": "dim",
            "hidden_units": "dim", "embedding_dim": "dim", "d_model": "dim", "num_layers": "num_blocks",
            "n_layers": "num_blocks", "n_heads": "num_heads", "dropout_rate": "dropout", "maxlen": "max_len",
            "max_seq_len": "max_len", "max_seq_length": "max_len", "stopping_step": "patience", "topk": "ks"}
_TYPES = {"int_type": "an integer", "int_parsing": "an integer", "int_from_float": "an integer",
          "float_type": "a number", "float_parsing": "a number", "bool_type": "true or false",
          "bool_parsing": "true or false", "string_type": "a string", "list_type": "a list", "dict_type": "a mapping",
          "model_type": "a mapping", "model_attributes_type": "a mapping"}
_BOUNDS = {"greater_than": "gt", "greater_than_equal": "ge", "less_than": "lt", "less_than_equal": "le"}
_SIGNS = {"gt": ">", "ge": ">=", "lt": "<", "le": "<="}
_UNION_MEMBER = re.compile(r"str|int|float|bool|none|[a-z-]+\[.*\]")


def _suggest(key: str, valid: Sequence[str]) -> str | None:
    """The valid key that `key` probably meant, or None."""
    candidates = {name: name for name in valid} | {a: name for a, name in _ALIASES.items() if name in valid}
    close = difflib.get_close_matches(key.lower(), candidates, n=1)
    return candidates[close[0]] if close else None


def _owner(root: type[BaseModel], loc: tuple) -> tuple[Any, Any]:
    """(class holding the last key of `loc`, that key's FieldInfo or None)."""
    owner: Any = root
    for part in loc[:-1]:
        fields = getattr(owner, "model_fields", {})
        owner = fields[part].annotation if part in fields else None
    return owner, getattr(owner, "model_fields", {}).get(loc[-1]) if loc else None


def _problems(error: ValidationError, root: type[BaseModel], prefix: tuple = (),
              extra_keys: Sequence[str] = ()) -> list[tuple[str, str]]:
    """(key path, one-line message) for each error raised validating `root` (found at `prefix`)."""
    out: list[tuple[str, str]] = []
    type_problem: dict[tuple, int] = {}  # loc -> index in out, to merge the members of a union (str | int)
    for item in error.errors():
        loc = tuple(item["loc"])
        if len(loc) > 2 and isinstance(loc[-1], str) and _UNION_MEMBER.fullmatch(loc[-1]):
            loc = loc[:-1]
        key = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in prefix + loc).lstrip(".")
        kind, ctx, value = item["type"], item.get("ctx") or {}, item["input"]
        owner, field = _owner(root, loc)
        if kind == "seqrec" and "problems" in ctx:
            out.extend(ctx["problems"])
        elif kind == "seqrec":
            key = ctx.get("key", key)
            out.append((key, f"{key}: {ctx['message']}"))
        elif kind in _TYPES and loc in type_problem:
            index = type_problem[loc]
            out[index] = (key, f"{out[index][1]} or {_TYPES[kind]}")
        elif kind in _TYPES and not key:
            out.append((key, f"the configuration must be a mapping of sections ({', '.join(SECTIONS)}), "
                             f"got {_shown(value)}"))
        elif kind in _TYPES:
            type_problem[loc] = len(out)
            out.append((key, f"{key}: value {_shown(value)} has the wrong type; expected {_TYPES[kind]}"))
        elif kind == "extra_forbidden":
            label = "section" if owner is RunConfig else "key"
            valid = list(extra_keys) + list(getattr(owner, "model_fields", ()))
            guess = _suggest(str(loc[-1]), valid)
            hint = f"; did you mean {key.rpartition('.')[0] + '.' * (label == 'key') + guess!r}?" if guess else ";"
            out.append((key, f"unknown {label} {key!r}{hint} valid {label}s: {', '.join(valid)}"))
        else:
            expected = _expected(kind, ctx, field, value)
            out.append((key, f"{key}: value {_shown(value)} is not allowed; expected {expected}"))
    return out


def _expected(kind: str, ctx: dict, field: Any, value: Any) -> str:
    if kind in _BOUNDS:
        # all the field's bounds (`> 0 and < 1`), not only the one broken; list items only have ctx
        metadata = field.metadata if field is not None else ()
        bounds = {a: getattr(m, a) for m in metadata for a in _SIGNS if getattr(m, a, None) is not None}
        bounds = bounds or {_BOUNDS[kind]: ctx[_BOUNDS[kind]]}
        whole = int in get_args(field.annotation) + (field.annotation,) if field else isinstance(value, int)
        return f"{'an integer' if whole else 'a number'} " + " and ".join(f"{_SIGNS[a]} {b:g}"
                                                                          for a, b in bounds.items())
    if kind == "literal_error":
        return ctx["expected"]
    if kind == "too_short":
        return f"at least {ctx.get('min_length', 1)} item(s)"
    if kind == "finite_number":
        return "a finite number"
    return kind.replace("_", " ")  # kinds this schema does not produce; still one line


def _error(problems: list[tuple[str, str]], annotate: Callable[[str, str], str] = lambda key, text: text
           ) -> ConfigError:
    """One ConfigError for all `problems`: one line for one problem, a list for several."""
    lines = [_short(annotate(key, message), 500) for key, message in problems[:MAX_PROBLEMS]]
    if len(problems) == 1:
        return ConfigError(lines[0])
    more = f"\n  ... and {len(problems) - MAX_PROBLEMS} more" if len(problems) > MAX_PROBLEMS else ""
    return ConfigError(f"{len(problems)} problems in the configuration:\n" + "\n".join(f"  - {m}" for m in lines)
                       + more)


MAX_PROBLEMS = 20      # problems listed in one ConfigError (an alias-expanded list can hold millions)


def _shown(value: Any) -> str:
    """A bounded repr of a config value for messages: a few items of a list (an alias-expanded YAML list can
    hold millions), long texts cut."""
    import reprlib

    shown = reprlib.Repr()
    shown.maxlevel, shown.maxlist, shown.maxdict, shown.maxstring, shown.maxother, shown.maxlong = 2, 6, 6, 80, 80, 40
    return _short(shown.repr(value), 100)


def _short(text: str, limit: int = 120) -> str:
    """`text` cut to `limit` characters with an ellipsis: values and --set items quoted in messages stay short."""
    return text if len(text) <= limit else text[:limit - 1] + "…"


# ----------------------------------------------------------------------------------------------- public API

def config_from_dict(tree: dict) -> RunConfig:
    """Validate a nested dict (section -> key -> value, the model section flat) into a RunConfig.

    Raises:
        ConfigError: naming each problem's key path, value and what is allowed.
    """
    try:
        return RunConfig.model_validate(tree)
    except ValidationError as error:
        raise _error(_problems(error, RunConfig)) from None


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
    text, tree = _read_yaml(Path(path)) if path is not None else (None, {})
    origin: dict[str, str] = {}  # key path -> the override that set it, to say where a bad value came from
    for item in overrides:
        key = _apply_override(tree, item)
        origin = {k: v for k, v in origin.items() if not k.startswith(key)} | {key: item}
    try:
        return RunConfig.model_validate(tree)
    except ValidationError as error:
        problems = _problems(error, RunConfig)
    lines = _key_lines(text) if text is not None else {}

    def annotate(key: str, message: str) -> str:
        chain = _prefixes(key)
        setter = next((origin[k] for k in chain if k in origin), None) or next(
            (v for k, v in origin.items() if k.startswith(key + ".")), None)
        if setter is not None:
            return f"{message} (from --set {_short(setter)})"
        line = next((lines[k] for k in chain if k in lines), None)
        return message if path is None else f"{path}:{line}: {message}" if line else f"{path}: {message}"

    raise _error(problems, annotate)


def _prefixes(key: str) -> list[str]:
    """`eval.ks[2]` -> ['eval.ks[2]', 'eval.ks', 'eval']: where to look for a key's line or override."""
    parts = re.sub(r"\[\d+\]", "", key).split(".")
    return list(dict.fromkeys([key] + [".".join(parts[:n]) for n in range(len(parts), 0, -1)]))


def _read_yaml(path: Path) -> tuple[str, dict]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError(f"config file {path} cannot be read: {error}") from None
    try:
        tree = yaml.load(text, Loader=_Loader)  # noqa: S506 - a SafeLoader subclass, builds no objects
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark is not None else str(path)
        problem = getattr(error, "problem", None) or str(error).splitlines()[0]
        raise ConfigError(f"{where}: invalid YAML: {problem}") from None
    except ValueError as error:      # an integer of more than 4300 digits (Python's int() limit)
        raise ConfigError(f"{path}: invalid YAML: {str(error).split(';')[0]}") from None
    if tree is not None and not isinstance(tree, dict):
        raise ConfigError(f"{path}:1: the top level must be a mapping of sections ({', '.join(SECTIONS)}), "
                          f"got a {type(tree).__name__}")
    return text, tree or {}  # an empty file: all defaults


def _key_lines(text: str) -> dict[str, int]:
    """`section.key` (any depth) -> 1-based line of that key in the YAML `text`."""
    lines: dict[str, int] = {}
    stack = [("", yaml.compose(text, Loader=_Loader))]
    while stack:
        prefix, node = stack.pop()
        for key_node, value_node in node.value if isinstance(node, yaml.MappingNode) else ():
            lines.setdefault(prefix + str(key_node.value), key_node.start_mark.line + 1)
            stack.append((f"{prefix}{key_node.value}.", value_node))
    return lines


def _apply_override(tree: dict, item: str) -> str:
    """Set `section.key=value` in `tree`; returns the key path."""
    key, eq, raw = item.partition("=")
    parts = key.strip().split(".")
    if not eq or len(parts) < 2 or not all(parts):
        raise ConfigError(f"--set {item!r}: expected SECTION.KEY=VALUE, e.g. train.lr=1e-3")
    if parts[0] not in SECTIONS:
        guess = _suggest(parts[0], list(SECTIONS))
        hint = f"; did you mean {guess!r}?" if guess else ";"
        raise ConfigError(f"--set {item!r}: unknown section {parts[0]!r}{hint} valid sections: {', '.join(SECTIONS)}")
    try:
        value = yaml.load(raw, Loader=_Loader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError:
        value = raw  # e.g. `data.separator=,` is not YAML on its own; it is meant as text
    except ValueError as error:      # an integer of more than 4300 digits (Python's int() limit)
        raise ConfigError(f"--set {_short(item)}: {str(error).split(';')[0]}") from None
    node = tree
    for depth, part in enumerate(parts[:-1]):
        if node.get(part) is None:
            node[part] = {}
        elif not isinstance(node[part], dict):
            raise ConfigError(f"--set {item!r}: {'.'.join(parts[:depth + 1])} is {node[part]!r}, not a mapping")
        node = node[part]
    if parts == ["model", "name"] and node.get("name", "sasrec") != value:
        node.clear()  # another model: its own defaults, not the previous model's keys
    node[parts[-1]] = value
    return ".".join(parts)


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


def describe_keys() -> dict[str, str]:
    """`section.key` -> its description, for help texts.

    Model hyper-parameters are listed for every registered model; one that only some models have ends with
    their names, e.g. `[sasrec]`.
    """
    out = {f"{section}.{key}": field.description or "" for section, cls in SECTIONS.items() if section != "model"
           for key, field in cls.model_fields.items()}
    out["model.name"] = ModelSection.model_fields["name"].description or ""
    texts: dict[str, dict[str, list[str]]] = {}   # key -> description -> models saying it
    for name in sorted(MODELS):
        config_class = MODELS[name].config_class
        comments = _trailing_comments(config_class)
        for key, field in config_class.model_fields.items():
            text = field.description or comments.get(key) or str(field.annotation).replace("typing.", "")
            texts.setdefault(key, {}).setdefault(text, []).append(name)
    for key, by_text in texts.items():
        owners = [name for names in by_text.values() for name in names]
        if len(by_text) == 1 and len(owners) == len(MODELS):
            out[f"model.{key}"] = next(iter(by_text))                      # every model, one meaning
        else:                                                              # say which model means what
            out[f"model.{key}"] = "; ".join(f"{text} [{', '.join(names)}]" for text, names in by_text.items())
    return out


def _trailing_comments(cls: type) -> dict[str, str]:
    """Field name -> its trailing `# comment` in the source of `cls` and its bases (how model configs document)."""
    comments: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        try:
            source = inspect.getsource(klass)
        except (OSError, TypeError):
            continue  # built-in or source-less classes document nothing
        comments.update(re.findall(r"^[ \t]+(\w+)[ \t]*:[^#\n]*#[ \t]*(.+?)[ \t]*$", source, re.MULTILINE))
    return comments
