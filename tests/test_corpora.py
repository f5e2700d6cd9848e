"""Corpus label recipes (mmer.corpora): tiny fixture files in each corpus's real naming and format."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import h5py
import numpy as np
import pytest

from mmer.corpora import corpus_names, corpus_options, list_corpus
from mmer.corpora.group_splits import split_by_hash, split_sorted_groups
from mmer.corpora.label_sets import DEFAULT_LABEL_NAMES, MOSEI_LABEL_NAMES
from mmer.errors import UserError
from tests.conftest import SHARED

SHARED_VOTES = SHARED / "data" / "cremad_labels" / "cremad_votes_by_modality.csv"


def touch(folder: Path, *names: str) -> None:
    """Empty placeholder media files (listing never decodes media)."""
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        (folder / name).write_bytes(b"")


def by_id(listing) -> dict:
    return {clip.clip_id: clip for clip in listing.clips}


def labels_of(listing, clip_id: str) -> list[str]:
    clip = by_id(listing)[clip_id]
    return [name for name, v in zip(listing.label_names, clip.labels) if v == 1.0]


# --------------------------------------------------------------------------- registry


def test_registry_names_are_sorted_and_complete():
    assert corpus_names() == ["cremad", "mosei-raw", "ravdess"]


@pytest.mark.parametrize("name", corpus_names())
def test_every_corpus_rejects_missing_folder_unknown_option_and_empty_folder(name, tmp_path):
    with pytest.raises(UserError, match="media folder not found"):
        list_corpus(name, tmp_path / "absent", **_required_options(name, tmp_path))
    with pytest.raises(UserError, match="no option 'colour'"):
        list_corpus(name, tmp_path, colour="red")
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError):
        list_corpus(name, tmp_path / "empty", **_required_options(name, tmp_path))
    assert all(o.help for o in corpus_options(name))


def _required_options(name: str, tmp_path: Path) -> dict:
    if name == "cremad":
        return {"labels": write_votes(tmp_path / "votes.csv", [("1001_DFA_ANG_XX", 1001, [10, 0, 0, 0, 0, 0])])}
    if name == "mosei-raw":
        labels = tmp_path / "labels.csd"
        write_csd(labels, {"vid": ([[0, 1, 0, 0, 0, 0, 0]], [[0.0, 1.0]])})
        return {"labels": labels}
    return {}


def test_unknown_corpus_names_the_known_ones(tmp_path):
    with pytest.raises(UserError, match="cremad, mosei-raw, ravdess"):
        list_corpus("iemocap", tmp_path)


def test_group_splits_are_by_sorted_group_and_deterministic():
    ravdess = split_sorted_groups(range(1, 25))
    assert [a for a in range(1, 25) if ravdess[a] == "valid"] == [17, 18, 19, 20]
    assert [a for a in range(1, 25) if ravdess[a] == "test"] == [21, 22, 23, 24]
    cremad = split_sorted_groups(range(1001, 1092))
    assert sum(v == "train" for v in cremad.values()) == 63
    assert cremad[1063] == "train" and cremad[1064] == "valid" and cremad[1078] == "test"
    keys = [f"video{i}" for i in range(2000)]
    first = [split_by_hash(k) for k in keys]
    assert first == [split_by_hash(k) for k in keys]
    share = {s: first.count(s) / len(first) for s in ("train", "valid", "test")}
    assert 0.65 < share["train"] < 0.75 and 0.11 < share["valid"] < 0.19 and 0.11 < share["test"] < 0.19


# --------------------------------------------------------------------------- CREMA-D

VOTE_HEADER = ("fileName,av_A,av_D,av_F,av_H,av_N,av_S,av_numResponses,face_A,face_D,face_F,face_H,face_N,face_S,"
               "face_numResponses,voice_A,voice_D,voice_F,voice_H,voice_N,voice_S,voice_numResponses,"
               "actor,sentence,intended,level").split(",")


def write_votes(path: Path, rows, face=None) -> Path:
    """rows: (clip name, actor, av counts A..S); face/voice counts default to the av counts."""
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(VOTE_HEADER)
        for name, actor, av in rows:
            fc = (face or {}).get(name, av)
            _, sentence, intended, level = name.split("_")
            writer.writerow([name, *av, sum(av), *fc, sum(fc), *av, sum(av), actor, sentence, intended, level])
    return path


@pytest.fixture
def cremad(tmp_path):
    rows = [
        ("1001_DFA_ANG_XX", 1001, [6, 0, 0, 0, 4, 0]),   # anger 60 %, neutral 40 %
        ("1001_IEO_HAP_LO", 1001, [0, 0, 0, 3, 3, 4]),   # happy 30 %, neutral 30 %, sad 40 %
        ("1002_TIE_SAD_XX", 1002, [2, 2, 2, 2, 1, 1]),   # nobody reaches 30 %
        ("1076_MTI_SAD_XX", 1076, [0, 0, 0, 0, 0, 9]),   # known defective in CREMA-D
    ]
    # Twenty actors so that the actor split has all three parts.
    rows += [(f"{1000 + a}_ITS_FEA_HI", 1000 + a, [0, 0, 9, 0, 1, 0]) for a in range(3, 21)]
    votes = write_votes(tmp_path / "votes.csv", rows, face={"1001_DFA_ANG_XX": [0, 8, 0, 0, 2, 0]})
    media = tmp_path / "VideoFlash"
    touch(media, *(r[0] + ".flv" for r in rows), "1001_DFA_ANG_XX.wav", "1099_DFA_ANG_XX.flv", "notes.flv", "readme.txt")
    return media, votes


def test_cremad_vote_share_threshold_gives_multi_labels(cremad):
    media, votes = cremad
    listing = list_corpus("cremad", media, labels=votes)
    assert listing.label_names == list(DEFAULT_LABEL_NAMES)
    assert labels_of(listing, "1001_DFA_ANG_XX") == ["anger", "neutral"]
    assert labels_of(listing, "1001_IEO_HAP_LO") == ["happy", "neutral", "sad"]
    strict = list_corpus("cremad", media, labels=votes, threshold="0.5")
    assert labels_of(strict, "1001_DFA_ANG_XX") == ["anger"]
    assert "1001_IEO_HAP_LO" not in by_id(strict)
    assert all(c.labels.dtype == np.float32 and c.labels.shape == (7,) for c in listing.clips)
    assert all(c.labels[DEFAULT_LABEL_NAMES.index("surprise")] == 0 for c in listing.clips)
    assert any("surprise is never present" in note for note in listing.notes)


def test_options_given_as_none_keep_their_defaults(cremad):
    media, votes = cremad
    listing = list_corpus("cremad", media, labels=votes, threshold=None, vote_modality=None)
    assert labels_of(listing, "1001_DFA_ANG_XX") == ["anger", "neutral"]


def test_cremad_face_votes_option(cremad):
    media, votes = cremad
    listing = list_corpus("cremad", media, labels=votes, vote_modality="face")
    assert labels_of(listing, "1001_DFA_ANG_XX") == ["disgust"]
    with pytest.raises(UserError, match="vote_modality"):
        list_corpus("cremad", media, labels=votes, vote_modality="smell")


def test_cremad_skips_with_reasons(cremad):
    media, votes = cremad
    listing = list_corpus("cremad", media, labels=votes)
    reasons = "\n".join(listing.skipped)
    assert "1099_DFA_ANG_XX.flv: clip 1099_DFA_ANG_XX is not in the vote table" in reasons
    assert "notes.flv: not a CREMA-D clip name" in reasons
    assert "1001_DFA_ANG_XX.wav: duplicate of" in reasons and by_id(listing)["1001_DFA_ANG_XX"].path.suffix == ".flv"
    assert "1002_TIE_SAD_XX.flv: no answer reaches 30%" in reasons
    assert "1076_MTI_SAD_XX.flv: known defective file" in reasons
    assert "readme.txt" not in reasons
    assert len(listing.skipped) == 5
    assert [c.clip_id for c in listing.clips] == sorted(c.clip_id for c in listing.clips)


def test_cremad_split_is_by_actor(cremad):
    media, votes = cremad
    listing = list_corpus("cremad", media, labels=votes)
    split_of_actor: dict[str, set] = {}
    for clip in listing.clips:
        split_of_actor.setdefault(clip.clip_id[:4], set()).add(clip.split)
    assert all(len(s) == 1 for s in split_of_actor.values())
    assert listing.split_counts() == {"train": 15, "valid": 3, "test": 2}  # 1076 (test) is skipped
    assert listing.label_counts()["fear"] == 18 and listing.label_counts()["surprise"] == 0
    # 21 actors in the table (1001..1020 and 1076): 3 test, 3 valid, 15 train, by sorted number.
    assert split_of_actor["1001"] == {"train"} and split_of_actor["1015"] == {"train"}
    assert split_of_actor["1016"] == {"valid"} and split_of_actor["1018"] == {"valid"}
    assert split_of_actor["1019"] == {"test"} and split_of_actor["1020"] == {"test"}


def test_cremad_bad_label_files(tmp_path, cremad):
    media, _ = cremad
    with pytest.raises(UserError, match="vote table not found"):
        list_corpus("cremad", media, labels=tmp_path / "nope.csv")
    broken = tmp_path / "broken.csv"
    broken.write_text("fileName,av_A\n1001_DFA_ANG_XX,3\n")
    with pytest.raises(UserError, match="missing column"):
        list_corpus("cremad", media, labels=broken)
    bad_number = tmp_path / "bad.csv"
    bad_number.write_text(",".join(VOTE_HEADER) + "\n1001_DFA_ANG_XX," + ",".join(["x"] * 25) + "\n")
    with pytest.raises(UserError, match="line 2"):
        list_corpus("cremad", media, labels=bad_number)
    with pytest.raises(UserError, match="threshold"):
        list_corpus("cremad", media, labels=broken, threshold=0)
    with pytest.raises(UserError, match="expected a number"):
        list_corpus("cremad", media, labels=broken, threshold="lots")


@pytest.mark.skipif(not SHARED_VOTES.is_file(), reason="../shared/data/cremad_labels not present")
def test_cremad_default_labels_are_the_shared_vote_table(tmp_path):
    touch(tmp_path, "1001_IEO_NEU_XX.flv", "1001_IEO_HAP_LO.mp4")
    listing = list_corpus("cremad", tmp_path)
    # Shared table: 1001_IEO_NEU_XX av votes N 9, S 1 of 10; 1001_IEO_HAP_LO H 8, N 1 of 9.
    assert labels_of(listing, "1001_IEO_NEU_XX") == ["neutral"]
    assert labels_of(listing, "1001_IEO_HAP_LO") == ["happy"]
    assert {c.split for c in listing.clips} == {"train"}


# --------------------------------------------------------------------------- RAVDESS


def test_ravdess_labels_from_codes_and_calm_is_neutral(tmp_path):
    touch(tmp_path / "Actor_01", "01-01-02-01-01-01-01.mp4", "01-01-08-02-01-01-01.mp4", "03-01-05-01-01-01-01.wav")
    touch(tmp_path / "Actor_02", "01-02-03-01-01-01-02.mp4", "01-01-07-01-01-01-02.mp4")
    listing = list_corpus("ravdess", tmp_path)
    assert listing.label_names == list(DEFAULT_LABEL_NAMES)
    assert labels_of(listing, "01-01-02-01-01-01-01") == ["neutral"]     # calm
    assert labels_of(listing, "01-01-08-02-01-01-01") == ["surprise"]
    assert labels_of(listing, "03-01-05-01-01-01-01") == ["anger"]       # audio-only .wav
    assert labels_of(listing, "01-02-03-01-01-01-02") == ["happy"]       # song
    assert labels_of(listing, "01-01-07-01-01-01-02") == ["disgust"]
    assert all(c.labels.sum() == 1 for c in listing.clips)


def test_ravdess_split_by_actor(tmp_path):
    names = [f"01-01-03-01-01-01-{actor:02d}.mp4" for actor in (1, 16, 17, 20, 21, 24)]
    touch(tmp_path, *names)
    split = {c.clip_id[-2:]: c.split for c in list_corpus("ravdess", tmp_path).clips}
    assert split == {"01": "train", "16": "train", "17": "valid", "20": "valid", "21": "test", "24": "test"}


def test_ravdess_skips_and_options(tmp_path):
    touch(tmp_path, "02-01-03-01-01-01-01.mp4", "01-02-03-01-01-01-01.mp4", "01-01-09-01-01-01-01.mp4",
          "01-01-03-01-01-01-25.mp4", "actor1_happy.mp4", "01-01-03-01-01-01-03.mp4")
    listing = list_corpus("ravdess", tmp_path)
    reasons = "\n".join(listing.skipped)
    assert "02-01-03-01-01-01-01.mp4: video-only copy" in reasons
    assert "emotion 09" in reasons and "actor 25" in reasons
    assert "actor1_happy.mp4: not a RAVDESS file name" in reasons
    assert sorted(by_id(listing)) == ["01-01-03-01-01-01-03", "01-02-03-01-01-01-01"]
    more = list_corpus("ravdess", tmp_path, include_video_only="true", include_song="false")
    assert sorted(by_id(more)) == ["01-01-03-01-01-01-03", "02-01-03-01-01-01-01"]
    with pytest.raises(UserError, match="true or false"):
        list_corpus("ravdess", tmp_path, include_song="maybe")


def test_ravdess_calm_choice_actor_groups_and_generic_label_choices(tmp_path):
    from mmer.extraction_jobs import apply_label_choices, jobs_from_corpus, parse_label_map

    touch(tmp_path, "01-01-02-01-01-01-01.mp4", "01-01-01-01-01-01-02.mp4", "01-01-05-01-01-01-12.mp4",
          "01-02-03-01-01-01-12.mp4")
    own = list_corpus("ravdess", tmp_path, calm="calm")
    assert own.label_names == list(DEFAULT_LABEL_NAMES) + ["calm"]
    assert labels_of(own, "01-01-02-01-01-01-01") == ["calm"]
    assert {c.clip_id: c.group for c in own.clips}["01-01-05-01-01-01-12"] == "12"  # the actor
    gone = list_corpus("ravdess", tmp_path, calm="exclude")
    assert "01-01-02-01-01-01-01" not in by_id(gone) and "calm (calm=exclude)" in "\n".join(gone.skipped)
    with pytest.raises(UserError, match="calm must be one of"):
        list_corpus("ravdess", tmp_path, calm="sleepy")

    jobs = jobs_from_corpus("ravdess", tmp_path, {"calm": "calm"})
    assert [j.group for j in jobs.jobs] == ["02", "01", "12", "12"]  # clips sorted by clip id
    merged = apply_label_choices(jobs, parse_label_map(["calm=neutral"]), exclude=["anger"])
    assert "calm" not in merged.label_names and "anger" not in merged.label_names
    by_job = {j.sample_id: [n for n, v in zip(merged.label_names, j.labels) if v] for j in merged.jobs}
    assert by_job == {"01-01-02-01-01-01-01": ["neutral"], "01-01-01-01-01-01-02": ["neutral"],
                      "01-02-03-01-01-01-12": ["happy"]}
    assert any("label anger (--exclude anger)" in line for line in merged.skipped)
    assert "label calm -> neutral (--map calm=neutral)" in merged.notes
    renamed = apply_label_choices(jobs, {"calm": "relaxed"})
    assert renamed.label_names[-1] == "relaxed" and renamed.jobs[1].labels[-1] == 1.0
    with pytest.raises(UserError, match="no label 'joy'"):
        apply_label_choices(jobs, {"joy": "happy"})
    with pytest.raises(UserError, match="FROM=TO"):
        parse_label_map(["calm"])


# --------------------------------------------------------------------------- CMU-MOSEI (raw)


def write_csd(path: Path, videos: dict) -> Path:
    """A computational sequence in the SDK's layout: <root>/data/<vid>/{features,intervals} + <root>/metadata."""
    with h5py.File(path, "w") as handle:
        root = handle.create_group("All Labels")
        data = root.create_group("data")
        for vid, (features, intervals) in videos.items():
            group = data.create_group(vid)
            group.create_dataset("features", data=np.asarray(features, dtype=np.float32))
            group.create_dataset("intervals", data=np.asarray(intervals, dtype=np.float64))
        metadata = root.create_group("metadata")
        entry = metadata.create_dataset("root name", (1,), dtype=h5py.special_dtype(vlen=str))
        entry[0] = json.dumps("All Labels")
    return path


