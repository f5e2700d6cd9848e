"""Fuzzing every parser a user's file reaches (Hypothesis): transcripts and subtitles, labels CSVs,
`mmer score` CSVs, checkpoint metadata, benchmark pickles through the allow-listed unpickler, and
media headers (mutated bytes of the sample clip).

Property of every case: a valid result, or the parser's documented error (one line, naming the
file); never another exception, never longer than CASE_SECONDS, and nothing written except the
input the test itself made. The CLI cases also check the exit code (0, 1 for a failed input, 2 for
a usage error) and that stderr holds only `mmer: ...` lines.

Budget: each target runs the number of cases given in its `fuzz(...)` (derandomized, so CI is
reproducible; the module takes well under a minute). For a long local run set
MMER_FUZZ_EXAMPLES=N: every target then tries N random (not derandomized) cases, e.g.
    MMER_FUZZ_EXAMPLES=5000 python -m pytest tests/test_fuzz_inputs.py --hypothesis-show-statistics
The figures of a committed run are in docs/reliability.md.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import pickle
import signal
import time
from pathlib import Path
from typing import Iterator

import numpy as np
import pytest
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from mmer.extractors.errors import ExtractionError
from mmer.extractors.media import MediaInfo, MediaReader, probe_media
from mmer.extractors.speech import Word, read_transcript
from mmer.cli.app import app
from mmer.corpora import cremad
from mmer.datasets import mmsa
from mmer.datasets.base import DatasetError
from mmer.datasets.safe_pickle import load_pickled_file
from mmer.errors import UserError
from mmer.extraction_jobs import JobList, jobs_from_labels_csv
from mmer.scoring import ScoreReport, score_files
from mmer.models.checkpoint import CheckpointError, CheckpointInfo, read_checkpoint_info
from tests.conftest import SAMPLE, SAMPLE_SRT

pytestmark = pytest.mark.slow  # real extractor networks, shipped models or many training runs

CASE_SECONDS = 30.0
"""Longest time one library case may take (a hang or a pathological slowdown fails the case)."""
CLI_ANALYZE_SECONDS = 90.0
"""Longest time one `mmer analyze` case may take: it loads the checkpoint and the face detector."""
LONG_RUN = int(os.environ.get("MMER_FUZZ_EXAMPLES", "0"))

runner = CliRunner()


def fuzz(examples: int):
    """Hypothesis settings of one target: `examples` cases (MMER_FUZZ_EXAMPLES overrides), no
    example database (nothing written into the repository), no deadline of its own (`timed`)."""
    return settings(max_examples=LONG_RUN or examples, derandomize=not LONG_RUN, database=None, deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                           HealthCheck.data_too_large, HealthCheck.large_base_example])


class CaseTimedOut(BaseException):
    """A case ran past its limit (a BaseException, so no `except Exception` in a parser hides it)."""


@contextlib.contextmanager
def deadline(seconds: float) -> Iterator[None]:
    """Interrupt the block after `seconds` (SIGALRM; the tests run in the main thread)."""
    def expire(signum, frame):
        raise CaseTimedOut(f"one case ran past {seconds:g} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


class Case:
    """One fuzz case in a fresh folder: write the input, run the parser, check the outcome."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.folder = root / f"case{len(list(root.iterdir()))}"
        self.folder.mkdir()
        self.inputs: set[Path] = set()

    def write(self, name: str, data: bytes) -> Path:
        path = self.folder / name
        path.write_bytes(data)
        self.inputs.add(path)
        return path

    def run(self, parse, errors: tuple[type[BaseException], ...], options: tuple[str, ...] = (),
            limit_s: float = CASE_SECONDS):
        """parse() -> its result, or None when it raised one of `errors` with a one-line message
        naming one of this case's inputs (or one of `options`). Anything else fails the case."""
        started = time.perf_counter()
        try:
            with deadline(limit_s):
                result = parse()
            if errors:
                event("valid result")
        except errors as err:
            message = str(err)
            assert message and "\n" not in message, repr(message)
            assert any(name in message for name in [*map(str, self.inputs), *options]), message
            result = None
            event(f"refused: {type(err).__name__}")
        elapsed = time.perf_counter() - started
        assert elapsed < limit_s, f"one case took {elapsed:.1f} s"
        written = {p for p in self.folder.rglob("*")} - self.inputs
        assert not written, f"the parser wrote {sorted(map(str, written))}"
        return result


