"""Normalisation of the voice in the target domain (mmer.voice_normalisation) and the `adapt` /
`speakers` options of `mmer analyze`."""

from __future__ import annotations

import numpy as np
import pytest
from typer.testing import CliRunner

from mmer.analysis import AnalyzeOptions, Analyzer
from mmer.cli.app import app
from mmer.errors import UserError
from mmer.voice_normalisation import FrameStatistics, VoiceNormaliser, read_speakers, speaker_of


def prior(dim: int = 3) -> VoiceNormaliser:
    return VoiceNormaliser([0.0] * dim, [1.0] * dim, prior_seconds=10.0)


def stats_of(frames: np.ndarray) -> FrameStatistics:
    s = FrameStatistics.empty(frames.shape[1])
    s.add(frames)
    return s


def test_no_statistics_is_the_prior():
    n = VoiceNormaliser([1.0, 2.0], [2.0, 4.0])
    assert np.allclose(n.normalise(np.array([[3.0, 6.0]]), None), [[1.0, 1.0]])
    assert np.allclose(n.normalise(np.array([[3.0, 6.0]]), FrameStatistics.empty(2)), [[1.0, 1.0]])


def test_a_long_group_is_read_against_its_own_baseline_a_short_one_mostly_against_the_prior():
    rng = np.random.default_rng(0)
    n = prior()
    long_voice = 5.0 + 2.0 * rng.standard_normal((25 * 600, 3))  # ten minutes, shifted and wider
    mean, std = n.shrunk(stats_of(long_voice))
    assert np.allclose(mean, 5.0, atol=0.2) and np.allclose(std, 2.0, atol=0.2)
    short = long_voice[:25]  # one second: weight 1 / 11
    mean, _ = n.shrunk(stats_of(short))
    assert np.all(mean < 1.0) and np.all(mean > 0.0)
    z = n.normalise(long_voice, stats_of(long_voice))
    assert np.allclose(z.mean(0), 0.0, atol=0.05) and np.allclose(z.std(0), 1.0, atol=0.05)


def test_groups_share_statistics():
    n = prior(1)
    a, b, c = np.full((25 * 600, 1), 4.0), np.full((25 * 600, 1), 6.0), np.full((25 * 600, 1), 100.0)
    out = n.normalise_groups([a, b, c], ["x", "x", "y"])
    assert out[0][0, 0] < 0 < out[1][0, 0]  # a and b are read against their common mean, 5
    assert abs(out[0][0, 0] + out[1][0, 0]) < 0.1  # nearly symmetric (the prior still weighs 1/121)
    assert abs(out[2][0, 0]) < 0.2  # a group of its own sits near its own mean


def test_round_trip_and_malformed():
    n = VoiceNormaliser.fit([np.arange(6.0).reshape(3, 2)], basis="test")
    assert VoiceNormaliser.from_dict(n.to_dict()) == n
    with pytest.raises(ValueError, match="voice normalisation"):
        VoiceNormaliser.from_dict({"mean": [0.0], "std": [0.0]})
    with pytest.raises(ValueError, match="voice normalisation"):
        VoiceNormaliser.from_dict({"mean": [0.0]})


def test_speakers_file(tmp_path):
    good = tmp_path / "speakers.csv"
    good.write_text("file,speaker\nclips/a.mp4,ann\nb.wav,bob\n")
    table = read_speakers(good)
    assert table == {"clips/a.mp4": "ann", "b.wav": "bob"}
    assert speaker_of(tmp_path / "b.wav", table) == "bob" and speaker_of(tmp_path / "c.wav", table) is None
    bad = tmp_path / "bad.csv"
    bad.write_text("a.mp4\n")
    with pytest.raises(ValueError, match="row 1 needs two columns"):
        read_speakers(bad)
    with pytest.raises(ValueError, match="cannot read"):
        read_speakers(tmp_path / "missing.csv")


@pytest.mark.parametrize("options, parameter", [
    (AnalyzeOptions(adapt="corpus"), "adapt"),
    (AnalyzeOptions(adapt="speaker"), "speakers"),
    (AnalyzeOptions(adapt="batch", speakers="s.csv"), "adapt"),
])
def test_bad_adapt_options_name_the_parameter(options, parameter):
    with pytest.raises(UserError) as err:
        Analyzer(options)
    assert err.value.parameter == parameter


