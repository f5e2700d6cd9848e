"""Readable value types in `mmer ... --help`.

Typer (0.29) fills the help's type column with Python annotations: `<str>`, `<list[Path]>`, and
`<bool>` even for on/off flags, which take no value. `use_readable_types` replaces them, for every
mmer command, with the words of the usage line's convention: the option's metavar when it has one
(`N`, `SECONDS`), the choices as `[a|b|c]`, else TEXT, INTEGER, FLOAT, PATH (with `...` when several
values are taken); nothing for a flag, nor for an argument whose name already says it (`CLIP|DIR...`).
"""

from __future__ import annotations

import re

from typer.core import TyperArgument, TyperOption

WORDS = {"str": "TEXT", "int": "INTEGER", "float": "FLOAT", "path": "PATH", "Path": "PATH"}
"""Typer's annotation name -> the word the help shows."""


def readable_type(param: TyperArgument | TyperOption, ctx) -> str | None:
    """What the help shows as the type of `param` (None: nothing)."""
    if getattr(param, "is_flag", False) or getattr(param, "count", False):
        return None
    if param.metavar:
        return None if isinstance(param, TyperArgument) else param.metavar
    name = param.display_type(ctx).strip("<>")  # typer's label: "str", "list[Path]", "a|b|c", "int range"
    several = param.nargs != 1
    if (listed := re.fullmatch(r"list\[(.*)\]", name)) is not None:
        name, several = listed.group(1), True
    word = WORDS.get(name) or ("[" + name + "]" if "|" in name else name.upper())
    return word + ("..." if several else "")


def use_readable_types() -> None:
    """Make every Typer option and argument of this process show `readable_type` in its help."""
    TyperOption.display_type_rich = readable_type
    TyperArgument.display_type_rich = readable_type
