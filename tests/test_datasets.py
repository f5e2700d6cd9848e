"""Dataset loaders: every format loads with the right counts, dims, labels and masks; every
malformed file is one clear DatasetError; pickles are never trusted; the cache is resumable."""

from __future__ import annotations

import argparse
import json
import os
import pickle
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from mmer.datasets import CacheWriter, DatasetError, collate, dataset_names, load_dataset
from mmer.datasets.extract_cache import INDEX_NAME, MANIFEST_NAME, SAMPLES_DIR
from mmer.datasets.labels import M3ED_EMOTIONS, MOSEI_EMOTIONS
from mmer.datasets.safe_pickle import load_pickled_file
from mmer.datasets.sequences import trim_zero_padding
from mmer.core.feature_spec import MODALITIES, FeatureSpec, ModalitySpec
from tests.synthetic_benchmarks import (
    SIGNAL,
    SYNTHETIC_CACHE_SPEC,
    write_cache,
    write_m3ed,
    write_mosei_aligned,
    write_mosei_mmsa,
    write_mosei_unaligned,
)


def expect_error(call, *fragments: str) -> str:
    """Run `call`; it must raise a one-line DatasetError containing every fragment."""
    with pytest.raises(DatasetError) as info:
        call()
    message = str(info.value)
    assert "\n" not in message, message
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} not in {message!r}"
    return message


def check_matches(bench, data, dims: dict[str, int], label_names: list[str]) -> None:
    """Counts, dims, labels, real lengths and collate masks all as the fixture wrote them."""
    assert data.label_names == label_names
    assert data.feature_spec.dims == dims
    assert list(data.splits) == ["train", "valid", "test"]
    for split, ds in data.splits.items():
        np.testing.assert_array_equal(ds.labels, bench.expected_labels[split])
        assert (ds.labels.sum(axis=1) == 0).any(), "fixture has empty label sets; they must be kept"
        samples = [ds[i] for i in range(len(ds))]
        for i, sample in enumerate(samples):
            for m in MODALITIES:
                x = sample.features[m]
                assert x.dtype == np.float32 and x.ndim == 2 and x.shape[1] == dims[m]
                assert x.shape[0] == bench.expected_lengths[split][m][i], (split, i, m)
                assert np.isfinite(x).all()
        batch = collate(samples)
        for m in MODALITIES:
            np.testing.assert_array_equal(batch.masks[m].sum(dim=1).numpy(), bench.expected_lengths[split][m])
        assert batch.labels.shape == (len(ds), len(label_names))


def test_registry_lists_every_dataset():
    assert dataset_names() == ["cache", "m3ed", "mosei-aligned", "mosei-mmsa", "mosei-unaligned"]
    expect_error(lambda: load_dataset("iemocap", "x"), "unknown dataset 'iemocap'", "mosei-aligned")


# ---------------------------------------------------------------------------------------------
# each format loads


@pytest.mark.parametrize("layout,storage,legacy", [
    ("stacked", "numpy", False), ("list", "numpy", False), ("stacked", "torch", False),
    ("list", "torch", False), ("stacked", "torch", True), ("list", "numpy", True),
])
def test_mosei_aligned_loads(tmp_path, layout, storage, legacy):
    bench = write_mosei_aligned(tmp_path, layout=layout, storage=storage, legacy_torch=legacy, seq_len=12)
    data = bench.load()
    check_matches(bench, data, {"text": 300, "audio": 74, "visual": 35}, MOSEI_EMOTIONS)
    assert data.feature_spec.text.extractor == "glove-300"
    assert [len(data.splits[s]) for s in ("train", "valid", "test")] == [8, 4, 4]


def test_numpy_2_pickle_paths_load_too(tmp_path):
    bench = write_mosei_aligned(tmp_path, numpy1_paths=False, seq_len=6)
    check_matches(bench, bench.load(), {"text": 300, "audio": 74, "visual": 35}, MOSEI_EMOTIONS)


def test_aligned_file_tolerates_settings_namespace_and_reads_it_safely(tmp_path):
    bench = write_mosei_aligned(tmp_path, seq_len=4)
    raw = load_pickled_file(bench.data)
    assert isinstance(raw["settings"], argparse.Namespace)
    assert raw["settings"].max_text_seq_len == 4


