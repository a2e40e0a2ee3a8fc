"""YAML in and out of the configuration: the loader, reading a config file, `--set` overrides.

The loader is a `yaml.SafeLoader` (never `eval`) that reads `1e-3` as a number and `12:30` / `017` as text, and
refuses duplicate keys; a file that cannot be read, is not YAML or is not a mapping of sections is one
`ConfigError` naming the file and line.
"""

from __future__ import annotations

import re
from collections.abc import Hashable
from pathlib import Path

import yaml

from seqrec.config.problems import short, suggest
from seqrec.config.schema import SECTIONS
from seqrec.errors import ConfigError

# YAML 1.1 reads `12:30` as the base-60 integer 750 and `017` as the octal 15: silent changes of meaning for
# values such as `model.dim=12:30`; both are text here, as in YAML 1.2 (a wrong type for a number key)
_AMBIGUOUS_NUMBER = re.compile(r"[-+]?(?:0[0-9_]+|[0-9][0-9_]*(?::[0-5]?[0-9])+(?:\.[0-9_]*)?)\Z")


class Loader(yaml.SafeLoader):
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


Loader.add_implicit_resolver("tag:yaml.org,2002:float", re.compile(r"^[-+]?[0-9][0-9_]*(\.[0-9_]*)?[eE][-+]?[0-9]+$"),
                              list("-+0123456789"))


def read_yaml(path: Path) -> tuple[str, dict]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError(f"config file {path} cannot be read: {error}") from None
    try:
        tree = yaml.load(text, Loader=Loader)  # noqa: S506 - a SafeLoader subclass, builds no objects
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


def key_lines(text: str) -> dict[str, int]:
    """`section.key` (any depth) -> 1-based line of that key in the YAML `text`."""
    lines: dict[str, int] = {}
    stack = [("", yaml.compose(text, Loader=Loader))]
    while stack:
        prefix, node = stack.pop()
        for key_node, value_node in node.value if isinstance(node, yaml.MappingNode) else ():
            lines.setdefault(prefix + str(key_node.value), key_node.start_mark.line + 1)
            stack.append((f"{prefix}{key_node.value}.", value_node))
    return lines


def apply_override(tree: dict, item: str) -> str:
    """Set `section.key=value` in `tree`; returns the key path."""
    key, eq, raw = item.partition("=")
    parts = key.strip().split(".")
    if not eq or len(parts) < 2 or not all(parts):
        raise ConfigError(f"--set {item!r}: expected SECTION.KEY=VALUE, e.g. train.lr=1e-3")
    if parts[0] not in SECTIONS:
        guess = suggest(parts[0], list(SECTIONS))
        hint = f"; did you mean {guess!r}?" if guess else ";"
        raise ConfigError(f"--set {item!r}: unknown section {parts[0]!r}{hint} valid sections: {', '.join(SECTIONS)}")
    try:
        value = yaml.load(raw, Loader=Loader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError:
        value = raw  # e.g. `data.separator=,` is not YAML on its own; it is meant as text
    except ValueError as error:      # an integer of more than 4300 digits (Python's int() limit)
        raise ConfigError(f"--set {short(item)}: {str(error).split(';')[0]}") from None
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
