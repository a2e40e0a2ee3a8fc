"""Search spaces for `seqrec tune`: a YAML mapping from config key to a distribution.

    train.lr:          {type: float, low: 1.0e-4, high: 1.0e-2, log: true}
    model.num_blocks:  {type: int, low: 1, high: 4}
    model.dropout:     {type: float, low: 0.0, high: 0.5, step: 0.1}
    loss.name:         {type: categorical, choices: [ce, sampled_softmax]}

Keys are the config keys of `seqrec train --set` (`seqrec train --keys` lists them). `read_space` checks the file's
shape (a did-you-mean for unknown distribution types and fields); `check_space` checks every key against the
config (a did-you-mean for unknown sections and keys, the model's own hyper-parameters included) and loads the
config once with each bound and each choice, so that a value the config refuses (`model.dropout` above 1, a loss
the model cannot use) is reported before the first trial, not in trial 7.
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from seqrec.config import SECTIONS, load_config
from seqrec.config.problems import suggest
from seqrec.config.yamlfile import Loader
from seqrec.errors import ConfigError
from seqrec.models import get_model_class

KINDS = {"float": ("low", "high", "log", "step"), "int": ("low", "high", "log", "step"), "categorical": ("choices",)}
REQUIRED = {"float": ("low", "high"), "int": ("low", "high"), "categorical": ("choices",)}


@dataclass(frozen=True)
class Dimension:
    """One searched key and its distribution."""

    key: str
    kind: str
    low: float | int | None = None
    high: float | int | None = None
    log: bool = False
    step: float | int | None = None
    choices: tuple = ()

    def suggest(self, trial: Any) -> Any:
        """The trial's value (an `optuna.Trial`: TPE or an enqueued value)."""
        if self.kind == "categorical":
            return trial.suggest_categorical(self.key, list(self.choices))
        if self.kind == "int":
            return trial.suggest_int(self.key, self.low, self.high, step=self.step or 1, log=self.log)
        value = trial.suggest_float(self.key, self.low, self.high, step=self.step, log=self.log)
        return round(value, 12) if self.step else value     # 0.1 steps: 0.3, not 0.30000000000000004

    def edges(self) -> list:
        """The values checked before the first trial: both bounds, or every choice."""
        return list(self.choices) if self.kind == "categorical" else [self.low, self.high]

    def describe(self) -> str:
        if self.kind == "categorical":
            return f"one of {', '.join(map(str, self.choices))}"
        scale = ", log scale" if self.log else f", step {self.step}" if self.step else ""
        return f"{self.kind} in [{self.low}, {self.high}]{scale}"


def override(key: str, value: Any) -> str:
    """`--set` text for one value: `train.lr=0.001`, `loss.name="ce"` (JSON is YAML, so the type survives)."""
    return f"{key}={json.dumps(value)}"


def read_space(path: str | Path) -> list[Dimension]:
    """Read and check the shape of a search-space YAML file.

    Raises:
        ConfigError: a missing or malformed file, an unknown distribution type or field (with a did-you-mean),
            missing or inconsistent bounds, naming the file and the key.
    """
    path = Path(path)
    try:
        tree = yaml.load(path.read_text(encoding="utf-8"), Loader=Loader)  # noqa: S506 - a SafeLoader subclass
    except FileNotFoundError:
        raise ConfigError(f"search space {path} does not exist") from None
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as error:
        raise ConfigError(f"search space {path} cannot be read: {str(error).splitlines()[0]}") from None
    if not isinstance(tree, dict) or not tree:
        raise ConfigError(f"search space {path}: expected a mapping from config key to distribution, e.g. "
                          "`train.lr: {type: float, low: 1.0e-4, high: 1.0e-2, log: true}`")
    return [_dimension(path, str(key), spec) for key, spec in tree.items()]