@pytest.fixture
def cases(tmp_path):
    def new() -> Case:
        return Case(tmp_path)
    return new


@st.composite
def mutated(draw, data: bytes, hot: tuple[int, int] | None = None, max_edits: int = 8, min_edits: int = 1) -> bytes:
    """`data` with min_edits..max_edits random edits: byte overwrites, deletions, insertions, a
    duplicated span, or a truncation. Positions fall in the `hot` range [start, end) half of the time."""
    out = bytearray(data)
    for _ in range(draw(st.integers(min_edits, max_edits))):
        if not out:
            out += draw(st.binary(min_size=1, max_size=8))
            continue
        lo, hi = hot if hot is not None and draw(st.booleans()) else (0, len(out))
        lo, hi = min(lo, len(out) - 1), min(max(hi, lo + 1), len(out))
        pos = draw(st.integers(lo, hi - 1))
        edit = draw(st.sampled_from(["overwrite", "delete", "insert", "duplicate", "truncate"]))
        if edit == "overwrite":
            chunk = draw(st.binary(min_size=1, max_size=8))
            out[pos:pos + len(chunk)] = chunk
        elif edit == "delete":
            del out[pos:pos + draw(st.integers(1, 64))]
        elif edit == "insert":
            out[pos:pos] = draw(st.binary(min_size=1, max_size=16))
        elif edit == "duplicate":
            out[pos:pos] = out[pos:pos + draw(st.integers(1, 64))]
        else:
            del out[pos:]
    return bytes(out)


def csv_text(cells: st.SearchStrategy[str]) -> st.SearchStrategy[bytes]:
    """Random CSV files: rows of random length made of `cells`, joined with commas/newlines."""
    rows = st.lists(st.lists(cells, min_size=0, max_size=6), min_size=0, max_size=6)
    return rows.map(lambda table: "\n".join(",".join(row) for row in table).encode("utf-8"))


SMALL_TEXT = st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=12)
CELL = st.one_of(SMALL_TEXT, st.sampled_from(["0", "1", "0.5", "nan", "inf", "-1", "1e309", "", " ", '"', '"a,b"',
                                              "file", "split", "train", "valid", "test", "a.mp4", "joy", "sad"]),
                 st.floats(allow_nan=True).map(str))


# ----------------------------------------------------------------------------- transcripts and subtitles


CUE_LINE = st.one_of(
    st.sampled_from(["WEBVTT", "", "1", "00:00:01,000 --> 00:00:02,500", "00:01.000 --> 00:02.000 align:start",
                     "99:59:59.999 --> 00:00:00.000", "00:00:01,000 -->", "--> 00:00:02,000", "1:2:3,4 --> 5:6,7",
                     "<i>hello</i> {\\an8}there", "NOTE comment", "00:00:0a,000 --> 00:00:01,000"]),
    SMALL_TEXT)
TRANSCRIPT = st.one_of(
    st.binary(max_size=300),
    st.text(max_size=300).map(lambda t: t.encode("utf-8", "surrogatepass")),
    st.lists(CUE_LINE, max_size=20).map(lambda lines: "\n".join(lines).encode("utf-8")),
    mutated(SAMPLE_SRT.read_bytes()),
)


@fuzz(400)
@given(suffix=st.sampled_from([".txt", ".srt", ".vtt"]), data=TRANSCRIPT,
       duration=st.floats(0.0, 1e6, allow_nan=False))
