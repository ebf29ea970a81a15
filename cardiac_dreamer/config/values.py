"""Checks of one value, whatever key holds it: ranges, whole numbers, choices, names, text, precision.

Why apart: the phantom, the session and the command line check their own arguments with the same words as the
config's keys, without building a config.
"""
from __future__ import annotations

import csv
import difflib
import numbers
import re
import reprlib
from dataclasses import dataclass, field
from typing import Any, List, Optional

from ..errors import ConfigError


@dataclass(frozen=True)
class Range:
    """The values a numeric key allows; ``str(Range)`` is the interval as error messages write it."""

    low: float
    high: float
    low_open: bool = False  # True: low itself is excluded
    high_open: bool = False

    def __contains__(self, value: Any) -> bool:
        """False for NaN, which compares false with every bound."""
        above = value > self.low if self.low_open else value >= self.low
        below = value < self.high if self.high_open else value <= self.high
        return above and below

    def __str__(self) -> str:
        low, high = _number(self.low), _number(self.high)
        return f"{'(' if self.low_open else '['}{low}, {high}{')' if self.high_open else ']'}"


def ranged(default: Any, low: float, high: float, *, low_open: bool = False, high_open: bool = False) -> Any:
    """A dataclass field whose value (unless None) must lie in ``[low, high]`` (ends excluded when ``*_open``)."""
    return field(default=default, metadata={"range": Range(low, high, low_open, high_open)})


def whole_number(value: Any, name: str, lowest: int = 1, highest: Optional[int] = None) -> int:
    """``value`` as a plain int when it is a whole number in ``lowest..highest`` (no upper bound when None); else
    ConfigError naming ``name``. Why checked where it is given: a batch size of 0 or 2.5 fails later inside torch or
    ``range``, far from its cause, and a phantom seed of 1.7 read as 1 builds another heart."""
    if not is_whole(value) or value < lowest or (highest is not None and value > highest):
        limits = f">= {lowest}" if highest is None else f"in {lowest}..{highest:,}"
        raise ConfigError(f"{name} must be a whole number {limits}, got {value!r}")
    return int(value)


def is_whole(value: Any) -> bool:
    """An int or numpy integer; not a bool (True patients), not a float."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def name_list(text: str) -> List[str]:
    """The names in one line of comma-separated text, as ``--set`` and the command line take patients, each without
    the spaces around it: ``a, b`` -> ``['a', 'b']``. Why the quotes: a patient folder's name may hold a comma; in
    double quotes (``"a,b", c``) it stays one name, as in a CSV file. ConfigError naming the text when a quote is
    left open."""
    closed = re.sub(r'"\s+(?=,|$)', '"', text.strip())  # spaces after a closing quote, which CSV refuses
    try:
        names = next(csv.reader([closed], skipinitialspace=True, strict=True), [])
    except csv.Error:
        problem = "holds a line break" if "\n" in text or "\r" in text else "has a double quote that is not closed " \
            "right before a comma or the end"
        raise ConfigError(f"{reprlib.repr(text)} {problem} (names are separated by commas; write a name that "
                          'holds a comma in double quotes: "a,b",c)') from None
    return [name.strip() for name in names if name.strip()]


def suggestion(word: str, choices) -> str:
    """`` (did you mean 'x'?)`` for the choice closest to ``word``, else the valid choices."""
    close = difflib.get_close_matches(str(word), list(choices), n=1)
    return f" (did you mean {close[0]!r}?)" if close else f" (valid: {', '.join(sorted(choices))})"


def check_choice(name: str, value: str, choices, suggest: bool = False) -> None:
    """ConfigError ``"<name> must be one of a, b, got 'c'"`` (``suggest``: with a "did you mean") unless ``value``
    is one of ``choices``: every setting that names a choice says so in the same words."""
    if value not in choices:
        close = suggest and difflib.get_close_matches(str(value), list(choices), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ConfigError(f"{name} must be one of {', '.join(choices)}, got {reprlib.repr(value)}{hint}")


_PRECISIONS = {
    "32": "32", "32-true": "32", "fp32": "32",
    "16": "16", "16-mixed": "16", "fp16": "16",
    "bf16": "bf16", "bf16-mixed": "bf16",
}


def normalize_precision(value: Any, name: str = "training.precision") -> str:
    """Map the spellings users write (16, "16-mixed", "bf16") to one of "32", "16", "bf16"; ``name`` is what the
    error calls the setting."""
    key = str(value).strip().lower()
    if key not in _PRECISIONS:
        raise ConfigError(f"{name} must be 32, 16 or bf16, got {reprlib.repr(value)}")
    return _PRECISIONS[key]


def in_range(value: Any, allowed: Range) -> bool:
    """A number (not a bool) in ``allowed``."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value in allowed


def range_error(name: str, allowed: Range, value: Any) -> ConfigError:
    return ConfigError(f"{name} must be in {allowed}, got {reprlib.repr(value)}")


def check_text(name: str, text: str) -> None:
    """ConfigError unless ``text`` is fit for a file name, a log line and a JSON file."""
    if "\0" in text:
        raise ConfigError(f"{name} contains a NUL character: {reprlib.repr(text)}")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # bytes that were not UTF-8, smuggled in as surrogates (a command-line argument)
        raise ConfigError(f"{name} is not valid UTF-8 text: {reprlib.repr(text)}") from None


def _number(value: float) -> str:
    return str(value) if isinstance(value, int) else f"{value:g}"