def test_samples_are_views_not_copies_of_the_split(tmp_path):
    for storage in ("numpy", "torch"):
        bench = write_mosei_aligned(tmp_path / storage, storage=storage, seq_len=10)
        x = bench.load().splits["train"][1].features["text"]
        assert not x.flags.owndata, f"{storage}: sample was copied out of the stacked split"


def test_mosei_unaligned_loads_with_labels_from_aligned_file(tmp_path):
    bench = write_mosei_unaligned(tmp_path)
    data = bench.load()
    check_matches(bench, data, {"text": 300, "audio": 74, "visual": 35}, MOSEI_EMOTIONS)
    assert data.splits["train"].ids[0] == "trainvid0_0.0_1.0"
    raw = load_pickled_file(bench.data)
    assert np.isneginf(raw["train"]["audio"]).any(), "fixture must contain -inf audio"


def test_mosei_unaligned_count_mismatch_names_both_files(tmp_path):
    bench = write_mosei_unaligned(tmp_path, n_per_split=(6, 3, 3))
    other = write_mosei_aligned(tmp_path / "other", n_per_split=(5, 3, 3), seq_len=4)
    expect_error(lambda: load_dataset("mosei-unaligned", bench.data, other.data),
                 str(other.data), str(bench.data), "'train'", "5 label rows", "6 samples")


@pytest.mark.parametrize("aligned", [True, False])
def test_mosei_mmsa_loads_with_lengths_and_csv_labels(tmp_path, aligned):
    bench = write_mosei_mmsa(tmp_path, aligned=aligned)
    data = bench.load()
    check_matches(bench, data, {"text": 768, "audio": 74, "visual": 35}, MOSEI_EMOTIONS)
    assert data.feature_spec.text.extractor == "bert-768"
    assert data.splits["valid"].ids[1] == "validVid001$_$1"


def test_m3ed_loads_seven_labels(tmp_path):
    bench = write_m3ed(tmp_path, seq_len=20)
    data = bench.load()
    check_matches(bench, data, {"text": 768, "audio": 342, "visual": 1024}, M3ED_EMOTIONS)
    assert data.splits["train"].labels[:, 6].sum() > 0  # token 10 (surprise) is used


def test_cache_loads(tmp_path):
    bench = write_cache(tmp_path / "cache")
    data = bench.load()
    check_matches(bench, data, SYNTHETIC_CACHE_SPEC.dims, MOSEI_EMOTIONS)
    assert data.feature_spec == SYNTHETIC_CACHE_SPEC
    assert data.splits["test"].ids[0] == "test/clip000.mp4"
    batch = collate([data.splits["train"][i] for i in range(3)])
    assert not batch.masks["visual"][2].any()  # sample 2 has no visual frames: fully masked


def test_fixture_labels_are_learnable_from_features(tmp_path):
    """Mean of feature dim k over a sample's real frames separates emotion k (what train tests use)."""
    data = write_mosei_aligned(tmp_path, seq_len=30).load()
    ds = data.splits["train"]
    for m in MODALITIES:
        rows = [ds[i].features[m] for i in range(len(ds))]
        pooled = np.stack([x[:, :6].mean(axis=0) if len(x) else np.zeros(6) for x in rows])
        present = [len(x) > 0 for x in rows]
        predicted = pooled[present] > SIGNAL / 2
        assert (predicted == ds.labels[present].astype(bool)).mean() > 0.9, m


# ---------------------------------------------------------------------------------------------
# padding and masks


def test_trim_zero_padding_keeps_interior_zero_frames():
    x = np.zeros((7, 3), dtype=np.float32)
    x[2] = 1.0
    x[4] = 2.0  # frame 3 is an interior all-zero frame
    out = trim_zero_padding(x)
    assert out.shape == (3, 3) and out[1].sum() == 0
    assert trim_zero_padding(np.zeros((5, 3), np.float32)).shape == (0, 3)


def test_mmsa_text_length_comes_from_bert_mask_not_zeros(tmp_path):
    bench = write_mosei_mmsa(tmp_path, aligned=False, n_per_split=(3, 2, 2))
    raw = load_pickled_file(bench.data)
    assert np.abs(raw["train"]["text"][0, -1]).sum() > 0, "fixture text padding is non-zero"
    lengths = [len(s.features["text"]) for s in bench.load().splits["train"]]
    assert lengths == bench.expected_lengths["train"]["text"]


