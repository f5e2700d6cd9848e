"""LAMB-specific behaviour: shapes, Table 2 ablations, label-to-label masking, MC-dropout
uncertainty, padding handling and config validation (generic model checks: tests/test_models.py)."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch
import torch.nn.functional as F

from mmer.models.batch import MultimodalBatch
from mmer.models.config import ConfigError, apply_overrides, config_from_dict, config_to_dict
from mmer.core.feature_spec import MODALITIES
from mmer.models.lamb import ABLATIONS, CROSSMODAL_PAIRS, LAMB, LAMBConfig

DIMS = {"text": 12, "audio": 8, "visual": 6}
LENGTHS = {"text": 5, "audio": 7, "visual": 4}  # distinct, so token counts identify the encoders
Q = 3


def tiny(**overrides) -> LAMBConfig:
    return dataclasses.replace(LAMBConfig.tiny(num_labels=Q, input_dims=DIMS), **overrides)


def make_batch(batch_size: int = 4, lengths: dict[str, int] = LENGTHS, seed: int = 0) -> MultimodalBatch:
    """Random features; sample i keeps the first T_m - i frames of each modality (at least 1)."""
    g = torch.Generator().manual_seed(seed)
    features, masks = {}, {}
    for m in MODALITIES:
        t = lengths[m]
        features[m] = torch.randn(batch_size, t, DIMS[m], generator=g)  # (B, T, D)
        valid_len = torch.clamp(t - torch.arange(batch_size), min=1)  # (B,)
        masks[m] = torch.arange(t)[None, :] < valid_len[:, None]  # (B, T)
        features[m] = features[m] * masks[m][..., None]
    labels = torch.randint(0, 2, (batch_size, Q), generator=g).float()
    return MultimodalBatch(features=features, masks=masks, labels=labels, index=torch.arange(batch_size))


def build(config: LAMBConfig, seed: int = 0) -> LAMB:
    torch.manual_seed(seed)
    return LAMB(config)


def test_shapes_and_outputs():
    model = build(tiny())
    batch = make_batch()
    out = model(batch)
    assert out.probs.shape == (4, Q) and out.aux["logits"].shape == (4, Q)
    assert torch.allclose(out.probs, torch.sigmoid(out.aux["logits"]))
    tokens, valid = model.blend(batch)
    assert tokens.shape == (4, valid.shape[1], model.config.d_model) and valid.dtype == torch.bool
    pred = model.predict(batch)
    assert pred.probs.shape == pred.uncertainty.shape == (4, Q)


def test_defaults_follow_section_4_1():
    c = LAMBConfig()
    assert (c.d_model, c.num_heads, c.encoder_mlp, c.decoder_mlp) == (30, 5, 120, 256)
    assert (c.unimodal_layers, c.crossmodal_layers, c.decoder_layers) == (1, 1, 1)
    assert (c.optimizer, c.lr, c.scheduler, c.grad_clip, c.epochs) == ("adam", 1e-3, "plateau", 0.8, 50)
    assert c.label_smoothing > 0 and c.early_stop_patience > 0
    assert c.unimodal_encoders == MODALITIES and c.crossmodal_encoders == CROSSMODAL_PAIRS
    assert CROSSMODAL_PAIRS == (
        "text->audio", "text->visual", "audio->text", "audio->visual", "visual->text", "visual->audio"
    )


def _expected_encoders(config: LAMBConfig) -> list[str]:
    return [m for m in MODALITIES if m in config.unimodal_encoders] + [
        p for p in CROSSMODAL_PAIRS if p in config.crossmodal_encoders
    ]


@pytest.mark.parametrize("row", sorted(ABLATIONS))
def test_table2_ablation_builds_runs_and_blends_expected_tokens(row):
    config = apply_overrides(tiny(), ABLATIONS[row])
    model = build(config)
    batch = make_batch()
    names = [name for name, _, _ in model.encode(batch)]
    expected = _expected_encoders(config)
    assert names == expected  # Eq. 5 order
    tokens, valid = model.blend(batch)
    queries = [name.split("->")[0] for name in expected]
    assert tokens.shape[1] == sum(LENGTHS[m] for m in queries)
    # Each encoder's tokens inherit its query modality's mask.
    assert torch.equal(valid, torch.cat([batch.masks[m] for m in queries], dim=1))
    out = model(batch)
    model.loss(out, batch).total.backward()
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)
    assert torch.isfinite(out.probs).all()


def test_table2_rows_map_to_the_paper_variants():
    assert _expected_encoders(apply_overrides(tiny(), ABLATIONS["only text"])) == ["text"]
    assert _expected_encoders(apply_overrides(tiny(), ABLATIONS["only visual-text"])) == ["visual->text"]
    assert _expected_encoders(apply_overrides(tiny(), ABLATIONS["only unimodal"])) == list(MODALITIES)
    assert _expected_encoders(apply_overrides(tiny(), ABLATIONS["only multimodal"])) == list(CROSSMODAL_PAIRS)
    assert len(ABLATIONS) == 15  # the 15 rows of Table 2


def test_ablation_flags_change_the_architecture():
    full = build(tiny())
    uni_only = build(apply_overrides(tiny(), ABLATIONS["only unimodal"]))
    assert len(full.encode(make_batch())) == 9 and len(uni_only.encode(make_batch())) == 3
    # Encoders (and their convolutions) that are switched off are not built at all.
    only_text = build(apply_overrides(tiny(), ABLATIONS["only text"]))
    assert set(only_text.convs) == {"text"} and not list(only_text.crossmodal)
    no_decoder = build(tiny(use_decoder=False))
    assert not hasattr(no_decoder, "decoder") and no_decoder.classifier.in_features == 9 * no_decoder.config.d_model
    shared = build(tiny(label_embeddings=False))
    assert shared.label_table.weight.shape == (1, shared.config.d_model)
    assert full.label_table.weight.shape == (Q, full.config.d_model)


def test_without_decoder_uses_first_valid_token_of_each_encoder():
    model = build(tiny(use_decoder=False)).eval()
    batch = make_batch()
    encoded = model.encode(batch)
    firsts = torch.cat([t[:, 0] for _, t, _ in encoded], dim=1)  # every sample's first frame is valid
    expected = torch.sigmoid(model.classifier(firsts))
    assert torch.allclose(model(batch).probs, expected, atol=1e-6)


def _perturbed_label_probs(config: LAMBConfig, label: int) -> tuple[torch.Tensor, torch.Tensor]:
    model = build(config).eval()
    batch = make_batch()
    before = model(batch).probs
    with torch.no_grad():
        model.label_table.weight[label] += 3.0 * torch.randn(model.label_table.weight.shape[1])
    return before, model(batch).probs


def test_without_label_correlations_each_label_ignores_the_others():
    before, after = _perturbed_label_probs(tiny(label_correlations=False), label=0)
    assert not torch.allclose(before[:, 0], after[:, 0])  # the perturbed label itself moves
    assert torch.allclose(before[:, 1:], after[:, 1:], atol=1e-6)  # the others do not


def test_with_label_correlations_labels_see_each_other():
    before, after = _perturbed_label_probs(tiny(), label=0)
    assert not torch.allclose(before[:, 1:], after[:, 1:], atol=1e-4)


def test_shared_label_embedding_still_scores_labels_separately():
    model = build(tiny(label_embeddings=False)).eval()
    reps = model.label_representations(*model.blend(make_batch()))
    assert torch.allclose(reps[:, 0], reps[:, 1], atol=1e-6)  # identical label queries ...
    probs = model(make_batch()).probs
    assert not torch.allclose(probs[:, 0], probs[:, 1])  # ... but per-label classifier weights


def test_mc_dropout_uncertainty_range_and_determinism():
    model = build(tiny(dropout=0.3, mc_samples=8))
    batch = make_batch()
    rng_before = torch.get_rng_state()
    first = model.predict(batch)
    assert torch.equal(torch.get_rng_state(), rng_before)  # predict does not consume the global RNG
    second = model.predict(batch)
    assert torch.equal(first.probs, second.probs) and torch.equal(first.uncertainty, second.uncertainty)
    assert ((first.uncertainty >= 0) & (first.uncertainty <= 1)).all()
    assert (first.uncertainty > 0).all()
    assert model.training  # mode restored


def test_probabilities_are_one_eval_pass_and_uncertainty_is_the_mc_spread():
    config = tiny(dropout=0.3, mc_samples=5, mc_seed=7)
    model = build(config).eval()
    batch = make_batch()
    pred = model.predict(batch)
    assert not model.training
    deterministic = model(batch).probs.detach()  # eval mode: no dropout
    assert torch.allclose(pred.probs, deterministic, atol=1e-6)
    torch.manual_seed(7)
    model.train()  # every dropout active; LAMB has no other train/eval-dependent layer
    passes = torch.stack([model(batch).probs.detach() for _ in range(5)])
    assert not torch.allclose(pred.probs, passes.mean(0), atol=1e-4)  # not the MC mean any more
    assert torch.allclose(pred.uncertainty, 2 * passes.std(0, correction=0), atol=1e-6)
    fast = model.predict(batch, with_uncertainty=False)  # validation: no MC passes
    assert fast.uncertainty is None and torch.equal(fast.probs, pred.probs)


def test_decoder_residual_is_the_standard_decoder_and_printed_variant_is_unchanged():
    printed = build(tiny())
    assert not any("label_norm" in name or "token_norm" in name for name, _ in printed.named_parameters())
    torch.manual_seed(0)
    residual = build(tiny(decoder_residual=True)).eval()
    layer = residual.decoder[0]
    assert layer.residual and isinstance(layer.label_norm, torch.nn.LayerNorm)
    batch = make_batch()
    probs = residual(batch).probs
    assert probs.shape == (4, 3) and torch.isfinite(probs).all()
    # Residual path: zeroing both attentions' output projections leaves D~ = LN(D), D^ = LN(D~).
    labels = torch.randn(2, 3, 16)
    tokens, valid = torch.randn(2, 5, 16), torch.ones(2, 5, dtype=torch.bool)
    with torch.no_grad():
        for attn in (layer.label_attn, layer.token_attn):
            attn.out_proj.weight.zero_()
            attn.out_proj.bias.zero_()
        expected_hat = layer.token_norm(layer.label_norm(labels))
        expected = layer.norm(expected_hat + layer.mlp(expected_hat))
        assert torch.allclose(layer(labels, tokens, valid, None), expected, atol=1e-5)


def test_attention_dropout_alone_is_sampled_by_mc_dropout():
    model = build(tiny(dropout=0.0, attention_dropout=0.3))
    assert model.predict(make_batch()).uncertainty.max() > 1e-3


def test_mc_seed_minus_one_uses_global_rng():
    model = build(tiny(dropout=0.3, mc_seed=-1))
    batch = make_batch()
    torch.manual_seed(1)
    a = model.predict(batch)
    torch.manual_seed(1)
    b = model.predict(batch)
    c = model.predict(batch)
    assert torch.equal(a.uncertainty, b.uncertainty) and not torch.equal(b.uncertainty, c.uncertainty)
    assert torch.equal(b.probs, c.probs)  # probabilities come from the deterministic pass


def test_no_dropout_gives_zero_uncertainty():
    model = build(tiny(dropout=0.0))
    batch = make_batch()
    pred = model.predict(batch)
    assert pred.uncertainty.abs().max() < 1e-6
    assert torch.allclose(pred.probs, model.eval()(batch).probs, atol=1e-6)


@pytest.mark.parametrize("use_decoder", [True, False])
def test_front_padding_does_not_change_output(use_decoder):
    """Masked frames before the valid ones (front padding, as in some benchmark files) change
    neither the convolution nor the positions nor the first-valid-token read-out."""
    model = build(tiny(use_decoder=use_decoder)).eval()
    batch = make_batch()
    pad = 3
    features = {m: torch.cat([torch.randn(4, pad, DIMS[m]), x], dim=1) for m, x in batch.features.items()}
    masks = {m: torch.cat([torch.zeros(4, pad, dtype=torch.bool), v], dim=1) for m, v in batch.masks.items()}
    padded = MultimodalBatch(features=features, masks=masks, labels=batch.labels)
    assert torch.allclose(model(batch).probs, model(padded).probs, atol=1e-5)


def test_absent_key_modality_gives_finite_crossmodal_tokens():
    model = build(tiny())
    batch = make_batch()
    batch.masks["audio"][1] = False
    batch.features["audio"][1] = 1e6  # garbage in an absent modality must not leak
    for name, tokens, _ in model.encode(batch):
        assert torch.isfinite(tokens).all(), name
    reference = make_batch()
    reference.masks["audio"][1] = False
    reference.features["audio"][1] = 0.0
    model.eval()
    assert torch.allclose(model(batch).probs, model(reference).probs, atol=1e-6)


def test_paper_size_unaligned_lengths_with_missing_modalities():
    """Default (paper-size) config on unaligned MOSEI lengths 50/500/375 with variable padding."""
    config = LAMBConfig()
    model = build(config)
    lengths = {"text": 50, "audio": 500, "visual": 375}
    g = torch.Generator().manual_seed(0)
    features = {m: torch.randn(2, lengths[m], config.input_dims[m], generator=g) for m in MODALITIES}
    masks = {m: torch.ones(2, lengths[m], dtype=torch.bool) for m in MODALITIES}
    masks["audio"][0] = False  # absent audio
    masks["visual"][1, 200:] = False  # shorter video
    batch = MultimodalBatch(features=features, masks=masks, labels=torch.tensor([[1.0, 0, 0, 1, 0, 0]] * 2))
    out = model(batch)
    assert out.probs.shape == (2, 6)
    model.loss(out, batch).total.backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


def test_loss_is_bce_with_label_smoothing():
    model = build(tiny(label_smoothing=0.2))
    batch = make_batch()
    out = model(batch)
    smoothed = batch.labels * 0.8 + 0.1
    expected = F.binary_cross_entropy(out.probs, smoothed)
    assert torch.allclose(model.loss(out, batch).total, expected, atol=1e-5)
    plain = build(tiny(label_smoothing=0.0))
    out = plain(batch)
    assert torch.allclose(plain.loss(out, batch).total, F.binary_cross_entropy(out.probs, batch.labels), atol=1e-5)


def test_config_round_trips_through_json_and_overrides():
    config = apply_overrides(
        tiny(), ['crossmodal_encoders=["visual->text"]', "unimodal_encoders=[]", "label_correlations=false"]
    )
    assert config.crossmodal_encoders == ("visual->text",) and config.unimodal_encoders == ()
    assert config.label_correlations is False
    restored = config_from_dict(LAMBConfig, json.loads(json.dumps(config_to_dict(config))))
    assert restored == config


@pytest.mark.parametrize(
    "overrides",
    [
        {"unimodal_encoders": ("speech",)},
        {"crossmodal_encoders": ("text->text",)},
        {"unimodal_encoders": (), "crossmodal_encoders": ()},
        {"conv_kernels": {"text": 2, "audio": 3, "visual": 3}},
        {"conv_kernels": {"text": 3}},
        {"mc_samples": 1},
        {"d_model": 10, "num_heads": 3},
        {"dropout": 1.0},
        {"attention_dropout": -0.1},
    ],
)
def test_invalid_configs_are_rejected(overrides):
    with pytest.raises(ConfigError):
        tiny(**overrides)


def test_wrong_feature_dim_is_a_clear_error():
    model = build(tiny())
    batch = make_batch()
    batch.features["visual"] = torch.randn(4, LENGTHS["visual"], 7)
    with pytest.raises(ValueError, match="visual features have dimension 7"):
        model(batch)