@pytest.fixture
def mosei(tmp_path):
    raw = tmp_path / "Raw"
    media = raw / "Videos" / "Segmented" / "Combined"
    transcripts = raw / "Transcript" / "Segmented" / "Combined"
    transcripts.mkdir(parents=True)
    # Label rows are NOT in segment-number order: segment 3 is the first interval.
    labels = write_csd(tmp_path / "CMU_MOSEI_Labels.csd", {
        "_ab-c_d1": ([[1.0, 0.667, 0, 0, 0, 0, 0.333],     # 10.0-14.5 s: happy, fear
                      [-1.0, 0, 1.333, 0.333, 0, 0, 0],    # 20.0-25.0 s: sad, anger
                      [0.0, 0, 0, 0, 0, 0, 0]],            # 30.0-33.0 s: no emotion
                     [[10.0, 14.5], [20.0, 25.0], [30.0, 33.0]]),
        "videoB": ([[0.5, 0, 0, 0, 2.0, 0.5, 0]], [[1.0, 4.0]]),   # surprise, disgust
    })
    (transcripts / "_ab-c_d1.txt").write_text(
        "_ab-c_d1___3___10.0___14.5___hello there\n"
        "_ab-c_d1___4___20.0___25.0___so ___ underscores in text\n"
        "_ab-c_d1___5___30.0___33.0___fine\n"
        "_ab-c_d1___6___40.0___41.0___never labelled\n")
    (transcripts / "videoB.txt").write_text("videoB___0___1.004___3.996___hi\n")
    touch(media, "_ab-c_d1_3.mp4", "_ab-c_d1_4.mp4", "_ab-c_d1_5.mp4", "_ab-c_d1_6.mp4", "_ab-c_d1_9.mp4",
          "videoB_0.mp4", "unknownVid_1.mp4", "noindex.mp4")
    return media, labels, transcripts


