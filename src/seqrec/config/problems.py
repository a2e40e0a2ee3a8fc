"""The wording of configuration errors: pydantic's validation errors turned into one `ConfigError` that names
each problem's key path, the value and what is allowed (`train.lr: value -1 is not allowed; expected a number > 0`),
with a did-you-mean for unknown keys and sections and bounded reprs of long values.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Sequence
from typing import Any, get_args

from pydantic import BaseModel, ValidationError
from pydantic_core import PydanticCustomError

from seqrec.errors import ConfigError


def fail(message: str, **context: Any) -> PydanticCustomError:
    """A validation error shown as `key: message` (`key=` overrides the location pydantic reports)."""
    return PydanticCustomError("seqrec", "{message}", {"message": message, **context})


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


def suggest(key: str, valid: Sequence[str]) -> str | None:
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


def collect_problems(error: ValidationError, root: type[BaseModel], prefix: tuple = (),
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
            out.append((key, f"the configuration must be a mapping of sections ({', '.join(root.model_fields)}), "
                             f"got {shown(value)}"))
        elif kind in _TYPES:
            type_problem[loc] = len(out)
            out.append((key, f"{key}: value {shown(value)} has the wrong type; expected {_TYPES[kind]}"))
        elif kind == "extra_forbidden":
            label = "section" if owner is root and not prefix else "key"      # root: RunConfig, or a model's
            valid = list(extra_keys) + list(getattr(owner, "model_fields", ()))
            guess = suggest(str(loc[-1]), valid)
            hint = f"; did you mean {key.rpartition('.')[0] + '.' * (label == 'key') + guess!r}?" if guess else ";"
            out.append((key, f"unknown {label} {key!r}{hint} valid {label}s: {', '.join(valid)}"))
        else:
            expected = _expected(kind, ctx, field, value)
            out.append((key, f"{key}: value {shown(value)} is not allowed; expected {expected}"))
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


def config_error(problems: list[tuple[str, str]], annotate: Callable[[str, str], str] = lambda key, text: text
           ) -> ConfigError:
    """One ConfigError for all `problems`: one line for one problem, a list for several."""
    lines = [short(annotate(key, message), 500) for key, message in problems[:MAX_PROBLEMS]]
    if len(problems) == 1:
        return ConfigError(lines[0])
    more = f"\n  ... and {len(problems) - MAX_PROBLEMS} more" if len(problems) > MAX_PROBLEMS else ""
    return ConfigError(f"{len(problems)} problems in the configuration:\n" + "\n".join(f"  - {m}" for m in lines)
                       + more)


MAX_PROBLEMS = 20      # problems listed in one ConfigError (an alias-expanded list can hold millions)


def shown(value: Any) -> str:
    """A bounded repr of a config value for messages: a few items of a list (an alias-expanded YAML list can
    hold millions), long texts cut."""
    import reprlib

    shown = reprlib.Repr()
    shown.maxlevel, shown.maxlist, shown.maxdict, shown.maxstring, shown.maxother, shown.maxlong = 2, 6, 6, 80, 80, 40
    return short(shown.repr(value), 100)


def short(text: str, limit: int = 120) -> str:
    """`text` cut to `limit` characters with an ellipsis: values and --set items quoted in messages stay short."""
    return text if len(text) <= limit else text[:limit - 1] + "…"

