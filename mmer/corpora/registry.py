"""The one registry of corpus label recipes: CLI choices, docs and tests are built from it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from mmer.catalog import CORPUS_NAMES
from mmer.corpora.listing import CorpusListing
from mmer.errors import UserError
from mmer.core.text_values import parse_text


@dataclass(frozen=True)
class CorpusOption:
    """One keyword option of a corpus recipe.

    name: keyword name (a CLI may spell it with dashes; they are read as underscores).
    kind: str, float, bool or Path; string values (from a command line) are converted to it.
    default: the value used when the option is not given (None: not set).
    help: one line for --help and docs.
    """

    name: str
    kind: type
    default: Any
    help: str


@dataclass(frozen=True)
class CorpusEntry:
    """A registered corpus: its listing function, options and a one-line summary."""

    name: str
    list_clips: Callable[..., CorpusListing]
    options: tuple[CorpusOption, ...]
    summary: str


_REGISTRY: dict[str, CorpusEntry] = {}


def register_corpus(name: str, options: tuple[CorpusOption, ...], summary: str):
    """Decorator: register `fn(media_dir: Path, **options) -> CorpusListing` under `name`."""

    def decorate(fn: Callable[..., CorpusListing]) -> Callable[..., CorpusListing]:
        if name in _REGISTRY:
            raise ValueError(f"corpus {name!r} registered twice")
        if name not in CORPUS_NAMES:
            raise ValueError(f"corpus {name!r} is missing from mmer.catalog.CORPUS_NAMES")
        _REGISTRY[name] = CorpusEntry(name=name, list_clips=fn, options=tuple(options), summary=summary)
        return fn

    return decorate


def corpus_names() -> list[str]:
    """Names of every registered corpus, sorted (e.g. ["cremad", "mosei-raw", "ravdess"])."""
    return sorted(_REGISTRY)


def get_corpus(name: str) -> CorpusEntry:
    """The registered entry for `name`; UserError naming the known corpora otherwise."""
    if name not in _REGISTRY:
        raise UserError(f"unknown corpus {name!r}; choose one of: {', '.join(corpus_names())}")
    return _REGISTRY[name]


def corpus_options(name: str) -> tuple[CorpusOption, ...]:
    """The keyword options `list_corpus(name, ...)` accepts."""
    return get_corpus(name).options


def _convert(corpus: str, option: CorpusOption, value: Any) -> Any:
    """Convert a (possibly string) option value to the option's kind, or raise UserError."""
    if option.kind is bool and isinstance(value, bool):
        return value
    if option.kind is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    try:
        return parse_text(str(value), option.kind)
    except ValueError as err:
        raise UserError(f"{corpus} option {option.name}: {err}") from None


def list_corpus(name: str, media_dir: Path, **options: Any) -> CorpusListing:
    """List the labelled clips of corpus `name` found under `media_dir`.

    options: the corpus's keyword options (see `corpus_options(name)`); values may be strings;
        None means "not given" (the default applies).
    Raises UserError (one line) for an unknown corpus or option, a bad option value, a missing or
    unreadable label file, or a folder without any usable clip.
    """
    entry = get_corpus(name)
    known = {o.name: o for o in entry.options}
    values = {o.name: o.default for o in entry.options}
    for raw_key, value in options.items():
        key = raw_key.replace("-", "_")
        if key not in known:
            choices = ", ".join(sorted(known)) or "none"
            raise UserError(f"{name} has no option {raw_key!r} (options: {choices})")
        if value is not None:  # None = not given: the option keeps its default
            values[key] = _convert(name, known[key], value)
    return entry.list_clips(Path(media_dir), **values)