def test_mosei_labels_map_segments_to_intervals_through_transcripts(mosei):
    media, labels, _ = mosei
    listing = list_corpus("mosei-raw", media, labels=labels)
    assert listing.label_names == list(MOSEI_LABEL_NAMES)
    assert labels_of(listing, "_ab-c_d1_3") == ["happy", "fear"]
    assert labels_of(listing, "_ab-c_d1_4") == ["sad", "anger"]
    assert labels_of(listing, "_ab-c_d1_5") == []          # empty label set is kept
    assert labels_of(listing, "videoB_0") == ["surprise", "disgust"]
    reasons = "\n".join(listing.skipped)
    assert "_ab-c_d1_6.mp4: no labelled interval of _ab-c_d1 matches 40.000-41.000 s" in reasons
    assert "_ab-c_d1_9.mp4: segment 9 is not in transcript" in reasons
    assert "unknownVid_1.mp4: video unknownVid is not in the label file" in reasons
    assert "noindex.mp4: not a MOSEI segment name" in reasons
    assert any("NOT the standard split" in note for note in listing.notes)
    # Fallback split is per video and deterministic.
    assert {by_id(listing)[f"_ab-c_d1_{i}"].split for i in (3, 4, 5)} == {split_by_hash("_ab-c_d1")}