def test_mmsa_lengths_beyond_sequence_are_clipped_and_negative_refused(tmp_path):
    bench = write_mosei_mmsa(tmp_path, aligned=False, n_per_split=(3, 2, 2))
    raw = load_pickled_file(bench.data)
    raw["train"]["vision_lengths"][0] = 400  # sequence holds 375 frames
    with open(bench.data, "wb") as f:
        pickle.dump(raw, f)
    assert bench.load().splits["train"][0].features["visual"].shape == (375, 35)
    raw["train"]["audio_lengths"][1] = -1
    with open(bench.data, "wb") as f:
        pickle.dump(raw, f)
    expect_error(bench.load, str(bench.data), "'audio_lengths'", "negative")


def test_unaligned_audio_nonfinite_becomes_zero(tmp_path):
    bench = write_mosei_unaligned(tmp_path, n_per_split=(2, 1, 1))
    x = bench.load().splits["train"][0].features["audio"]
    assert np.isfinite(x).all() and (x[::7, -1] == 0).all()


# ---------------------------------------------------------------------------------------------
# safety: pickles are never trusted


class _Exploit:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_raw_pickle_with_os_system_is_refused(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "train_valid_test.pt"
    path.write_bytes(pickle.dumps({"train": _Exploit(marker)}))
    expect_error(lambda: load_dataset("mosei-aligned", path), str(path), "refused to unpickle", "system")
    assert not marker.exists()


@pytest.mark.parametrize("legacy", [False, True])
def test_torch_file_with_os_system_is_refused(tmp_path, legacy):
    marker = tmp_path / "pwned"
    path = tmp_path / "m3ed.pt"
    torch.save({"train": _Exploit(marker)}, path, _use_new_zipfile_serialization=not legacy)
    expect_error(lambda: load_dataset("m3ed", path), str(path), "refused to unpickle", "system")
    assert not marker.exists()


def test_nested_storage_bytes_cannot_smuggle_code(tmp_path):
    """`torch.storage._load_from_bytes` payloads are loaded with the restricted loader too."""
    marker = tmp_path / "pwned"
    inner = tmp_path / "inner.pt"
    torch.save(_Exploit(marker), inner, _use_new_zipfile_serialization=False)
    payload = inner.read_bytes()
    outer = (pickle.PROTO + b"\x02" + pickle.GLOBAL + b"torch.storage\n_load_from_bytes\n"
             + pickle.BINBYTES + len(payload).to_bytes(4, "little") + payload
             + pickle.TUPLE1 + pickle.REDUCE + pickle.STOP)
    path = tmp_path / "mosei_senti_data_noalign.pkl"
    path.write_bytes(outer)
    expect_error(lambda: load_pickled_file(path), str(path), "refused to unpickle")
    assert not marker.exists()


def test_protocol_0_namespace_and_py2_style_bytes_are_allowed(tmp_path):
    path = tmp_path / "old.pkl"
    path.write_bytes(pickle.dumps({"s": argparse.Namespace(a=1), "x": np.arange(3.0)}, protocol=0))
    raw = load_pickled_file(path)
    assert raw["s"].a == 1 and raw["x"].tolist() == [0.0, 1.0, 2.0]


def test_plain_pickle_of_tensors_is_allowed(tmp_path):
    path = tmp_path / "tensors.pt"
    path.write_bytes(pickle.dumps({"t": torch.arange(3.0), "od": {"k": [torch.ones(2, 2)]}}))
    raw = load_pickled_file(path)
    assert raw["t"].tolist() == [0.0, 1.0, 2.0] and raw["od"]["k"][0].shape == (2, 2)


# ---------------------------------------------------------------------------------------------
# malformed files: one-line DatasetError naming the file


def _resave(bench, mutate) -> None:
    raw = load_pickled_file(bench.data)
    mutate(raw)
    torch.save(raw, bench.data)


def test_not_a_pickle(tmp_path):
    path = tmp_path / "train_valid_test.pt"
    path.write_bytes(np.random.default_rng(0).bytes(4096))
    expect_error(lambda: load_dataset("mosei-aligned", path), str(path), "not a readable pickle")
    path.write_text("key_id,mode\n")
    expect_error(lambda: load_dataset("mosei-aligned", path), str(path), "not a readable pickle")


def test_empty_truncated_missing_and_directory(tmp_path):
    empty = tmp_path / "empty.pt"
    empty.write_bytes(b"")
    expect_error(lambda: load_dataset("m3ed", empty), str(empty), "empty")
    bench = write_mosei_unaligned(tmp_path / "u", n_per_split=(2, 1, 1))
    cut = tmp_path / "cut.pkl"
    cut.write_bytes(bench.data.read_bytes()[:5000])
    expect_error(lambda: load_dataset("mosei-unaligned", cut, bench.labels), str(cut), "truncated")
    expect_error(lambda: load_dataset("m3ed", tmp_path / "nope.pt"), "nope.pt", "not found")
    expect_error(lambda: load_dataset("m3ed", tmp_path), str(tmp_path), "directory")


def test_zip_that_is_not_a_torch_file(tmp_path):
    path = tmp_path / "m3ed.pt"
    np.savez(tmp_path / "x.npz", a=np.zeros(3))
    (tmp_path / "x.npz").rename(path)
    expect_error(lambda: load_dataset("m3ed", path), str(path), "not a readable pickle or PyTorch file")


def test_pkl_given_where_pt_expected_gets_a_hint(tmp_path):
    unaligned = write_mosei_unaligned(tmp_path / "u", n_per_split=(2, 1, 1))
    expect_error(lambda: load_dataset("mosei-aligned", unaligned.data), str(unaligned.data),
                 "no key 'src-text'", "MulT", "mosei-unaligned")
    mmsa = write_mosei_mmsa(tmp_path / "m", n_per_split=(2, 1, 1))
    expect_error(lambda: load_dataset("mosei-aligned", mmsa.data), "MMSA", "mosei-mmsa")
    expect_error(lambda: load_dataset("mosei-unaligned", unaligned.labels, unaligned.labels),
                 "no key 'text'", "HHMPN")


def test_top_level_not_a_dict_and_missing_split(tmp_path):
    path = tmp_path / "m3ed.pt"
    torch.save([1, 2, 3], path)
    expect_error(lambda: load_dataset("m3ed", path), str(path), "found a list")
    bench = write_mosei_aligned(tmp_path / "a", n_per_split=(2, 1, 1), seq_len=4)
    _resave(bench, lambda raw: raw.pop("test"))
    expect_error(bench.load, str(bench.data), "missing split 'test'")


def test_missing_tgt_key(tmp_path):
    bench = write_mosei_aligned(tmp_path, n_per_split=(2, 1, 1), seq_len=4)
    _resave(bench, lambda raw: raw["valid"].pop("tgt"))
    expect_error(bench.load, str(bench.data), "'valid'", "no key 'tgt'")


@pytest.mark.parametrize("shape,problem", [((2, 4, 299), "(N, T, 300)"), ((2, 300), "(N, T, 300)")])
def test_wrong_feature_shape(tmp_path, shape, problem):
    bench = write_mosei_aligned(tmp_path, n_per_split=(2, 1, 1), seq_len=4)
    _resave(bench, lambda raw: raw["train"].__setitem__("src-text", np.ones(shape, np.float32)))
    expect_error(bench.load, str(bench.data), "'src-text'", problem)


def test_wrong_shape_in_list_layout(tmp_path):
    bench = write_mosei_aligned(tmp_path, n_per_split=(2, 1, 1), seq_len=4, layout="list")
    _resave(bench, lambda raw: raw["train"]["src-audio"].__setitem__(1, np.ones((4, 73), np.float32)))
    expect_error(bench.load, str(bench.data), "'src-audio'", "sample 1", "(T, 74)")


def test_sample_counts_disagree_within_split(tmp_path):
    bench = write_mosei_aligned(tmp_path, n_per_split=(3, 1, 1), seq_len=4)
    _resave(bench, lambda raw: raw["train"]["tgt"].pop())
    expect_error(bench.load, str(bench.data), "'train'", "different sample counts", "tgt: 2")


@pytest.mark.parametrize("writer,bad", [
    (write_mosei_aligned, 10), (write_mosei_aligned, 1), (write_m3ed, 11),
])
def test_label_token_out_of_range(tmp_path, writer, bad):
    bench = writer(tmp_path, n_per_split=(2, 1, 1), seq_len=4)
    _resave(bench, lambda raw: raw["test"]["tgt"].__setitem__(0, [2, 4, bad, 3]))
    expect_error(bench.load, str(bench.data), "'test'", "sample 0", f"label token {bad}")


def test_m3ed_accepts_token_10(tmp_path):
    bench = write_m3ed(tmp_path, n_per_split=(2, 1, 1), seq_len=4)
    _resave(bench, lambda raw: raw["test"]["tgt"].__setitem__(0, [2, 10, 3]))
    assert bench.load().splits["test"].labels[0].tolist() == [0, 0, 0, 0, 0, 0, 1]


def test_labels_file_required_or_refused(tmp_path):
    bench = write_mosei_aligned(tmp_path, n_per_split=(2, 1, 1), seq_len=4)
    expect_error(lambda: load_dataset("mosei-aligned", bench.data, bench.data), "takes no labels file")
    expect_error(lambda: load_dataset("mosei-unaligned", bench.data), "needs a labels file")


def _rewrite_csv(path: Path, edit) -> None:
    lines = path.read_text(encoding="utf-8").splitlines()
    path.write_text("\n".join(edit(lines)) + "\n", encoding="utf-8")


@pytest.mark.parametrize("edit,fragments", [
    (lambda ls: [ls[0].replace("tgt", "labels")] + ls[1:], ("lacks column", "tgt")),
    (lambda ls: ls[:1] + [ls[1].replace("[2", "[oops")] + ls[2:], ("line 2", "not a token list")),
    (lambda ls: ls[:1] + [ls[1].replace(",train,", ",dev,")] + ls[2:], ("line 2", "mode 'dev'")),
    (lambda ls: ls[:-1], ("rows with mode 'test'", "matched by order")),
    (lambda ls: [ls[0], ls[2], ls[1]] + ls[3:],
     ("line 2", "key_id 'trainVid001$_$1'", "id 'trainVid000$_$0'")),
    (lambda ls: ls[:1] + [ls[1].replace("[2, ", "[2, 12, ", 1)] + ls[2:], ("line 2", "label token 12")),
])
def test_mmsa_label_csv_problems(tmp_path, edit, fragments):
    bench = write_mosei_mmsa(tmp_path, n_per_split=(3, 2, 2))
    _rewrite_csv(bench.labels, edit)
    expect_error(bench.load, str(bench.labels), *fragments)


def test_mmsa_labels_file_missing(tmp_path):
    bench = write_mosei_mmsa(tmp_path, n_per_split=(2, 1, 1))
    expect_error(lambda: load_dataset("mosei-mmsa", bench.data, tmp_path / "none.csv"),
                 "none.csv", "not found")


# ---------------------------------------------------------------------------------------------
# cache writer / reader


def _sample(rng, spec: FeatureSpec, t: int = 3) -> dict[str, np.ndarray]:
    return {m: rng.normal(size=(t, spec[m].dim)).astype(np.float32) for m in MODALITIES}


def test_cache_writer_is_resumable(tmp_path):
    rng = np.random.default_rng(0)
    out = tmp_path / "cache"
    first = CacheWriter(out, MOSEI_EMOTIONS, SYNTHETIC_CACHE_SPEC)
    for i in range(3):
        first.add(f"clip{i}", "train", _sample(rng, SYNTHETIC_CACHE_SPEC), np.eye(6)[i])
    resumed = CacheWriter(out, MOSEI_EMOTIONS, SYNTHETIC_CACHE_SPEC)
    assert len(resumed) == 3 and resumed.has("clip1") and not resumed.has("clip3")
    resumed.add("clip3", "valid", _sample(rng, SYNTHETIC_CACHE_SPEC), np.zeros(6))
    expect_error(lambda: resumed.add("clip0", "train", _sample(rng, SYNTHETIC_CACHE_SPEC), np.zeros(6)),
                 "already in the cache")
    data = load_dataset("cache", out)
    assert data.splits["train"].ids == ["clip0", "clip1", "clip2"] and data.splits["valid"].ids == ["clip3"]
    np.testing.assert_array_equal(data.splits["train"].labels, np.eye(6)[:3])
    assert len(data.splits["test"]) == 0


def test_cache_survives_an_interrupted_write(tmp_path):
    rng = np.random.default_rng(1)
    out = tmp_path / "cache"
    writer = CacheWriter(out, MOSEI_EMOTIONS, SYNTHETIC_CACHE_SPEC)
    writer.add("a", "train", _sample(rng, SYNTHETIC_CACHE_SPEC), np.zeros(6))
    with open(out / INDEX_NAME, "a", encoding="utf-8") as f:
        f.write('{"id": "b", "split": "tra')  # crash in the middle of an append
    (out / SAMPLES_DIR / ".half.tmp").write_bytes(b"partial")
    assert load_dataset("cache", out).splits["train"].ids == ["a"]
    writer = CacheWriter(out, MOSEI_EMOTIONS, SYNTHETIC_CACHE_SPEC)
    assert not writer.has("b") and not (out / SAMPLES_DIR / ".half.tmp").exists()
    writer.add("b", "train", _sample(rng, SYNTHETIC_CACHE_SPEC), np.ones(6))
    assert load_dataset("cache", out).splits["train"].ids == ["a", "b"]


def test_cache_with_other_spec_or_labels_is_refused(tmp_path):
    out = tmp_path / "cache"
    CacheWriter(out, MOSEI_EMOTIONS, SYNTHETIC_CACHE_SPEC)
    other = FeatureSpec(text=ModalitySpec("synthetic-text", 32), audio=SYNTHETIC_CACHE_SPEC.audio,
                        visual=SYNTHETIC_CACHE_SPEC.visual)
    expect_error(lambda: CacheWriter(out, MOSEI_EMOTIONS, other), str(out), "text dim", "32")
    expect_error(lambda: CacheWriter(out, M3ED_EMOTIONS, SYNTHETIC_CACHE_SPEC), "label names")
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "notes.txt").write_text("x")
    expect_error(lambda: CacheWriter(tmp_path / "busy", MOSEI_EMOTIONS, SYNTHETIC_CACHE_SPEC), "not empty")


