"""The output-format registry of `mmer analyze` (mmer.output_formats): one list of formats that the
CLI's --format choices, the writers and the per-clip/timeline rules all come from."""

from __future__ import annotations

import pytest

from mmer.errors import UserError
from mmer.output_formats import WRITERS, format_names, get_writer, write_text


def test_cli_format_choices_are_the_registry():
    from mmer.cli.commands.analyze import AnalyzeFormat

    assert [f.value for f in AnalyzeFormat] == format_names() == ["table", "json", "csv", "html", "eaf", "vtt"]


def test_per_clip_and_timeline_formats():
    assert {n: w.per_clip_suffix for n, w in WRITERS.items() if w.per_clip_suffix} == {"eaf": ".eaf", "vtt": ".vtt"}
    assert sorted(n for n, w in WRITERS.items() if w.timeline) == ["eaf", "html", "vtt"]


def test_an_unknown_format_names_the_parameter():
    with pytest.raises(UserError) as err:
        get_writer("xml")
    assert err.value.parameter == "output_format"
    assert str(err.value).startswith("output_format must be one of table, json, csv, html, eaf, vtt")


def test_json_writer_writes_failures_to_the_given_path(tmp_path):
    from mmer.analysis import AnalyzeOptions, ClipFailure

    out = tmp_path / "r.json"
    get_writer("json").write([ClipFailure("a.mp4", "no such file or folder")], out, AnalyzeOptions())
    assert '"error": "no such file or folder"' in out.read_text()


def test_write_text_reports_an_unwritable_output(tmp_path):
    with pytest.raises(UserError, match="cannot write"):
        write_text("x", tmp_path / "missing-folder" / "r.json")