def test_mosei_explicit_transcripts_folder(mosei, tmp_path):
    media, labels, transcripts = mosei
    moved = tmp_path / "elsewhere" / "media"
    moved.mkdir(parents=True)
    for f in media.iterdir():
        f.rename(moved / f.name)
    with pytest.raises(UserError, match="transcripts=DIR"):
        list_corpus("mosei-raw", moved, labels=labels)
    listing = list_corpus("mosei-raw", moved, labels=labels, transcripts=str(transcripts))
    assert labels_of(listing, "_ab-c_d1_3") == ["happy", "fear"]


SDK_FOLDS_PY = '''standard_train_fold=['_ab-c_d1', 'other1']
standard_valid_fold=['other2']
standard_test_fold=['videoB']
'''


@pytest.mark.parametrize("file_name,content", [
    ("cmu_mosei_std_folds.py", SDK_FOLDS_PY),
    ("folds.json", json.dumps({"train": ["_ab-c_d1"], "dev": ["other2"], "test": ["videoB"]})),
    ("folds.txt", "# split video\ntrain _ab-c_d1\nvalid,other2\nvideoB\ttest\n"),
])
def test_mosei_official_folds_in_each_format(mosei, tmp_path, file_name, content):
    media, labels, _ = mosei
    folds = tmp_path / file_name
    folds.write_text(content)
    listing = list_corpus("mosei-raw", media, labels=labels, folds=folds)
    split = {c.clip_id: c.split for c in listing.clips}
    assert split == {"_ab-c_d1_3": "train", "_ab-c_d1_4": "train", "_ab-c_d1_5": "train", "videoB_0": "test"}
    assert any("standard folds" in note for note in listing.notes)


