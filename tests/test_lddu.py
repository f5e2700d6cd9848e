"""LDDU network and losses: shapes, hand-computed SupCon, queue FIFO, ordinality loss, correctness
tracker, gates, Table 3 ablation flags, absent modalities and the uncertainty score (tiny configs, CPU)."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from mmer.models.batch import MultimodalBatch
from mmer.models.config import ConfigError, apply_overrides, config_from_dict, config_to_dict
from mmer.models.lddu import GATES, LDDU, LDDUConfig
from mmer.models.lddu_losses import (
    CorrectnessTracker, DistributionQueue, authors_code_ordinality_loss, ordinality_loss, supcon_loss,
)
from mmer.models.registry import get_entry

LABELS = torch.tensor([[1, 0, 1], [0, 1, 0], [1, 1, 0], [1, 0, 0], [0, 0, 1], [0, 1, 1]], dtype=torch.float32)


def make_batch(config: LDDUConfig, lengths=(7, 9, 4), seed: int = 0) -> MultimodalBatch:
    """Six samples, ragged valid lengths; sample 1 lacks audio, sample 3 lacks every modality."""
    gen = torch.Generator().manual_seed(seed)
    b = LABELS.shape[0]
    feats, masks = {}, {}
    for m, t in zip(("text", "audio", "visual"), lengths):
        feats[m] = torch.randn(b, t, config.input_dims[m], generator=gen)
        masks[m] = torch.ones(b, t, dtype=torch.bool)
        masks[m][2, t // 2:] = False  # padded tail
        feats[m][2, t // 2:] = 0.0
    masks["audio"][1] = False
    feats["audio"][1] = 0.0
    for m in masks:
        masks[m][3] = False
        feats[m][3] = 0.0
    labels = LABELS[:, : config.num_labels].clone()
    return MultimodalBatch(features=feats, masks=masks, labels=labels, index=torch.arange(b))


def fresh_model(seed: int = 0, **overrides) -> LDDU:
    torch.manual_seed(seed)
    config = dataclasses.replace(LDDUConfig.tiny(), **overrides)
    model = LDDU(config)
    model.prepare_training(LABELS.shape[0])
    return model


def assert_finite_grads(model: LDDU) -> None:
    for name, p in model.named_parameters():
        if p.grad is not None:
            assert torch.isfinite(p.grad).all(), name


# ---------------------------------------------------------------- shapes, registry, config

def test_forward_backward_shapes_and_parts():
    model = fresh_model()
    batch = make_batch(model.config)
    out = model(batch)
    b, q, lat = 6, model.config.num_labels, model.config.latent_dim
    assert out.probs.shape == (b, q)
    assert ((out.probs >= 0) & (out.probs <= 1)).all()
    for key in ("dir_logits", "y_dir", "y_mu", "y_sigma", "gate"):
        assert out.aux[key].shape == (b, q), key
    assert out.aux["mu"].shape == (b, 3, q, lat) and out.aux["sigma"].shape == (b, 3, q, lat)
    assert (out.aux["sigma"] > 0).all()
    assert out.aux["present"].tolist()[1] == [True, False, True]
    loss = model.loss(out, batch)
    assert set(loss.parts) == {"cls", "ocl", "scl", "dir", "total"}
    c = model.config
    expected = (loss.parts["cls"] + c.lambda_ocl * loss.parts["ocl"] + c.beta_scl * loss.parts["scl"]
                + c.gamma_dir * loss.parts["dir"])
    assert loss.parts["total"] == pytest.approx(expected, rel=1e-5)
    loss.total.backward()
    assert_finite_grads(model)
    assert model.emotions.grad is not None and model.emotions.grad.abs().sum() > 0


def test_registry_and_paper_defaults():
    entry = get_entry("lddu")
    assert entry.model_class is LDDU and entry.config_class is LDDUConfig
    c = LDDUConfig()
    assert (c.lr, c.batch_size, c.epochs, c.scheduler, c.warmup_ratio) == (2e-5, 128, 30, "cosine_warmup", 0.1)
    assert (c.hidden, c.d_z, c.latent_dim, c.queue_size) == (256, 128, 64, 8192)
    assert (c.lambda_ocl, c.beta_scl, c.gamma_dir) == (0.1, 0.8, 0.1)


def test_config_roundtrip_and_validation():
    c = apply_overrides(LDDUConfig.tiny(), ["ocl_pairs=SR", "gate=confidence"])
    assert c.ocl_pairs == ("SR",) and c.gate == "confidence"
    assert apply_overrides(c, ['ocl_pairs=["DR","DS"]']).ocl_pairs == ("DR", "DS")
    back = config_from_dict(LDDUConfig, config_to_dict(c))  # JSON-like: tuples may come back as lists
    assert back == c
    for bad in (["gate=average"], ["ocl_pairs=XR"], ["scl_representation=both_halves"], ["correctness=any"]):
        with pytest.raises(ConfigError):
            apply_overrides(LDDUConfig.tiny(), bad)


# ---------------------------------------------------------------- SupCon

def test_supcon_hand_computed_without_bank():
    tau = 0.5
    e = torch.tensor([[1.0, 0.0], [0.6, 0.8], [0.0, 1.0]])
    classes = torch.tensor([0, 0, 1])
    # Dot products: z12 = 0.6, z13 = 0, z23 = 0.8. Anchor 3 has no positive and is skipped.
    l1 = -math.log(math.exp(0.6 / tau) / (math.exp(0.6 / tau) + math.exp(0.0 / tau)))
    l2 = -math.log(math.exp(0.6 / tau) / (math.exp(0.6 / tau) + math.exp(0.8 / tau)))
    assert supcon_loss(e, classes, temperature=tau, reduction="sum").item() == pytest.approx(l1 + l2, rel=1e-5)
    assert supcon_loss(e, classes, temperature=tau, reduction="mean").item() == pytest.approx((l1 + l2) / 2, rel=1e-5)


def test_supcon_hand_computed_with_bank_and_several_positives():
    tau = 0.2
    e = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    classes = torch.tensor([0, 1])
    bank = torch.tensor([[0.8, 0.6], [0.6, 0.8], [1.0, 0.0], [5.0, 5.0]])
    bank_classes = torch.tensor([0, 1, 0, -1])  # last slot empty: ignored
    ex = lambda z: math.exp(z / tau)  # noqa: E731
    # Anchor 1 (class 0): T = {e2: 0, b1: 0.8, b2: 0.6, b3: 1.0}, P = {b1, b3}.
    den1 = ex(0.0) + ex(0.8) + ex(0.6) + ex(1.0)
    l1 = -0.5 * (math.log(ex(0.8) / den1) + math.log(ex(1.0) / den1))
    # Anchor 2 (class 1): T = {e1: 0, b1: 0.6, b2: 0.8, b3: 0}, P = {b2}.
    den2 = ex(0.0) + ex(0.6) + ex(0.8) + ex(0.0)
    l2 = -math.log(ex(0.8) / den2)
    got = supcon_loss(e, classes, bank, bank_classes, temperature=tau, reduction="sum")
    assert got.item() == pytest.approx(l1 + l2, rel=1e-5)


def test_supcon_no_positive_is_zero_with_finite_grad():
    e = torch.nn.functional.normalize(torch.randn(3, 4), dim=-1).requires_grad_()
    loss = supcon_loss(e, torch.tensor([0, 1, 2]))
    loss.backward()
    assert loss.item() == 0.0 and torch.isfinite(e.grad).all()


# ---------------------------------------------------------------- queue

def test_queue_fifo_wraparound():
    q = DistributionQueue(capacity=4, dim=1)
    assert q.classes.tolist() == [-1, -1, -1, -1]
    q.enqueue(torch.tensor([[1.0], [2.0], [3.0]]), torch.tensor([1, 2, 3]))
    assert int(q.ptr) == 3 and q.classes.tolist() == [1, 2, 3, -1]
    q.enqueue(torch.tensor([[4.0], [5.0]]), torch.tensor([4, 5]))  # wraps: slots 3, 0
    assert int(q.ptr) == 1
    assert q.feats.squeeze(1).tolist() == [5.0, 2.0, 3.0, 4.0] and q.classes.tolist() == [5, 2, 3, 4]
    # More than the capacity at once: same result as six single appends starting at slot 1.
    q.enqueue(torch.arange(6.0, 12.0).unsqueeze(1), torch.arange(6, 12))
    assert int(q.ptr) == 3
    assert q.feats.squeeze(1).tolist() == [9.0, 10.0, 11.0, 8.0] and q.classes.tolist() == [9, 10, 11, 8]


def test_queue_entries_detached_and_model_enqueues_present_positives_only():
    q = DistributionQueue(capacity=8, dim=2)
    x = torch.ones(2, 2, requires_grad=True)
    q.enqueue(x * 2, torch.tensor([0, 1]))
    assert not q.feats.requires_grad
    model = fresh_model()
    batch = make_batch(model.config)
    model.train()
    model.loss(model(batch), batch)
    present = torch.stack([batch.masks[m].any(1) for m in ("text", "audio", "visual")], dim=1)  # (B, 3)
    expected = int(((batch.labels > 0.5).unsqueeze(1) & present.unsqueeze(2)).sum())
    assert int((model.queue.classes >= 0).sum()) == expected
    assert int(model.queue.ptr) == expected % model.config.queue_size
    # Sample 1 has label 1 but no audio: class id of (audio, label 1) = 1*q + 1 must be absent.
    q_labels = model.config.num_labels
    assert (model.queue.classes == 1 * q_labels + 1).sum() == int(batch.labels[[2, 5], 1].sum())


# ---------------------------------------------------------------- ordinality loss and tracker

def test_ordinality_loss_zero_when_rankings_agree_positive_otherwise():
    r = torch.tensor([0.2, 0.5, 0.9, 0.4])
    valid = torch.ones(4, dtype=torch.bool)
    agree = {"S": r + 3.0, "D": r + 0.25, "R": r}  # softmax is shift-invariant: identical P_S, P_D, P_R
    assert ordinality_loss(agree, valid, ("DR", "SR")).item() == pytest.approx(0.0, abs=1e-7)
    assert ordinality_loss(agree, valid, ("DS",)).item() == pytest.approx(0.0, abs=1e-7)
    disagree = {"S": r.flip(0), "D": r + 0.25, "R": r}
    assert ordinality_loss(disagree, valid, ("DR", "SR")).item() > 1e-3
    assert ordinality_loss(disagree, valid, ("DR",)).item() == pytest.approx(0.0, abs=1e-7)  # S unused
    # Hand value of one pair: KL(P||Q) + KL(Q||P).
    p, q = torch.softmax(r.flip(0), 0), torch.softmax(r, 0)
    expected = float((p * (p / q).log()).sum() + (q * (q / p).log()).sum())
    assert ordinality_loss(disagree, valid, ("SR",)).item() == pytest.approx(expected, rel=1e-5)
    # Excluded samples do not take part; fewer than two valid samples -> 0.
    only_two = torch.tensor([True, True, False, False])
    assert ordinality_loss(disagree, torch.tensor([True, False, False, False]), ("SR",)).item() == 0.0
    p2, q2 = torch.softmax(r.flip(0)[:2], 0), torch.softmax(r[:2], 0)
    expected2 = float((p2 * (p2 / q2).log()).sum() + (q2 * (q2 / p2).log()).sum())
    assert ordinality_loss(disagree, only_two, ("SR",)).item() == pytest.approx(expected2, rel=1e-5)


def test_ordinality_scores_follow_eq_12_to_14():
    model = fresh_model()
    model.eval()
    q, lat = model.config.num_labels, model.config.latent_dim
    sigma = torch.full((2, 3, q, lat), 0.5)
    present = torch.tensor([[True, True, True], [True, False, True]])
    sigma[1, 1] = 100.0  # an absent modality's variance must not count
    y_dir = torch.tensor([[0.9, 0.2, 0.6], [0.1, 0.1, 0.1]])[:, :q]
    labels = torch.tensor([[1.0, 0.0, 0.0], [1.0, 0.0, 0.0]])[:, :q]
    scores, valid = model.ordinality_scores(y_dir, sigma, present, labels)
    full_norm = math.sqrt(3 * q * lat * 0.25)
    assert scores["S"].tolist() == pytest.approx([1 / full_norm, 1 / full_norm], rel=1e-5)
    d = (y_dir - labels).abs().mean(1)
    assert scores["D"].tolist() == pytest.approx((1 - d).tolist(), rel=1e-6)
    assert scores["R"].tolist() == pytest.approx([2 / 3, 2 / 3], rel=1e-6)  # eval: this step's label share
    assert valid.tolist() == [True, True]


def test_correctness_tracker_shares_and_growth():
    tracker = CorrectnessTracker()
    tracker.resize(3)
    tracker.update(torch.tensor([0, 1, 0]), torch.tensor([1.0, 0.5, 0.0]))
    tracker.update(torch.tensor([0]), torch.tensor([1.0]))
    assert tracker.share(torch.tensor([0, 1, 2])).tolist() == pytest.approx([2 / 3, 0.5, 0.0])
    tracker.update(torch.tensor([5]), torch.tensor([1.0]))  # index beyond the prepared size: grows
    assert tracker.seen.numel() == 6 and tracker.share(torch.tensor([5])).item() == 1.0
    assert tracker.share(torch.tensor([0])).item() == pytest.approx(2 / 3)


@pytest.mark.parametrize("rule", ["label_share", "exact"])
def test_model_tracker_updates_only_in_training(rule):
    model = fresh_model(correctness=rule)
    batch = make_batch(model.config)
    model.train()
    out = model(batch)
    model.loss(out, batch)
    right = ((out.aux["y_dir"] > 0.5) == (batch.labels > 0.5)).float()
    expected = right.mean(1) if rule == "label_share" else right.min(1).values
    assert model.tracker.seen.tolist() == [1.0] * 6
    assert model.tracker.share(batch.index).tolist() == pytest.approx(expected.tolist())
    model.eval()
    model.loss(model(batch), batch)  # validation loss: no history recorded
    assert model.tracker.seen.tolist() == [1.0] * 6


# ---------------------------------------------------------------- gates and ablations

@pytest.mark.parametrize("gate", GATES)
def test_gate_variants(gate):
    model = fresh_model(gate=gate)
    model.eval()
    out = model(make_batch(model.config))
    a = out.aux
    weight = {"info_prob": a["y_dir"], "confidence": (2 * a["y_dir"] - 1).abs(),
              "mean_only": torch.ones_like(a["y_dir"]), "variance_only": torch.zeros_like(a["y_dir"])}[gate]
    assert torch.allclose(out.probs, weight * a["y_mu"] + (1 - weight) * a["y_sigma"], atol=1e-6)


ABLATIONS = {
    "1_wo_esm": {"use_emotion_space": False},
    "2_wo_dir": {"gamma_dir": 0.0},
    "3_wo_scl": {"beta_scl": 0.0},
    "4_wo_queue": {"queue_size": 0},
    "5_scl_mean": {"scl_representation": "mean"},
    "6_scl_variance": {"scl_representation": "variance"},
    "7_wo_ocl": {"lambda_ocl": 0.0},
    "8_only_SR": {"ocl_pairs": ("SR",)},
    "9_only_DR": {"ocl_pairs": ("DR",)},
    "10_only_DS": {"ocl_pairs": ("DS",)},
    "11_wo_mean_branch": {"gate": "variance_only"},
    "12_wo_variance_branch": {"gate": "mean_only"},
    "authors_code_scl": {"scl_renormalise": True, "scl_reduction": "mean"},
    "authors_code_encoder": {"encoder_per_label": False},
    "detached_gate": {"detach_gate": True, "gate": "confidence"},
}


@pytest.mark.parametrize("name", sorted(ABLATIONS))
def test_ablation_flags_build_and_train(name):
    model = fresh_model(**ABLATIONS[name])
    batch = make_batch(model.config)
    model.train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    for _ in range(2):  # second step sees a non-empty queue
        loss = model.loss(model(batch), batch)
        opt.zero_grad()
        loss.total.backward()
        assert torch.isfinite(loss.total)
        assert_finite_grads(model)
        opt.step()
    if name == "1_wo_esm":
        assert model.emotions is None and not any("emotions" in n for n, _ in model.named_parameters())
    if name == "3_wo_scl":
        assert loss.parts["scl"] == 0.0 and int((model.queue.classes >= 0).sum()) == 0
    if name == "7_wo_ocl":
        assert loss.parts["ocl"] == 0.0
    if name == "4_wo_queue":
        assert model.queue.feats.numel() == 0 and loss.parts["scl"] > 0.0
    if name in ("5_scl_mean", "6_scl_variance"):
        assert model.queue.feats.shape[1] == model.config.latent_dim
    if name == "authors_code_encoder":  # one encoder per modality, shared by the labels
        assert model.dist_hidden.weight.shape[:2] == (3, 1) and model.dist_mu.weight.shape[:2] == (3, 1)


@pytest.mark.parametrize("detach", [False, True])
def test_detach_gate_controls_cls_gradient_into_info_classifier(detach):
    model = fresh_model(detach_gate=detach, gamma_dir=0.0, lambda_ocl=0.0, beta_scl=0.0)
    batch = make_batch(model.config)
    model.loss(model(batch), batch).total.backward()  # only L_cls remains
    grads = [p.grad for p in model.info_classifier.parameters()]
    reached = any(g is not None and g.abs().sum() > 0 for g in grads)
    assert reached is not detach


# ---------------------------------------------------------------- absent modalities

def test_fully_masked_modality_finite_with_grads():
    model = fresh_model()
    batch = make_batch(model.config)
    # The whole batch without visual: one masked zero frame per sample (as collate pads it).
    batch.features["visual"] = torch.zeros(6, 1, model.config.input_dims["visual"])
    batch.masks["visual"] = torch.zeros(6, 1, dtype=torch.bool)
    model.train()
    out = model(batch)
    for key, value in out.aux.items():
        assert torch.isfinite(value.float()).all(), key
    loss = model.loss(out, batch)
    assert torch.isfinite(loss.total) and all(math.isfinite(v) for v in loss.parts.values())
    loss.total.backward()
    assert_finite_grads(model)
    assert (model.queue.classes[model.queue.classes >= 0] // model.config.num_labels != 2).all()  # no visual class
    pred = model.predict(batch)
    assert torch.isfinite(pred.probs).all() and torch.isfinite(pred.uncertainty).all()
    assert (pred.uncertainty[3] == 1.0).all()  # nothing present: maximally uncertain


def test_outputs_independent_of_padding_content():
    model = fresh_model()
    model.eval()
    batch = make_batch(model.config)
    ref = model(batch).probs
    for m in batch.features:
        batch.features[m] = batch.features[m].masked_fill(~batch.masks[m].unsqueeze(-1), 7.0)
    assert torch.allclose(model(batch).probs, ref, atol=1e-5)


# ---------------------------------------------------------------- uncertainty, training state

def test_uncertainty_range_monotone_and_reference():
    model = fresh_model()
    batch = make_batch(model.config)
    model.train()
    out = model(batch)
    model.loss(out, batch)  # first training step: the reference norm is this batch's mean
    sigma, present = out.aux["sigma"].detach(), out.aux["present"]
    u = model.label_uncertainty(sigma, present)
    assert ((u >= 0) & (u <= 1)).all()
    assert (model.label_uncertainty(sigma * 2.0, present) > u)[present.any(1)].all()
    assert (model.label_uncertainty(sigma * 0.5, present) < u)[present.any(1)].all()
    # A sample whose per-label norm equals the reference gets 0.5.
    q, lat = model.config.num_labels, model.config.latent_dim
    ref = model.sigma_ref  # (q,)
    typical = (ref / math.sqrt(3 * lat)).view(1, 1, q, 1).expand(1, 3, q, lat)
    all_present = torch.ones(1, 3, dtype=torch.bool)
    assert model.label_uncertainty(typical, all_present).squeeze(0).tolist() == pytest.approx([0.5] * q, rel=1e-5)
    # Missing modality: the norm is rescaled, so the same per-modality variance gives the same u.
    one_missing = torch.tensor([[True, False, True]])
    assert model.label_uncertainty(typical, one_missing).squeeze(0).tolist() == pytest.approx([0.5] * q, rel=1e-5)
    pred = model.predict(batch)
    assert model.training  # predict restores the mode
    assert pred.probs.shape == pred.uncertainty.shape == (6, q)
    assert ((pred.uncertainty >= 0) & (pred.uncertainty <= 1)).all()


def test_training_state_roundtrip_and_not_in_state_dict():
    model = fresh_model()
    batch = make_batch(model.config)
    model.train()
    model.loss(model(batch), batch)
    keys = set(model.state_dict())
    assert not any(k.startswith(("queue.", "tracker.")) for k in keys) and "sigma_ref" in keys
    state = model.training_state()
    other = fresh_model(seed=1)
    other.load_state_dict(model.state_dict(), strict=True)  # inference weights load without the state
    other.load_training_state(state)
    assert torch.equal(other.queue.feats, model.queue.feats) and torch.equal(other.queue.classes, model.queue.classes)
    assert int(other.queue.ptr) == int(model.queue.ptr)
    assert torch.equal(other.tracker.correct, model.tracker.correct)
    assert torch.equal(other.tracker.seen, model.tracker.seen)
    with pytest.raises(ValueError):
        other.load_training_state({"tracker.correct": state["tracker.correct"]})


# ---------------------------------------------------------------- several processes

def _two_rank_worker(rank: int, init_file: str, out_dir: str) -> None:
    import torch.distributed as dist

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=2)
    try:
        from mmer.models.lddu_losses import gather_across_ranks

        rows = torch.full((rank + 1, 2), float(rank))  # rank 0: 1 row, rank 1: 2 rows
        gathered = gather_across_ranks(rows)
        model = fresh_model()  # same seed: identical weights on both ranks
        batch = make_batch(model.config, seed=rank)
        half = slice(3 * rank, 3 * rank + 3)  # each rank trains on its own three samples
        local = MultimodalBatch(features={m: x[half] for m, x in batch.features.items()},
                                masks={m: v[half] for m, v in batch.masks.items()},
                                labels=batch.labels[half], index=batch.index[half])
        model.train()
        model.loss(model(local), local)
        torch.save({"gathered": gathered, "state": model.training_state(), "ref": model.sigma_ref.clone()},
                   f"{out_dir}/rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def test_training_state_is_gathered_across_ranks(tmp_path):
    import torch.distributed as dist
    import torch.multiprocessing as mp

    if not (dist.is_available() and dist.is_gloo_available()):
        pytest.skip("torch.distributed with gloo is not available")
    mp.spawn(_two_rank_worker, args=(str(tmp_path / "init"), str(tmp_path)), nprocs=2, join=True)
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt") for r in (0, 1))
    assert r0["gathered"].tolist() == [[0.0, 0.0], [1.0, 1.0], [1.0, 1.0]]
    assert torch.equal(r0["gathered"], r1["gathered"])
    for key, value in r0["state"].items():
        assert torch.equal(value, r1["state"][key]), key
    assert torch.equal(r0["ref"], r1["ref"])
    assert r0["state"]["tracker.seen"].tolist() == [1.0] * 6  # both ranks' samples recorded


# ---------------------------------------------------------------- the authors' SupCon variant and presets

def test_scl_absent_labels_makes_every_label_of_a_present_modality_an_anchor():
    model = fresh_model(scl_absent_labels=True)
    q = model.config.num_labels
    out = model(make_batch(model.config))
    labels = LABELS[:, :q]
    anchors, classes = model._contrastive_anchors(out.aux["mu"], out.aux["sigma"], out.aux["present"], labels)
    present = out.aux["present"]
    assert anchors.shape[0] == int(present.sum()) * q  # positive and absent labels alike
    expected = []
    for b in range(labels.shape[0]):
        for m in range(3):
            if present[b, m]:
                expected += [m * q + i if labels[b, i] > 0.5 else 3 * q + m * q + i for i in range(q)]
    assert classes.tolist() == expected


def test_scl_absent_labels_loss_depends_on_inputs_without_positive_labels():
    """Paper variant: a batch without positive labels has no anchors, L_scl = 0 whatever the input;
    authors' variant: absent labels are classes too, so L_scl is positive and changes with the input."""
    empty = LABELS[:, :3] * 0
    for absent, expect_loss in ((False, False), (True, True)):
        values = []
        for seed in (0, 1):
            model = fresh_model(scl_absent_labels=absent, scl_renormalise=absent, queue_size=0)
            out = model(make_batch(model.config, seed=seed))
            values.append(float(model._contrastive(out.aux["mu"], out.aux["sigma"], out.aux["present"], empty).detach()))
        if expect_loss:
            assert values[0] > 0 and values[0] != pytest.approx(values[1])
        else:
            assert values == [0.0, 0.0]