def test_cli_refuses_a_bad_speakers_file_in_one_line(tmp_path):
    bad = tmp_path / "s.csv"
    bad.write_text("only-one-column\n")
    result = CliRunner().invoke(app, ["analyze", str(tmp_path / "x.mp4"), "--speakers", str(bad)])
    assert result.exit_code == 2
    assert "row 1 needs two columns" in result.output and "Traceback" not in result.output


@pytest.mark.parametrize("adapt", ["clip", "batch"])
def test_train_adapt_records_the_prior_and_eval_reads_voices_the_same_way(adapt, tmp_path):
    import json

    from tests import synthetic_benchmarks as sb
    from tests.conftest import TINY_TRAIN, ok
    from tests.conftest import mmer as cli
    from mmer.models.checkpoint import read_checkpoint_info

    bench = sb.write_cache(tmp_path / "cache", (16, 8, 8))
    run = tmp_path / "run"
    ok(cli("train", "--model", "lddu", "--dataset", "cache", "--data", str(bench.data), *TINY_TRAIN,
           "--epochs", "1", "--adapt", adapt, "--out", run))
    info, _ = read_checkpoint_info(run / "best.safetensors")
    prior = VoiceNormaliser.from_dict(info.extra["voice_normalisation"])
    assert prior.dim == info.feature_spec.audio.dim and info.extra["voice_normalisation_training"] == adapt
    assert json.loads((run / "config.json").read_text())["adapt"] == adapt
    test_metrics = json.loads((run / "test_metrics.json").read_text())
    result = cli("eval", "--dataset", "cache", "--data", str(bench.data), "--checkpoint", run / "best.safetensors",
                 "--format", "json", "--device", "cpu", "--threads", "1")
    ok(result)
    assert json.loads(result.stdout)["micro_f1"] == test_metrics["micro_f1"]  # the same normalised test split


@pytest.mark.slow
def test_adapt_modes_end_to_end(tmp_path):
    """Two EmoDB utterances of one speaker: "batch" and "speaker" (both clips listed as one speaker)
    read the voices against the same statistics, "clip" against each clip's own; a checkpoint
    without a voice normalisation reads the voices as extracted whatever the mode."""
    from safetensors.torch import load_file

    from mmer.analysis import analyze
    from mmer.models.checkpoint import read_checkpoint_info, save_checkpoint
    from mmer.models.registry import build_model, get_entry
    from tests.conftest import LABELS, SHARED, tiny_checkpoint

    wav = SHARED / "data" / "emodb" / "wav"
    if not wav.is_dir():
        pytest.skip("../shared/data/emodb not available")
    clips = [wav / "03a01Wa.wav", wav / "03a01Nc.wav"]
    plain = tiny_checkpoint(tmp_path / "plain.safetensors")
    info, _ = read_checkpoint_info(plain)
    network = build_model("lddu", get_entry("lddu").config_class.tiny(len(LABELS), info.feature_spec.dims))
    network.load_state_dict(load_file(str(plain)), strict=False)
    dim = info.feature_spec.audio.dim
    prior = VoiceNormaliser([0.0] * dim, [1.0] * dim)
    adapted = save_checkpoint(tmp_path / "adapted.safetensors", network, LABELS, info.feature_spec, [0.5] * len(LABELS),
                              extra={"voice_normalisation": prior.to_dict()})
    speakers = tmp_path / "speakers.csv"
    speakers.write_text("".join(f"{c.name},s03\n" for c in clips))

    def voice(model, **kw):
        outcomes = analyze(clips, AnalyzeOptions(model=str(model), device="cpu", threads=1, use_cache=True,
                                                 cache_dir=tmp_path / "cache", **kw))
        return [o.by_modality["audio"] for o in outcomes]

    clip, batch = voice(adapted), voice(adapted, adapt="batch")
    assert voice(adapted, adapt="speaker", speakers=speakers) == batch
    assert clip != batch
    assert voice(plain) == voice(plain, adapt="batch")