@example(suffix=".srt", data=("9" * 5000 + ":00:00,000 --> 00:00:01,000\nhi\n").encode(), duration=1.0)
def test_transcript_files(cases, suffix, data, duration):
    case = cases()
    path = case.write(f"words{suffix}", data)
    words = case.run(lambda: read_transcript(path, duration), (ExtractionError,))
    if words is not None:
        assert all(isinstance(w, Word) and w.text and not any(c.isspace() for c in w.text) for w in words)
        assert all(math.isfinite(w.start_s) and 0.0 <= w.start_s <= w.end_s for w in words)


# ----------------------------------------------------------------------------- labels CSVs


EXTRACT_LABELS = b"file,split,anger,joy\na.mp4,train,0,1\nb.mp4,valid,1,0\nc.mp4,test,0,0\n"
EXTRACT_NAMES = b"file,split,labels\na.mp4,train,joy;anger\nb.mp4,test,\n"
CREMAD_VOTES = (b"fileName,A_A,A_D,A_F,A_H,A_N,A_S,A_numResponses,actor\n"
                b"1001_DFA_ANG_XX,8,0,1,0,1,0,10,1001\n1002_IEO_HAP_HI,0,0,0,9,1,0,10,1002\n")
MMSA_LABELS = b"key_id,mode,tgt,raw_text\nv1,train,\"[2, 4, 5, 3]\",hi\nv2,valid,\"[2, 3]\",\nv3,test,\"[2,9,3]\",x\n"


def _extract_jobs(path: Path):
    jobs = jobs_from_labels_csv(path.parent, path)
    assert isinstance(jobs, JobList) and jobs.jobs and jobs.label_names
    for job in jobs.jobs:
        assert job.labels.shape == (len(jobs.label_names),) and set(job.labels.tolist()) <= {0.0, 1.0}
    return jobs


def _cremad_votes(path: Path):
    votes = cremad._read_votes(path, "A")
    assert votes and all(counts.shape == (6,) for counts, _, _ in votes.values())
    return votes


def _mmsa_labels(path: Path):
    rows = mmsa._read_label_csv(path)
    assert set(rows) == {"train", "valid", "test"}
    assert all(isinstance(tokens, list) for split in rows.values() for _, _, tokens in split)
    return rows


@st.composite
def labels_table(draw, columns: dict[str, st.SearchStrategy[str]]) -> bytes:
    """A well-formed CSV of `columns` (in any order; each with its own cell values, now and then an
    arbitrary cell instead), then maybe lightly mutated as bytes."""
    order = draw(st.permutations(list(columns)))
    rows = draw(st.lists(st.tuples(*[columns[c] for c in order]), min_size=1, max_size=5))
    rows = [[draw(CELL) if draw(st.integers(0, 39)) == 0 else value for value in row] for row in rows]
    text = "\n".join(",".join(row) for row in [list(order), *rows]).encode("utf-8")
    return draw(st.one_of(st.just(text), mutated(text, max_edits=2)))


NAMES = st.sampled_from(["a.mp4", "b.mp4", "c/d.wav", "1001_DFA_ANG_XX", "v1", "v2", "e f.mp4"])
BIT, COUNT = st.sampled_from("01"), st.integers(0, 20).map(str)
LABEL_TABLES = {
    "extract": labels_table({"file": NAMES, "split": st.sampled_from(["train", "valid", "test"]),
                             "anger": BIT, "joy": BIT}),
    "cremad": labels_table({"fileName": NAMES, **{f"A_{c}": COUNT for c in "ADFHNS"}, "A_numResponses": COUNT,
                            "actor": st.integers(1001, 1091).map(str)}),
    "mmsa": labels_table({"key_id": NAMES, "mode": st.sampled_from(["train", "valid", "test"]),
                          "tgt": st.sampled_from(['"[2, 4, 3]"', '"[2, 3]"', "[2]", '"[2, 99, 3]"', '"[2, 4.0, 3]"']),
                          "raw_text": SMALL_TEXT.map(lambda t: '"' + t.replace('"', "") + '"')}),
}
LABEL_PARSERS = {
    "extract": (_extract_jobs, (UserError,), [EXTRACT_LABELS, EXTRACT_NAMES]),
    "cremad": (_cremad_votes, (UserError,), [CREMAD_VOTES]),
    "mmsa": (_mmsa_labels, (DatasetError,), [MMSA_LABELS]),
}