def test_authors_preset_values_and_sources():
    entry = get_entry("lddu")
    authors = entry.presets["authors"]
    assert entry.presets["paper"] == {}
    expected = {"lr": 2e-4, "batch_size": 64, "latent_dim": 128, "weight_decay": 0.01, "grad_clip": 1.0,
                "scl_absent_labels": True, "scl_renormalise": True, "threshold_mode": "fixed", "threshold": 0.21,
                "d_z": 256, "ff_dim": 256, "encoder_extra_hidden": (192, 128), "head_dropout": 0.1,
                "attention_dropout": 0.3, "scl_reduction": "all_rows", "optimizer": "bertadam",
                "scheduler": "warmup_cosine_total", "no_decay_bias_norm": True, "pad_frames_to": 50}
    assert {k: authors[k] for k in expected} == expected
    assert set(entry.preset_sources) == set(authors)  # every authors' value names its source
    for key, source in entry.preset_sources.items():  # a file, and a line wherever one line holds it
        assert source.split(" ")[0].split(":")[0].endswith((".py", ".sh", ".txt")), key
    config = apply_overrides(LDDUConfig(), authors)
    model = LDDU(dataclasses.replace(config, hidden=16, heads=2, ff_dim=16, proj_dim=8, d_z=8, encoder_hidden=8,
                                     classifier_hidden=8, input_dims={"text": 12, "audio": 8, "visual": 6}))
    assert model.dist_mu.weight.shape[-1] == 128 and model.dist_mu.weight.shape[1] == 1  # per modality


