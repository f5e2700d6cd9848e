"""Text as typed on a command line or in a CSV -> a typed value: the one conversion mmer uses
(config `--set key=value`, corpus `--option key=value`)."""

from __future__ import annotations

import json
import typing
from pathlib import Path

TRUE_WORDS = ("1", "true", "yes", "on")
FALSE_WORDS = ("0", "false", "no", "off")


def parse_text(raw: str, kind: object) -> object:
    """`raw` as a value of `kind`: bool (TRUE_WORDS / FALSE_WORDS, any case), int, float, str, Path
    (user folder expanded); lists, tuples, dicts and optional types are read as JSON (kept as text
    when it is not JSON). ValueError, with a one-line message, when `raw` does not fit `kind`."""
    origin = typing.get_origin(kind)
    if kind is bool:
        word = raw.strip().lower()
        if word in TRUE_WORDS or word in FALSE_WORDS:
            return word in TRUE_WORDS
        raise ValueError(f"expected a boolean (true or false), got {raw!r}")
    if kind is int:
        return int(raw)
    if kind is float:
        try:
            return float(raw)
        except ValueError:
            raise ValueError(f"expected a number, got {raw!r}") from None
    if kind is Path:
        return Path(raw).expanduser()
    if origin in (list, tuple, dict) or origin is typing.Union or kind is type(None):
        try:
            value = json.loads(raw)
        except json.JSONDecodeError:
            value = raw
        if origin is tuple and isinstance(value, list):
            value = tuple(value)
        return value
    return raw