def _dimension(path: Path, key: str, spec: Any) -> Dimension:
    where = f"search space {path}: {key}"
    if not isinstance(spec, dict):
        raise ConfigError(f"{where}: expected a distribution mapping such as {{type: float, low: 0.0001, high: "
                          f"0.01, log: true}}, got {spec!r}")
    kind = spec.get("type")
    if kind not in KINDS:
        guess = difflib.get_close_matches(str(kind), KINDS, n=1)
        hint = f"; did you mean {guess[0]!r}?" if guess else ";"
        raise ConfigError(f"{where}: unknown distribution type {kind!r}{hint} valid types: {', '.join(KINDS)}")
    for name in spec:
        if name != "type" and name not in KINDS[kind]:
            guess = difflib.get_close_matches(str(name), KINDS[kind], n=1)
            hint = f"; did you mean {guess[0]!r}?" if guess else ";"
            raise ConfigError(f"{where}: unknown field {name!r} of a {kind} distribution{hint} valid fields: "
                              f"type, {', '.join(KINDS[kind])}")
    missing = [name for name in REQUIRED[kind] if name not in spec]
    if missing:
        raise ConfigError(f"{where}: a {kind} distribution needs {' and '.join(missing)}")
    if kind == "categorical":
        return Dimension(key, kind, choices=_choices(where, spec["choices"]))
    number = int if kind == "int" else (int, float)
    values = {name: spec.get(name) for name in ("low", "high", "step")}
    for name, value in values.items():
        if value is not None and (isinstance(value, bool) or not isinstance(value, number)):
            raise ConfigError(f"{where}: {name} {value!r} is not {'an integer' if kind == 'int' else 'a number'}")
    low, high, step, log = spec["low"], spec["high"], spec.get("step"), spec.get("log", False)   # low, high: required
    if not isinstance(log, bool):
        raise ConfigError(f"{where}: log {log!r} is not true or false")
    if low > high:
        raise ConfigError(f"{where}: low {low} is above high {high}")
    if log and low <= 0:
        raise ConfigError(f"{where}: a log-scale distribution needs low > 0, got {low}")
    if step is not None and (step <= 0 or log):
        raise ConfigError(f"{where}: step must be > 0 and cannot go with log: true, got step {step}")
    return Dimension(key, kind, low=low, high=high, log=log, step=step)


def _choices(where: str, choices: Any) -> tuple:
    if not isinstance(choices, list) or not choices:
        raise ConfigError(f"{where}: choices must be a non-empty list, got {choices!r}")
    for choice in choices:
        if choice is not None and not isinstance(choice, (bool, int, float, str)):
            raise ConfigError(f"{where}: choice {choice!r} is not a number, string, true/false or null")
    if len(set(map(json.dumps, choices))) != len(choices):
        raise ConfigError(f"{where}: choices repeat a value: {choices!r}")
    return tuple(choices)


def check_space(space: Sequence[Dimension], config_path: str | Path | None, overrides: Sequence[str] = (),
                source: str | Path = "search space") -> None:
    """Check every key of `space` against the config and load the config with each of its edge values.

    Raises:
        ConfigError: an unknown section or key (did-you-mean), a key also fixed by `--set`, or an edge value the
            config refuses (with the config loader's own message).
    """
    base = load_config(config_path, overrides)
    fixed = {item.partition("=")[0].strip() for item in overrides}
    for dim in space:
        where = f"{source}: {dim.key}"
        _check_key(where, dim.key, base.model.name)
        if dim.key in fixed:
            raise ConfigError(f"{where}: the key is both searched and fixed by --set {dim.key}=...; drop one")
        for value in dim.edges():
            try:
                load_config(config_path, [*overrides, override(dim.key, value)])
            except ConfigError as error:
                message = str(error).replace(f" (from --set {override(dim.key, value)})", "")
                raise ConfigError(f"{where}: the value {value!r} ({dim.describe()}) is not a valid config value: "
                                  f"{message}") from None


def _check_key(where: str, key: str, model_name: str) -> None:
    parts = key.split(".")
    if len(parts) < 2 or not all(parts):
        raise ConfigError(f"{where}: expected a config key SECTION.KEY, e.g. train.lr")
    section, name = parts[0], parts[1]
    if section not in SECTIONS:
        guess = suggest(section, list(SECTIONS))
        hint = f"; did you mean {guess + '.' + '.'.join(parts[1:])!r}?" if guess else ";"
        raise ConfigError(f"{where}: unknown section {section!r}{hint} valid sections: {', '.join(SECTIONS)}")
    if section == "model":
        valid = ["name", *get_model_class(model_name).config_class.model_fields]
    else:
        valid = list(SECTIONS[section].model_fields)
    if name not in valid:
        guess = suggest(name, valid)
        hint = f"; did you mean '{section}.{guess}'?" if guess else ";"
        owner = f"model {model_name!r}" if section == "model" else f"section {section!r}"
        raise ConfigError(f"{where}: unknown key {key!r}{hint} valid keys of {owner}: {', '.join(valid)}")


def space_to_dict(space: Sequence[Dimension]) -> dict:
    """The space as the YAML mapping it was read from (defaults filled in)."""
    out = {}
    for dim in space:
        spec: dict[str, Any] = {"type": dim.kind}
        if dim.kind == "categorical":
            spec["choices"] = list(dim.choices)
        else:
            spec.update(low=dim.low, high=dim.high, log=dim.log, step=dim.step)
        out[dim.key] = spec
    return out