# The LDDU authors' network for CMU-MOSEI aligned (text 768, audio 74, visual 35; 6 labels), counted
# once by hand from their model definition (src/models/myModels.py MyModel at b33f538, the encoders
# of module_bert.py / module_visual.py / module_audio.py, sizes from train.py's defaults and the
# encoder config printed in experience/late_fusion_2/log.txt: hidden_size 256, intermediate_size
# 256, 8 heads, max_position_embeddings 60, 3 layers per modality, pro_dim = label_dim = 256,
# latent_size 128). Linear(i, o) has i*o + o parameters, LayerNorm(d) 2d.
#   one encoder layer: Q, K, V, output Linear(256, 256) 4 x 65,792 + LayerNorm 512
#                      + Linear(256, 256) + Linear(256, 256) + LayerNorm 512            = 395,776
#   encoder of modality with D inputs: input LayerNorm(D) (NormalizeText/Video/Audio)
#       + Linear(D, 256) + position table 60 x 256 + LayerNorm(256) + 3 layers
#       text D=768: 1,401,600   audio D=74: 1,222,548   visual D=35: 1,212,486
#   label embedding nn.Embedding(6, 256)                                                  =   1,536
#   LabelWiseModalModel: per modality seq/label projection Linear(256, 256) and
#       out_projection Linear(256, 256): 3 x 197,376                                      = 592,128
#   common (info) classifier Linear(768, 128) + Linear(128, 1)                            =  98,561
#   3 LatentEncoders: Linear(256,192) + Linear(192,128) + output Linear(128,128)
#       + fc_mu, fc_var Linear(128, 128): 3 x 123,584                                     = 370,752
#   final_classifier and var_classifier1: 6 x (Linear(384, 128) + Linear(128, 1)) each   = 2 x 296,454
#   total taking part in the forward pass                                                 = 5,492,519
# Their model also holds 594,188 parameters that never get a gradient (the three encoders'
# poolers 3 x 65,792, final_classifer2 and var_classifier2 2 x 198,406; 6,086,707 in all); we
# do not build those.
AUTHORS_MOSEI_PARAMETERS = {
    "encoders.text": 1_401_600, "encoders.audio": 1_222_548, "encoders.visual": 1_212_486, "emotions": 1_536,
    "pooling": 592_128, "info_classifier": 98_561, "distribution_encoders": 370_752,
    "mean_classifier": 296_454, "variance_classifier": 296_454,
}
AUTHORS_MOSEI_TOTAL = 5_492_519


