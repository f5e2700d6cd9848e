"""The one text -> typed value conversion (config --set, corpus --option)."""

from pathlib import Path
from typing import Optional

import pytest

from mmer.corpora.registry import CorpusOption, _convert
from mmer.errors import UserError
from mmer.core.text_values import parse_text
from mmer.models.config import ConfigError, apply_overrides
from mmer.models.lddu import LDDUConfig


@pytest.mark.parametrize("raw, kind, value", [
    ("Yes", bool, True), ("off", bool, False), ("12", int, 12), ("0.5", float, 0.5), ("x", str, "x"),
    ("[1, 2]", tuple[int, ...], (1, 2)), ("null", Optional[int], None), ("~/a", Path, Path.home() / "a"),
])
def test_text_becomes_the_kind_asked_for(raw, kind, value):
    assert parse_text(raw, kind) == value


def test_config_and_corpus_options_share_the_conversion_and_its_messages():
    assert apply_overrides(LDDUConfig(), ["use_emotion_space=false"]).use_emotion_space is False
    with pytest.raises(ConfigError, match=r"^bad value for use_emotion_space: expected a boolean \(true or false\), got 'maybe'$"):
        apply_overrides(LDDUConfig(), ["use_emotion_space=maybe"])
    option = CorpusOption("flag", bool, False, "a flag")
    assert _convert("c", option, "on") is True and _convert("c", option, False) is False
    with pytest.raises(UserError, match=r"^c option flag: expected a boolean \(true or false\), got 'maybe'$"):
        _convert("c", option, "maybe")
