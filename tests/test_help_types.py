"""`mmer ... --help` shows value types readably (issue 22): not Python annotations such as
`<str>`, `<list[Path]>`, nor `<bool>` beside flags that take no value."""

from __future__ import annotations

import re

import pytest

from tests.conftest import mmer

COMMANDS = ["analyze", "extract", "train", "eval", "score", "models", "report"]
ANNOTATION = re.compile(r"<(str|bool|int|float|path|Path|list\[[^>]*\]|[a-z0-9_-]+(\|[a-z0-9_-]+)+)>")


@pytest.mark.parametrize("command", COMMANDS)
def test_help_has_no_python_annotations(command):
    result = mmer(command, "--help")
    assert result.exit_code == 0
    assert not ANNOTATION.search(result.stdout), ANNOTATION.search(result.stdout).group(0)


def test_analyze_help_shows_choices_metavars_and_bare_flags():
    text = mmer("analyze", "--help").stdout
    assert "[table|json|csv|html|eaf|" in text  # the choices (the column may wrap them)
    assert re.search(r"--window\s+SECONDS", text) and re.search(r"--threads\s+N", text)
    assert re.search(r"--device\s+TEXT", text)
    assert re.search(r"--no-cache\s+Do not read", text)  # a flag: no type between the name and its help