def _parameter_groups(model: LDDU) -> dict[str, int]:
    groups: dict[str, int] = {}
    for name, p in model.named_parameters():
        parts = name.split(".")
        if parts[0] == "encoders":
            key = f"encoders.{parts[1]}"
        elif parts[0] in ("dist_extra", "dist_hidden", "dist_mu", "dist_sigma"):
            key = "distribution_encoders"
        else:
            key = parts[0]
        groups[key] = groups.get(key, 0) + p.numel()
    return groups


def test_authors_preset_is_the_authors_network_on_mosei_aligned():
    config = apply_overrides(LDDUConfig(num_labels=6, input_dims={"text": 768, "audio": 74, "visual": 35}),
                             get_entry("lddu").presets["authors"])
    model = LDDU(config)
    assert _parameter_groups(model) == AUTHORS_MOSEI_PARAMETERS
    assert sum(p.numel() for p in model.parameters() if p.requires_grad) == AUTHORS_MOSEI_TOTAL
    shapes = {name: tuple(p.shape) for name, p in model.named_parameters()}
    for m, dim in (("text", 768), ("audio", 74), ("visual", 35)):
        enc = f"encoders.{m}"
        assert shapes[f"{enc}.input_norm.weight"] == (dim,)
        assert shapes[f"{enc}.project.weight"] == (256, dim)
        assert shapes[f"{enc}.positions.weight"] == (60, 256)
        assert shapes[f"{enc}.embedding_norm.weight"] == (256,)
        assert len(model.encoders[m].layers) == 3
        assert shapes[f"{enc}.layers.0.attn.in_proj_weight"] == (768, 256)  # Q, K, V of width 256
        assert shapes[f"{enc}.layers.0.mlp.0.weight"] == (256, 256)  # intermediate_size 256
        assert isinstance(model.encoders[m].layers[0].mlp[2], torch.nn.Identity)  # no dropout inside the MLP
        assert model.encoders[m].layers[0].attn.dropout == 0.3
        assert shapes[f"pooling.{m}.out.weight"] == (256, 256)  # Z of width 256
    assert shapes["emotions"] == (6, 256)
    assert shapes["info_classifier.0.weight"] == (128, 768)
    assert [tuple(layer.weight.shape) for layer in (*model.dist_extra, model.dist_hidden, model.dist_mu)] == [
        (3, 1, 256, 192), (3, 1, 192, 128), (3, 1, 128, 128), (3, 1, 128, 128)]  # one encoder per modality
    assert shapes["mean_classifier.first.weight"] == (6, 384, 128)
    assert model.pooling["text"].dropout.p == 0.1 and model.info_classifier[2].p == 0.1