def test_mosei_video_outside_folds_is_skipped_and_bad_folds_fail(mosei, tmp_path):
    media, labels, _ = mosei
    folds = tmp_path / "folds.json"
    folds.write_text(json.dumps({"train": ["_ab-c_d1"], "valid": ["x"], "test": ["y"]}))
    listing = list_corpus("mosei-raw", media, labels=labels, folds=folds)
    assert "videoB_0.mp4: video videoB is in none of the folds" in "\n".join(listing.skipped)
    folds.write_text(json.dumps({"train": ["a"], "valid": ["a"], "test": ["b"]}))
    with pytest.raises(UserError, match="in both the train and valid folds"):
        list_corpus("mosei-raw", media, labels=labels, folds=folds)
    folds.write_text(json.dumps({"train": ["a"], "test": ["b"]}))
    with pytest.raises(UserError, match="fold\\(s\\) valid"):
        list_corpus("mosei-raw", media, labels=labels, folds=folds)
    with pytest.raises(UserError, match="folds file not found"):
        list_corpus("mosei-raw", media, labels=labels, folds=tmp_path / "none.json")


def test_mosei_bad_label_files(mosei, tmp_path):
    media, _, _ = mosei
    with pytest.raises(UserError, match="needs labels=PATH"):
        list_corpus("mosei-raw", media)
    not_hdf5 = tmp_path / "labels.csd"
    not_hdf5.write_text("not hdf5")
    with pytest.raises(UserError, match="not an HDF5"):
        list_corpus("mosei-raw", media, labels=not_hdf5)
    wrong_shape = write_csd(tmp_path / "wrong.csd", {"videoB": ([[0.5, 0, 0]], [[1.0, 4.0]])})
    with pytest.raises(UserError, match=r"videoB: features have shape \(1, 3\)"):
        list_corpus("mosei-raw", media, labels=wrong_shape)
    with h5py.File(tmp_path / "other.csd", "w") as handle:
        handle.create_group("a")
        handle.create_group("b")
    with pytest.raises(UserError, match="All Labels/data"):
        list_corpus("mosei-raw", media, labels=tmp_path / "other.csd")
