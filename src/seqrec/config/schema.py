"""The configuration's schema: one pydantic model per YAML section (`data`, `split`, `model`, `loss`, `train`,
`eval`) and `RunConfig`, the whole run; every field with its default, bounds and description (`describe_keys`).

Sections are strict (YAML already types its scalars) and forbid unknown keys; the model section is flat in YAML
and `ModelSection(name, params)` in Python, `params` being validated by the model's own `config_class`.
"""

from __future__ import annotations

import difflib
import inspect
import os
import re
from collections.abc import Callable
from typing import Annotated, Any, Literal

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

from seqrec.config.problems import collect_problems, fail
from seqrec.data import columns as canonical
from seqrec.data.formats import FORMATS, SESSION_FORMATS
from seqrec.errors import ConfigError
from seqrec.models import MODELS, ModelConfig, get_model_class


class _Section(BaseModel):
    # strict: YAML already types its scalars, so `epochs: true` or `path: 12` are mistakes, not values to coerce
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False)


_VAR = re.compile(r"\$(?:\{(\w+)\}|(\w+))")


def _expand_path(value: str) -> str:
    """`$VAR`, `${VAR}` and `~` expanded; an unset variable is an error naming it."""
    def variable(match: re.Match) -> str:
        name = match.group(1) or match.group(2)
        if name not in os.environ:
            raise fail(f"environment variable {name} is not set (used in {value!r}); set it to the folder "
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
                raise fail(f"unknown column {name!r}; expected one of {', '.join(canonical.ALL)}",
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
    validation: Literal["item", "none"] = Field(
        "item", description="leave_one_out: 'item' holds out each user's second-to-last item to choose the epoch; "
                            "'none' trains on it too (the BERT4Rec and HSTU papers' code) and tests the last "
                            "epoch's model: set train.epochs, patience is not used. session: 'none' trains on "
                            "every training session (no valid_fraction held out), e.g. to refit with the epoch "
                            "count a validated run chose")

    @model_validator(mode="after")
    def _protocol_options(self) -> SplitConfig:
        if self.validation == "none" and self.protocol == "temporal":
            raise fail("split.validation 'none' is a leave_one_out and session option; the temporal protocol's "
                       "validation window is set by split.valid_fraction", key="split.validation")
        if self.validation == "none" and self.protocol == "session" and self.valid_fraction is not None:
            raise fail(f"split.validation 'none' holds out no session, but split.valid_fraction is "
                       f"{self.valid_fraction}; drop one of them", key="split.validation")
        if self.protocol == "temporal":
            if self.valid_fraction is None or self.test_fraction is None:
                raise fail("the temporal protocol needs split.valid_fraction and split.test_fraction",
                            key="split.protocol")
            if self.valid_fraction + self.test_fraction >= 1:
                raise fail(f"valid_fraction + test_fraction must be below 1, got {self.valid_fraction} + "
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
            raise fail(f"value {name!r} has the wrong type; expected a model name (a string)", key="model.name")
        try:
            model_class = get_model_class(name)
        except ConfigError as error:  # the registry's own message, with its did-you-mean
            raise fail(str(error), key="model.name") from None
        # ModelSection(name=..., params=...) from Python; a flat mapping from YAML
        params = data.pop("params") if set(data) == {"params"} else data
        if isinstance(params, ModelConfig):
            params = params.model_dump()  # re-validated, so another model's config is caught
        try:
            validated = model_class.config_class.model_validate(params)
        except ValidationError as error:
            raise fail("invalid hyper-parameters", problems=collect_problems(
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
    padding_class: bool = Field(False, description="ce: the padding row of the item table is one more class of the "
                                                   "softmax, never a target (a learned extra negative), as "
                                                   "Klenitskiy & Vasilev's SASRec code scores every embedding row")
    negatives_across_ranks: bool = Field(False, description="in_batch negatives under DDP: draw them from the "
                                                            "targets of every rank's part of the global batch "
                                                            "(all-gather of the ids), not only this rank's")

    @model_validator(mode="after")
    def _padding_class_needs_ce(self) -> LossConfig:
        if self.padding_class and self.name != "ce":
            raise fail(f"padding_class adds the padding row to the full softmax; it needs loss.name: ce (got "
                       f"{self.name})", key="loss.padding_class")
        return self

    @model_validator(mode="after")
    def _across_ranks_needs_in_batch(self) -> LossConfig:
        if self.negatives_across_ranks and (self.name != "sampled_softmax" or self.negatives != "in_batch"):
            raise fail(f"negatives_across_ranks gathers in-batch negatives; it needs loss.name: sampled_softmax "
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
                                       "rate; null = lr_decay_every + 1 (SR-GNN's code as its paper ran it, "
                                       "TensorFlow or PyTorch 0.4: 4; the same PyTorch code on torch >= 1.1, "
                                       "which steps StepLR before each epoch, decays one epoch early, at 3)")
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
                              "of 64 batches, batches in random order (less padding, so cheaper epochs; it changes the "
                              "gradient noise, see benchmarks/README.md)")
    micro_batches: int = Field(
        1, ge=1, description="split each batch into this many parts of similar length (its rows sorted by length), "
                             "each padded only to its own longest row, and accumulate their gradients into one "
                             "step: the same step as the whole batch (the loss is weighted by each part's scored "
                             "positions) for less padded work, e.g. random batches at nearly length batching's "
                             "cost; not with in-batch negatives or the reference MoL's step-level regularisers")

    precision: Literal["fp32", "bf16", "fp16"] = Field(
        "fp32", description="training arithmetic: fp32, or autocast to bf16 / fp16 (fp16 with a gradient scaler); "
                            "the loss and evaluation stay fp32 (with bf16 the full softmax's products take bf16 "
                            "inputs: fast on CPUs with AVX512-BF16 too)")
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
            raise fail(f"value {value!r} is not allowed; expected 'cpu', 'cuda', 'cuda:N' or 'auto'")
        return value


class EvalConfig(_Section):
    ks: list[Annotated[int, Field(ge=1)]] = Field([1, 5, 10, 20, 50, 100], min_length=1,
                                                  description="cut-offs k of HR@k, NDCG@k and MRR@k")
    exclude_history: bool | Literal["window"] = Field(
        False, description="never rank items already in the user's history: true = the whole history before the "
                           "target; 'window' = only the last model.max_len items the model reads (the filter of "
                           "generative-recommenders' evaluation); false = rank every item")
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

    @field_validator("exclude_history", mode="before")
    @classmethod
    def _exclusion(cls, value: Any) -> Any:
        # one problem for a bad value, not one per member of the union
        if isinstance(value, bool) or value == "window":
            return value
        raise fail(f"value {value!r} is not allowed; expected true, false or 'window'")

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
        raise fail(f"value {value!r} is not allowed; expected one of {', '.join(allowed)} (k from eval.ks){hint}")


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