def test_supcon_all_rows_hand_computed():
    tau = 0.5
    e = torch.tensor([[1.0, 0.0], [0.0, 1.0]], requires_grad=True)
    classes = torch.tensor([0, 1])
    bank = torch.tensor([[0.6, 0.8], [5.0, 5.0]])
    bank_classes = torch.tensor([0, -1])  # the empty slot is no row
    ex = lambda z: math.exp(z / tau)  # noqa: E731
    # Rows e1, e2, b1. e1: T = {e2, b1}, P = {b1}; e2: no positive (0); b1: T = {e1, e2}, P = {e1}.
    l1 = -math.log(ex(0.6) / (ex(0.0) + ex(0.6)))
    l3 = -math.log(ex(0.6) / (ex(0.6) + ex(0.8)))
    got = supcon_loss(e, classes, bank, bank_classes, temperature=tau, reduction="all_rows")
    assert got.item() == pytest.approx((l1 + l3) / 3, rel=1e-5)
    got.backward()
    assert torch.isfinite(e.grad).all() and e.grad.abs().sum() > 0


def test_authors_code_ordinality_loss_hand_computed():
    y_dir = torch.tensor([[0.9, 0.2], [0.4, 0.7]])
    sigma = torch.tensor([1.0, 2.0, 0.5, 1.5, 1.0, 0.5, 2.0, 1.0, 0.5, 1.0, 1.5, 1.0]).view(2, 3, 2, 1)
    norms = [math.sqrt(sum(float(sigma[b, m, i, 0]) ** 2 for m in range(3))) for b in range(2) for i in range(2)]
    z = sum(math.exp(n) for n in norms)
    p_var = [math.exp(n) / z for n in norms]
    p_dir = []
    for row in y_dir.tolist():
        zr = sum(math.exp(v) for v in row)
        p_dir += [math.exp(v) / zr for v in row]
    kl = sum(a * math.log(a / b) for a, b in zip(p_dir, p_var)) + sum(b * math.log(b / a) for a, b in zip(p_dir, p_var))
    assert authors_code_ordinality_loss(y_dir, sigma).item() == pytest.approx(kl / 4 / 2, rel=1e-5)


