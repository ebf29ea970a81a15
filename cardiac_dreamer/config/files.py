"""Presets and YAML files: where a config's file is, and how its text is read.

YAML as people write configs: a key written twice is refused, and integers are decimal (YAML 1.2's rules).
"""
from __future__ import annotations

import re
import typing
from pathlib import Path
from typing import Any, Dict, List, Optional, Union

import yaml

from ..errors import ConfigError
from .layering import Config, canonical_key, merge
from .sections import PATH_KEYS, SECTIONS


PRESET_DIR = Path(__file__).parent.parent / "configs"


def preset_names() -> List[str]:
    return sorted(path.stem for path in PRESET_DIR.glob("*.yaml"))


def resolve_config_path(name_or_path: Union[str, Path]) -> Path:
    """A preset name (``debug``, ``production``, ``small_data``: :func:`preset_names`) or a path to a YAML file. A
    preset's bare name means the preset: a folder of that name here is not a config, and a file of that name is
    refused as ambiguous (``./debug`` names the file)."""
    path = Path(name_or_path)
    if str(name_or_path) in preset_names():
        if path.is_file():
            raise ConfigError(f"{name_or_path}: both a preset and a file here; write ./{name_or_path} for the file")
        return PRESET_DIR / f"{name_or_path}.yaml"
    if path.is_dir():
        raise ConfigError(f"{path}: is a directory, not a config file")
    if path.is_file():
        return path
    if path.exists():  # a pipe or a device: reading it could block or never end
        raise ConfigError(f"{path}: is a special file (pipe, socket or device), not a config file")
    if path.suffix.lower() in (".yaml", ".yml"):
        # The guide writes configs/production.yaml; fall back to the shipped preset of that name.
        if (PRESET_DIR / path.name).is_file():
            return PRESET_DIR / path.name
        raise ConfigError(f"{path}: config file not found")
    raise ConfigError(f"{name_or_path}: no such config file or preset (presets: {', '.join(preset_names())})")


class ConfigLoader(yaml.SafeLoader):
    """YAML as people write configs. A key written twice is an error: PyYAML keeps the last one, so a second
    ``training:`` block silently reset every key of the first. Integers are YAML 1.2's: decimal unless written
    ``0x`` or ``0o`` (YAML 1.1 read a seed of ``042`` as octal 34 and ``12:30`` as 750), ``1_000`` allowed."""

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":  # <<: *defaults, which later keys may override
                continue
            key = self.construct_object(key_node, deep=deep)
            if not isinstance(key, typing.Hashable):
                continue  # the mapping refuses it below
            if key in seen:
                raise yaml.constructor.ConstructorError(None, None, f"{key!r} is written twice",
                                                        key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep)


_INT = "tag:yaml.org,2002:int"

ConfigLoader.yaml_implicit_resolvers = {
    first: [(tag, pattern) for tag, pattern in resolvers if tag != _INT]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


ConfigLoader.add_implicit_resolver(_INT, re.compile(r"^(?:[-+]?[0-9][0-9_]*|0o[0-7_]+|0x[0-9a-fA-F_]+)$"),
                                   list("-+0123456789"))


def _integer(loader: ConfigLoader, node) -> int:
    text = loader.construct_scalar(node).replace("_", "")
    return int(text, 0) if text[:2] in ("0o", "0x") else int(text, 10)


ConfigLoader.add_constructor(_INT, _integer)


def parse_yaml(text: str) -> Any:
    """``text`` read by :class:`ConfigLoader`; raises ``yaml.YAMLError`` (or ValueError, RecursionError)."""
    return yaml.load(text, Loader=ConfigLoader)  # noqa: S506 (a SafeLoader)


def parse_override(dotted: str, text: str) -> Any:
    """The value of ``--set section.key=text``: YAML (0.05, true, null, [a, b]), except that a key holding text
    (a path, a list of patient names) takes the text as written (quotes aside), so a patient named 007 stays
    ``'007'``."""
    name = canonical_key(dotted)
    section, _, key = name.partition(".")
    hint = typing.get_type_hints(SECTIONS[section]).get(key) if section in SECTIONS else None
    if hint not in (str, Optional[str], List[str]):
        return parse_yaml(text)
    stripped = text.strip()
    if not stripped and name in PATH_KEYS:  # an unset shell variable; clearing the key silently could drop a grouping
        raise ConfigError(f"--set {name}= is empty (an unset shell variable?): give a path, or null to clear it")
    if stripped in ("null", "~", ""):
        return None
    quoted = len(stripped) > 1 and stripped[0] == stripped[-1] and stripped[0] in "'\""
    if hint is List[str] or quoted:
        return yaml.load(text, Loader=yaml.BaseLoader)  # noqa: S506 (every value a string)
    return text


def load_yaml(path: Union[str, Path]) -> Dict[str, Any]:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except IsADirectoryError:
        raise ConfigError(f"{path}: is a directory, not a config file") from None
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError(f"{path}: cannot read config file ({error})") from None
    try:
        values = parse_yaml(text)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        problem = getattr(error, "problem", None) or "invalid YAML"
        raise ConfigError(f"{path}: invalid YAML{where}: {problem}") from None
    except RecursionError:
        raise ConfigError(f"{path}: invalid YAML: nested too deeply") from None
    except ValueError as error:  # a scalar YAML resolves to a type it cannot build, e.g. the date 2024-13-45
        raise ConfigError(f"{path}: invalid YAML value: {error}") from None
    if values is None:
        return {}
    if not isinstance(values, dict):
        raise ConfigError(f"{path}: expected a mapping of sections (model, training, loss, data)")
    return values


def load_config(name_or_path: Union[str, Path, None] = None) -> Config:
    """Defaults, with a preset or YAML file laid over them when one is given."""
    if name_or_path is None:
        return Config()
    path = resolve_config_path(name_or_path)
    return merge(Config(), load_yaml(path), source=str(path))