@pytest.mark.parametrize("parser", sorted(LABEL_PARSERS))
@fuzz(150)
@given(data=st.data())
def test_labels_csv_files(cases, parser, data):
    parse, errors, seeds = LABEL_PARSERS[parser]
    content = data.draw(st.one_of(st.binary(max_size=200), csv_text(CELL), LABEL_TABLES[parser],
                                  st.sampled_from(seeds).flatmap(lambda seed: mutated(seed, max_edits=3, min_edits=0))))
    case = cases()
    path = case.write("labels.csv", content)
    case.run(lambda: parse(path), errors)


# ----------------------------------------------------------------------------- `mmer score` CSVs


TRUTH = b"file,a,b,c\nx.mp4,1,0,1\ny.mp4,0,1,0\nz.mp4,0,0,0\n"
PRED = b"file,c,a,b,predicted,uncertainty_a\nz.mp4,0.1,0.2,0.3,,0.5\nx.mp4,0.9,0.8,0.1,a;c,0.1\ny.mp4,0.2,0.1,0.7,b,0.2\n"
SCORE_CSV = st.one_of(csv_text(CELL), st.binary(max_size=120), st.sampled_from([TRUTH, PRED]).flatmap(mutated))


@st.composite
def score_pair(draw) -> tuple[bytes, bytes]:
    """A truth and a prediction CSV that mostly fit together: shared labels (in any order), a `file`
    key (rows in any order), probabilities, extra columns; each then maybe lightly mutated."""
    labels = draw(st.lists(st.sampled_from(["a", "b", "c", "joy", "sad"]), min_size=1, max_size=4, unique=True))
    files = draw(st.lists(NAMES, min_size=1, max_size=5, unique=True))
    truth = [["file", *labels]] + [[f, *(draw(st.sampled_from("01")) for _ in labels)] for f in files]
    pred_labels = draw(st.permutations(labels))
    probability = st.one_of(st.floats(0.0, 1.0).map(lambda x: f"{x:.3f}"), st.sampled_from("01"))
    extra = draw(st.lists(st.sampled_from(["predicted", "transcript", "uncertainty_a"]), unique=True))
    pred = [["file", *pred_labels, *extra]] + [[f, *(draw(probability) for _ in labels), *("x" for _ in extra)]
                                               for f in draw(st.permutations(files))]
    texts = ["\n".join(",".join(row) for row in table).encode() for table in (truth, pred)]
    return tuple(draw(st.one_of(st.just(text), mutated(text, max_edits=2))) for text in texts)


SCORE_PAIR = st.one_of(st.tuples(SCORE_CSV, SCORE_CSV), score_pair())


@fuzz(300)
@given(pair=SCORE_PAIR, key=st.sampled_from([None, "file", "file", "file", "a", "missing"]),
       threshold=st.one_of(st.none(), st.just(0.5), st.floats(0.0, 1.0), st.floats(-1.0, 2.0)))
def test_score_csv_files(cases, pair, key, threshold):
    truth, pred = pair
    case = cases()
    truth_path, pred_path = case.write("truth.csv", truth), case.write("pred.csv", pred)
    report = case.run(lambda: score_files(truth_path, pred_path, threshold=threshold, key=key), (UserError,),
                      options=("threshold",))  # the library parameter (the CLI shows --threshold)
    if report is not None:
        assert isinstance(report, ScoreReport) and report.label_names
        assert all(math.isfinite(v) for v in report.metrics.as_dict().values() if isinstance(v, float))


def _cli_lines_ok(result, codes: tuple[int, ...]) -> None:
    """A CLI run ended with one of `codes`, by its own exit, with only `mmer:` lines on stderr."""
    assert result.exit_code in codes, (result.exit_code, result.stderr)
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert all(line.startswith("mmer: ") for line in result.stderr.splitlines()), result.stderr
    event(f"exit code {result.exit_code}")