def test_cache_writer_validates_samples(tmp_path):
    rng = np.random.default_rng(2)
    writer = CacheWriter(tmp_path / "c", MOSEI_EMOTIONS, SYNTHETIC_CACHE_SPEC)
    good = _sample(rng, SYNTHETIC_CACHE_SPEC)
    expect_error(lambda: writer.add("x", "dev", good, np.zeros(6)), "split 'dev'")
    expect_error(lambda: writer.add("x", "train", good | {"audio": np.zeros((3, 5))}, np.zeros(6)),
                 "audio features have shape (3, 5)")
    expect_error(lambda: writer.add("x", "train", good, np.zeros(5)), "labels must be 6")
    expect_error(lambda: writer.add("x", "train", good, np.zeros(6), times={"text": np.zeros(2)}),
                 "text times")
    assert len(writer) == 0


def test_cache_reader_errors(tmp_path):
    bench = write_cache(tmp_path / "cache", n_per_split=(3, 1, 1))
    expect_error(lambda: load_dataset("cache", tmp_path / "none"), "not found")
    expect_error(lambda: load_dataset("cache", tmp_path), "no manifest.json")
    manifest = json.loads((bench.data / MANIFEST_NAME).read_text())
    entries = [json.loads(line) for line in (bench.data / INDEX_NAME).read_text().splitlines()]
    # a sample file that smuggles a pickled object is refused (allow_pickle=False)
    np.savez(bench.data / entries[0]["file"], text=np.array([{"a": 1}], dtype=object))
    ds = load_dataset("cache", bench.data).splits["train"]
    expect_error(lambda: ds[0], entries[0]["file"].split("/")[-1], "unreadable cached sample")
    # a listed sample file that is gone
    (bench.data / entries[1]["file"]).unlink()
    expect_error(lambda: load_dataset("cache", bench.data), "missing")
    # a corrupt index line in the middle
    lines = (bench.data / INDEX_NAME).read_text().splitlines()
    (bench.data / INDEX_NAME).write_text("\n".join([lines[0], "{not json", *lines[2:]]) + "\n")
    expect_error(lambda: load_dataset("cache", bench.data), "line 2", "malformed index line")
    # a newer format
    (bench.data / MANIFEST_NAME).write_text(json.dumps(manifest | {"format_version": 99}))
    expect_error(lambda: load_dataset("cache", bench.data), "format version 99")


def test_cache_npz_files_hold_float32_and_times(tmp_path):
    bench = write_cache(tmp_path / "cache", n_per_split=(2, 1, 1))
    entry = json.loads((bench.data / INDEX_NAME).read_text().splitlines()[0])
    with zipfile.ZipFile(bench.data / entry["file"]) as z:
        assert sorted(z.namelist()) == sorted(
            [f"{m}.npy" for m in MODALITIES] + [f"times_{m}.npy" for m in MODALITIES])
    with np.load(bench.data / entry["file"], allow_pickle=False) as npz:
        assert npz["text"].dtype == np.float32 and npz["times_audio"].dtype == np.float64