def test_pad_frames_to_attends_to_padding_like_the_authors_loader():
    model = fresh_model(pad_frames_to=10)
    model.eval()
    batch = make_batch(model.config)
    with torch.no_grad():
        out = model(batch).probs
        # The same frames handed over already padded to 10 frames with every frame marked valid.
        feats, masks = {}, {}
        for m in batch.features:
            x = batch.features[m]
            feats[m] = torch.nn.functional.pad(x, (0, 0, 0, 10 - x.shape[1]))
            masks[m] = batch.masks[m].any(dim=1, keepdim=True).expand(-1, 10)
        padded = dataclasses.replace(batch, features=feats, masks=masks)
        assert torch.allclose(model(padded).probs, out, atol=1e-6)
        model.config.pad_frames_to = 0  # padding masked: another model output
        assert not torch.allclose(model(batch).probs, out, atol=1e-4)
    assert torch.isfinite(out).all()


def test_learned_positions_refuse_a_sequence_longer_than_the_table():
    model = fresh_model(positions="learned", max_positions=8)
    with pytest.raises(ValueError, match="max_positions = 8"):
        model(make_batch(model.config, lengths=(9, 4, 4)))
    assert model(make_batch(model.config, lengths=(8, 4, 4))).probs.shape == (6, 3)


@pytest.mark.parametrize("overrides", [
    {"sigma_activation": "exp"}, {"ocl_variant": "authors_code"}, {"scl_reduction": "all_rows"},
    {"init_scheme": "authors", "standardize_inputs": False, "embedding_norm": True, "ff_inner_dropout": False},
])
def test_authors_switches_train_with_finite_gradients(overrides):
    model = fresh_model(**overrides)
    model.train()
    batch = make_batch(model.config)
    loss = model.loss(model(batch), batch)
    loss.total.backward()
    assert torch.isfinite(loss.total) and loss.parts["total"] > 0
    assert_finite_grads(model)


def test_new_fields_keep_old_state_dict_keys():
    """Defaults build exactly today's modules, so checkpoints saved before these options still load."""
    keys = set(fresh_model().state_dict())
    assert not any(k.startswith(("dist_extra", "encoders.text.positions", "encoders.text.embedding_norm")) for k in keys)
    assert set(fresh_model(ff_inner_dropout=False).state_dict()) == keys