@fuzz(40)
@given(pair=SCORE_PAIR, key=st.sampled_from(["file", "file", "file", None]))
def test_score_cli(cases, pair, key, monkeypatch):
    truth, pred = pair
    case = cases()
    monkeypatch.chdir(case.folder)
    truth_path, pred_path = case.write("truth.csv", truth), case.write("pred.csv", pred)
    args = ["score", "--truth", str(truth_path), "--pred", str(pred_path), "--threshold", "0.5", "--format", "json"]
    result = case.run(lambda: runner.invoke(app, args + (["--key", key] if key else [])), ())
    _cli_lines_ok(result, (0, 2))
    if result.exit_code == 0:
        assert json.loads(result.stdout)["label_names"]
    else:
        assert len(result.stderr.splitlines()) == 1


# ----------------------------------------------------------------------------- checkpoint metadata


@pytest.fixture(scope="module")
def checkpoint_meta() -> dict:
    """The metadata of a real (tiny) checkpoint."""
    from mmer.extractors.pipeline import ExtractionSettings, feature_spec_for
    from mmer.models.checkpoint import save_checkpoint
    from mmer.models.registry import build_model, get_entry

    import tempfile

    spec = feature_spec_for(ExtractionSettings())
    network = build_model("lddu", get_entry("lddu").config_class.tiny(3, spec.dims))
    with tempfile.TemporaryDirectory() as folder:
        path = save_checkpoint(Path(folder) / "tiny.safetensors", network, ["a", "b", "c"], spec)
        return read_checkpoint_info(path)[1]


JSON_VALUE = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | SMALL_TEXT,
                          lambda inner: st.lists(inner, max_size=4) | st.dictionaries(SMALL_TEXT, inner, max_size=4),
                          max_leaves=12)


@st.composite
def edited_meta(draw, meta: dict) -> str:
    """The metadata JSON with a random value replaced or a key removed, at any depth; then maybe
    byte-mutated as text."""
    meta = json.loads(json.dumps(meta))
    for _ in range(draw(st.integers(0, 3))):
        node, key = None, None
        here = meta
        while isinstance(here, (dict, list)) and here and draw(st.booleans()):
            node = here
            key = draw(st.sampled_from(sorted(here) if isinstance(here, dict) else list(range(len(here)))))
            here = here[key]
        if node is None:
            continue
        if isinstance(node, dict) and draw(st.booleans()):
            del node[key]
        else:
            node[key] = draw(JSON_VALUE)
    text = json.dumps(meta, allow_nan=True)
    if draw(st.booleans()):
        text = draw(mutated(text.encode())).decode("utf-8", "replace")
    return text


@fuzz(300)
@given(data=st.data())
def test_checkpoint_metadata(cases, checkpoint_meta, data):
    from safetensors.torch import save_file
    import torch

    case = cases()
    path = case.folder / "model.safetensors"
    if data.draw(st.booleans(), label="raw bytes"):
        case.write(path.name, data.draw(st.binary(max_size=300)))
    else:
        save_file({"w": torch.zeros(1)}, str(path), metadata={"mmer": data.draw(edited_meta(checkpoint_meta))})
        case.inputs.add(path)
    result = case.run(lambda: read_checkpoint_info(path), (CheckpointError,))
    if result is not None:
        info, _ = result
        assert isinstance(info, CheckpointInfo) and len(info.label_names) == len(info.thresholds)
        assert all(math.isfinite(t) for t in info.thresholds)


# ----------------------------------------------------------------------------- benchmark pickles


def _valid_pickles() -> list[bytes]:
    import io

    import torch

    sample = {"train": {"text": np.zeros((2, 3, 4), np.float32), "labels": np.array([[0, 1]]), "id": ["a", "b"]},
              "valid": {"vision": np.ones((1, 2), np.float64)}}
    buffer = io.BytesIO()
    torch.save({"train": {"audio": torch.zeros(2, 3)}, "tgt": [[2, 4, 3]]}, buffer)
    return [pickle.dumps(sample, protocol=2), pickle.dumps(sample, protocol=4), buffer.getvalue()]


PICKLES = _valid_pickles()


@fuzz(300)
@given(data=st.one_of(st.binary(max_size=300), st.sampled_from(PICKLES).flatmap(mutated),
                      st.sampled_from(PICKLES).flatmap(lambda p: mutated(p, max_edits=2, min_edits=0)),
                      st.sampled_from(PICKLES).flatmap(lambda p: mutated(p, hot=(0, 64)))))
@example(data=b"\x80\x04\x8c\x16\numpy._core.multiarray\x8c\x0c_reconstruct\x93.")  # a newline in a global's name
def test_benchmark_pickles(cases, data):
    case = cases()
    path = case.write("benchmark.pkl", data)
    case.run(lambda: load_pickled_file(path), (DatasetError,))


# ----------------------------------------------------------------------------- media headers and decoding


SAMPLE_BYTES = SAMPLE.read_bytes()
_MOOV = SAMPLE_BYTES.find(b"moov")
HEADER_SPANS = [(0, 64), (max(_MOOV - 8, 0), min(_MOOV + 4096, len(SAMPLE_BYTES)))]
MEDIA = st.sampled_from(HEADER_SPANS).flatmap(lambda span: mutated(SAMPLE_BYTES, hot=span))


def _decode(path: Path) -> MediaInfo:
    info = probe_media(path)
    reader = MediaReader(info, fps=2.0, max_side_px=64)
    for batch in reader.frame_batches():
        assert batch.frames.ndim == 4 and batch.frames.shape[-1] == 3 and np.all(np.isfinite(batch.times))
    assert np.all(np.isfinite(reader.audio.samples))
    assert math.isfinite(info.duration_s) and info.duration_s >= 0
    return info


@fuzz(200)
@given(data=MEDIA, suffix=st.sampled_from([".mp4", ".mov", ".m4a", ".wav"]))
def test_media_probe(cases, data, suffix):
    case = cases()
    path = case.write(f"clip{suffix}", data)
    info = case.run(lambda: probe_media(path), (ExtractionError,))
    if info is not None:
        assert math.isfinite(info.duration_s) and info.duration_s >= 0 and (info.has_video or info.has_audio)


@fuzz(50)
@given(data=MEDIA)
def test_media_decoding(cases, data):
    case = cases()
    path = case.write("clip.mp4", data)
    case.run(lambda: _decode(path), (ExtractionError,))


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> Path:
    from mmer.extractors.pipeline import ExtractionSettings, feature_spec_for
    from mmer.models.checkpoint import save_checkpoint
    from mmer.models.registry import build_model, get_entry

    spec = feature_spec_for(ExtractionSettings())
    network = build_model("lddu", get_entry("lddu").config_class.tiny(2, spec.dims))
    return save_checkpoint(tmp_path_factory.mktemp("model") / "tiny.safetensors", network, ["a", "b"], spec)


@fuzz(4)
@given(data=st.sampled_from(HEADER_SPANS).flatmap(lambda span: mutated(SAMPLE_BYTES, hot=span, max_edits=3)))
def test_analyze_cli_on_mutated_media(cases, tiny_model, data, monkeypatch):
    """Through `mmer analyze` with a transcript (no speech model): exit 0, or 1 naming the file."""
    case = cases()
    monkeypatch.chdir(case.folder)
    path = case.write("clip.mp4", data)
    transcript = case.write("words.srt", SAMPLE_SRT.read_bytes())
    out = case.folder / "out.json"
    case.inputs.add(out)  # the one output asked for
    result = case.run(lambda: runner.invoke(app, ["analyze", str(path), "--model", str(tiny_model), "--no-cache",
                                                  "--transcript", str(transcript), "-f", "json", "-o", str(out)]),
                      (), limit_s=CLI_ANALYZE_SECONDS)
    _cli_lines_ok(result, (0, 1))
    [outcome] = json.loads(out.read_text())
    assert ("error" in outcome) == (result.exit_code == 1)
