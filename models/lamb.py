"""LAMB: Label-Induced Mixed-Level Blending (Qian et al.; paper text in shared/papers/lamb.txt).

Pipeline (equation numbers of the paper, Section 3):

1. Temporal convolution per modality into a common width d (Eq. 1).
2. Mixed-level blending: unimodal self-attention encoders (Eq. 3) and cross-modal encoders
   alpha->beta (alpha queries, beta keys/values, Eq. 4) run in parallel on the convolved
   sequences; all their output tokens are concatenated into the blended tokens (Eq. 5).
3. Label-induced aggregation decoder (Eq. 6): label embeddings attend to each other, then query
   the blended tokens; a shared linear classifier + sigmoid gives one probability per label (Eq. 7).
4. Loss: binary cross-entropy (Eq. 8) with label smoothing.

Probabilities come from one deterministic eval-mode pass, as the paper infers; per-label
uncertainty from Monte-Carlo dropout (see `LAMB.predict`). Every ablation of the
paper's Table 2 is a config setting (docs/lamb.md maps rows to flags).
"""

from __future__ import annotations

import math
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import ClassVar, Iterator

import torch
import torch.nn.functional as F
from torch import nn

from mmer.models.attention import AttentionBlock, has_any, key_padding_mask, sinusoidal_positions
from mmer.models.base import EmotionModel
from mmer.models.batch import LossOutput, ModelOutput, MultimodalBatch, Prediction
from mmer.models.config import ConfigError, OptimSettings
from mmer.core.feature_spec import MODALITIES

CROSSMODAL_PAIRS: tuple[str, ...] = tuple(
    f"{query}->{key}" for query in MODALITIES for key in MODALITIES if key != query
)
"""The six cross-modal encoders in Eq. 5 order: text->audio, text->visual, audio->text,
audio->visual, visual->text, visual->audio ("query->key/value")."""


ABLATIONS: dict[str, dict[str, object]] = {
    **{f"only {m}": {"unimodal_encoders": (m,), "crossmodal_encoders": ()} for m in MODALITIES},
    **{
        f"only {pair.replace('->', '-')}": {"unimodal_encoders": (), "crossmodal_encoders": (pair,)}
        for pair in CROSSMODAL_PAIRS
    },
    "only unimodal": {"crossmodal_encoders": ()},
    "only multimodal": {"unimodal_encoders": ()},
    "w/o decoder": {"use_decoder": False},
    "w/o label correlations": {"label_correlations": False},
    "w/o label embeddings": {"label_embeddings": False},
    "LAMB": {},
}
"""Rows of the paper's Table 2 (ablation study) -> LAMBConfig overrides, e.g.
`apply_overrides(LAMBConfig(), ABLATIONS["only visual-text"])`."""


def _split_pair(name: str) -> tuple[str, str]:
    """Encoder name to (query modality, key/value modality), e.g. ("text", "audio")."""
    query, key = name.split("->")
    return query, key


@dataclass
class LAMBConfig(OptimSettings):
    """Every LAMB hyper-parameter. Defaults follow Sec. 4.1 of the paper where it states a value;
    the others are documented choices (docs/lamb.md, "Choices the paper does not state")."""

    num_labels: int = 6  # q, number of emotion labels (CMU-MOSEI: 6)
    input_dims: dict[str, int] = field(default_factory=lambda: {"text": 300, "audio": 74, "visual": 35})
    # Architecture (Sec. 4.1)
    d_model: int = 30  # common dimension d of all tokens and label embeddings
    num_heads: int = 5  # heads in every attention layer
    unimodal_layers: int = 1  # layers per unimodal refinement encoder (Eq. 3)
    crossmodal_layers: int = 1  # layers per multimodal interaction encoder (Eq. 4)
    decoder_layers: int = 1  # layers of the label-induced aggregation decoder (Eq. 6)
    encoder_mlp: int = 120  # hidden width of the encoders' MLP
    decoder_mlp: int = 256  # hidden width of the decoder's MLP
    # Not stated in the paper
    dropout: float = 0.1  # dropout on the embedded tokens, MLP hidden layers and residual branches
    attention_dropout: float = 0.0  # dropout on attention weights (costly on CPU: one mask per T x T map)
    conv_kernels: dict[str, int] = field(default_factory=lambda: {"text": 3, "audio": 5, "visual": 5})
    positional_encoding: bool = True  # add sinusoidal positions (counted over valid frames) after Eq. 1
    # Ablations (Table 2)
    unimodal_encoders: tuple[str, ...] = MODALITIES  # subset of MODALITIES
    crossmodal_encoders: tuple[str, ...] = CROSSMODAL_PAIRS  # subset of CROSSMODAL_PAIRS
    use_decoder: bool = True  # False: first valid token of every encoder, concatenated -> linear
    label_correlations: bool = True  # False: identity attention mask in label-to-label attention
    label_embeddings: bool = True  # False: one embedding shared by all labels (+ per-label classifier)
    decoder_residual: bool = False  # True: standard decoder, residual + LN around both attentions of Eq. 6
    # Uncertainty (MC dropout at inference)
    mc_samples: int = 20  # stochastic forward passes per prediction, >= 2
    mc_seed: int = 0  # seed of the dropout masks in predict(); -1 = use torch's global RNG
    # Training (Sec. 4.1; OptimSettings documents each field)
    lr: float = 1e-3
    epochs: int = 50
    optimizer: str = "adam"
    grad_clip: float = 0.8
    scheduler: str = "plateau"
    label_smoothing: float = 0.1
    early_stop_patience: int = 10

    PRESETS: ClassVar[dict[str, dict[str, object]]] = {
        "paper": {}, "authors": {},
        "small": {"batch_size": 16, "epochs": 30, "plateau_patience": 3, "early_stop_patience": 8},
    }
    """`mmer train --preset`: no public code of the LAMB authors was found, so "authors" has no
    values of its own and equals "paper" (docs/lamb.md); "small" = corpora of a few hundred to a few
    thousand clips: batch 16 (four times the steps of batch 64), at most 30 epochs, a quicker
    plateau and early stop (docs/training.md, "Small corpora")."""

    def __post_init__(self) -> None:
        # JSON (checkpoints, --set) turns tuples into lists: normalise, then validate.
        self.unimodal_encoders = tuple(self.unimodal_encoders)
        self.crossmodal_encoders = tuple(self.crossmodal_encoders)
        self.input_dims = dict(self.input_dims)
        self.conv_kernels = dict(self.conv_kernels)
        problems = []
        for name, mapping in (("input_dims", self.input_dims), ("conv_kernels", self.conv_kernels)):
            if sorted(mapping) != sorted(MODALITIES):
                problems.append(f"{name} must have exactly the keys {', '.join(MODALITIES)}")
        if any(int(k) < 1 or int(k) % 2 == 0 for k in self.conv_kernels.values()):
            problems.append("conv_kernels must be odd positive integers (same-length convolution)")
        bad_uni = [m for m in self.unimodal_encoders if m not in MODALITIES]
        bad_cross = [p for p in self.crossmodal_encoders if p not in CROSSMODAL_PAIRS]
        if bad_uni:
            problems.append(f"unknown unimodal_encoders {bad_uni}; choose from {', '.join(MODALITIES)}")
        if bad_cross:
            problems.append(f"unknown crossmodal_encoders {bad_cross}; choose from {', '.join(CROSSMODAL_PAIRS)}")
        if len(set(self.unimodal_encoders)) != len(self.unimodal_encoders) or len(
            set(self.crossmodal_encoders)
        ) != len(self.crossmodal_encoders):
            problems.append("encoder lists must not repeat an entry")
        if not self.unimodal_encoders and not self.crossmodal_encoders:
            problems.append("at least one unimodal or cross-modal encoder is required")
        if self.num_labels < 1:
            problems.append("num_labels must be >= 1")
        if self.d_model % self.num_heads != 0:
            problems.append(f"d_model ({self.d_model}) must be divisible by num_heads ({self.num_heads})")
        if min(self.unimodal_layers, self.crossmodal_layers, self.decoder_layers) < 1:
            problems.append("layer counts must be >= 1")
        if not (0.0 <= self.dropout < 1.0 and 0.0 <= self.attention_dropout < 1.0):
            problems.append("dropout and attention_dropout must lie in [0, 1)")
        if self.mc_samples < 2:
            problems.append("mc_samples must be >= 2 (uncertainty is a spread over passes)")
        if problems:
            raise ConfigError("LAMBConfig: " + "; ".join(problems))

    @classmethod
    def tiny(cls, num_labels: int = 3, input_dims: dict[str, int] | None = None) -> "LAMBConfig":
        """Debug-size config for tests and smoke runs: d=16, 2 heads, MLP width 32, 4 MC passes;
        every other field (dropout, encoders, training settings) keeps its default."""
        return cls(
            num_labels=num_labels,
            input_dims=dict(input_dims or {"text": 12, "audio": 8, "visual": 6}),
            d_model=16,
            num_heads=2,
            encoder_mlp=32,
            decoder_mlp=32,
            mc_samples=4,
        )


class TemporalConv(nn.Module):
    """Eq. 1: X^_alpha = Conv1D(X_alpha, kernel_alpha), same-length, into width d.

    Padded frames are zeroed first, so a valid frame next to padding sees the same zeros as at a
    sequence boundary and appending padding never changes a valid frame's output.
    """

    def __init__(self, in_dim: int, d_model: int, kernel: int) -> None:
        super().__init__()
        self.conv = nn.Conv1d(in_dim, d_model, kernel_size=kernel, padding=kernel // 2)

    def forward(self, x: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        """x: (B, T, D_in), valid: (B, T) bool -> (B, T, d)."""
        x = x * valid.unsqueeze(-1).to(x.dtype)  # (B, T, D_in), padding zeroed
        return self.conv(x.transpose(1, 2)).transpose(1, 2)  # (B, D_in, T) -> (B, d, T) -> (B, T, d)


class LabelDecoderLayer(nn.Module):
    """One layer of Eq. 6, as printed (no residual or LN around the two attentions):

        D~ = MHA(D, D, D)              label-to-label
        D^ = MHA(D~, X, X)             label-to-token, blended-token padding mask
        D' = LN(MLP(D^) + D^)

    residual=True gives the standard transformer decoder layer instead:
    D~ = LN(D + MHA(D, D, D)), D^ = LN(D~ + MHA(D~, X, X)), D' = LN(MLP(D^) + D^).
    """

    def __init__(self, d_model: int, num_heads: int, mlp_hidden: int, dropout: float, attention_dropout: float,
                 residual: bool = False) -> None:
        super().__init__()
        self.residual = residual
        if residual:  # only then: checkpoints of the printed variant keep their exact parameter set
            self.label_norm = nn.LayerNorm(d_model)
            self.token_norm = nn.LayerNorm(d_model)
        self.label_attn = nn.MultiheadAttention(d_model, num_heads, dropout=attention_dropout, batch_first=True)
        self.token_attn = nn.MultiheadAttention(d_model, num_heads, dropout=attention_dropout, batch_first=True)
        self.mlp = nn.Sequential(
            nn.Linear(d_model, mlp_hidden), nn.GELU(), nn.Dropout(dropout), nn.Linear(mlp_hidden, d_model)
        )
        self.norm = nn.LayerNorm(d_model)
        self.dropout = nn.Dropout(dropout)

    def forward(
        self,
        labels: torch.Tensor,
        tokens: torch.Tensor,
        tokens_valid: torch.Tensor,
        label_mask: torch.Tensor | None,
    ) -> torch.Tensor:
        """labels: (B, q, d); tokens: (B, N, d); tokens_valid: (B, N) bool;
        label_mask: (q, q) bool, True = may NOT attend (None = full attention) -> (B, q, d)."""
        d_tilde, _ = self.label_attn(labels, labels, labels, attn_mask=label_mask, need_weights=False)
        if self.residual:
            d_tilde = self.label_norm(labels + self.dropout(d_tilde))
        d_hat, _ = self.token_attn(
            d_tilde, tokens, tokens, key_padding_mask=key_padding_mask(tokens_valid), need_weights=False
        )
        d_hat = d_hat * has_any(tokens_valid)  # a sample without any valid token aggregates nothing
        if self.residual:
            d_hat = self.token_norm(d_tilde + self.dropout(d_hat))
        return self.norm(d_hat + self.dropout(self.mlp(d_hat)))


class PerLabelLinear(nn.Module):
    """q independent linear scorers: (B, q, d) -> (B, q), logit_j = <x_j, w_j> + b_j."""

    def __init__(self, num_labels: int, d_model: int) -> None:
        super().__init__()
        bound = 1.0 / math.sqrt(d_model)
        self.weight = nn.Parameter(torch.empty(num_labels, d_model).uniform_(-bound, bound))
        self.bias = nn.Parameter(torch.empty(num_labels).uniform_(-bound, bound))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x * self.weight).sum(dim=-1) + self.bias  # (B, q, d) -> (B, q)


def _encoder_block(config: LAMBConfig) -> AttentionBlock:
    """One layer of Eq. 3 / Eq. 4 (post-LN attention + MLP block of width d)."""
    return AttentionBlock(config.d_model, config.num_heads, config.encoder_mlp, config.dropout,
                          config.attention_dropout)


class LAMB(EmotionModel):
    """LAMB network. forward(batch) -> ModelOutput(probs (B, q), aux {"logits": (B, q)})."""

    registry_name = "lamb"

    def __init__(self, config: LAMBConfig) -> None:
        super().__init__(config)
        d, h = config.d_model, config.num_heads
        self.uni_names = [m for m in MODALITIES if m in config.unimodal_encoders]
        self.cross_pairs = [_split_pair(p) for p in CROSSMODAL_PAIRS if p in config.crossmodal_encoders]
        used = set(self.uni_names) | {m for pair in self.cross_pairs for m in pair}
        self.used_modalities = [m for m in MODALITIES if m in used]

        self.convs = nn.ModuleDict(
            {m: TemporalConv(config.input_dims[m], d, config.conv_kernels[m]) for m in self.used_modalities}
        )
        self.embed_dropout = nn.Dropout(config.dropout)
        self.unimodal = nn.ModuleDict(
            {m: nn.ModuleList(_encoder_block(config) for _ in range(config.unimodal_layers)) for m in self.uni_names}
        )
        self.crossmodal = nn.ModuleDict(
            {
                f"{q}_to_{k}": nn.ModuleList(_encoder_block(config) for _ in range(config.crossmodal_layers))
                for q, k in self.cross_pairs
            }
        )
        num_encoders = len(self.uni_names) + len(self.cross_pairs)
        if config.use_decoder:
            # W^E: one row per label, or a single row shared by every label (w/o label embeddings).
            self.label_table = nn.Embedding(config.num_labels if config.label_embeddings else 1, d)
            self.decoder = nn.ModuleList(
                LabelDecoderLayer(d, h, config.decoder_mlp, config.dropout, config.attention_dropout,
                                  config.decoder_residual)
                for _ in range(config.decoder_layers)
            )
            # Eq. 7 shares W^f across labels; with a shared label embedding every label would then get the
            # same probability, so that ablation scores each label with its own weights.
            self.classifier = nn.Linear(d, 1) if config.label_embeddings else PerLabelLinear(config.num_labels, d)
            if not config.label_correlations:
                self.register_buffer(
                    "label_mask", ~torch.eye(config.num_labels, dtype=torch.bool), persistent=False
                )
        else:
            self.classifier = nn.Linear(num_encoders * d, config.num_labels)

    # ----------------------------------------------------------------------------------------------
    def embed(self, batch: MultimodalBatch) -> dict[str, torch.Tensor]:
        """Eq. 1 (+ positions): {m: (B, T_m, d)} for every modality some encoder uses."""
        out = {}
        for m in self.used_modalities:
            x, valid = batch.features[m], batch.masks[m]
            if x.shape[-1] != self.config.input_dims[m]:
                raise ValueError(f"{m} features have dim {x.shape[-1]}, LAMB expects {self.config.input_dims[m]}")
            y = self.convs[m](x, valid)  # (B, T, d)
            if self.config.positional_encoding:
                # Position = index among the sample's valid frames, so padding never shifts it.
                positions = (valid.long().cumsum(dim=1) - 1).clamp(min=0)  # (B, T)
                table = sinusoidal_positions(x.shape[1], self.config.d_model, device=x.device)  # (T, d)
                y = y + table[positions]  # (B, T, d)
            out[m] = self.embed_dropout(y)
        return out

    def encode(self, batch: MultimodalBatch) -> list[tuple[str, torch.Tensor, torch.Tensor]]:
        """Mixed-level blending before concatenation (Eq. 3-4), in Eq. 5 order.

        Returns [(encoder name, tokens (B, T_query, d), valid (B, T_query) bool), ...]; each
        encoder's tokens inherit the mask of its query modality.
        """
        x = self.embed(batch)
        masks = batch.masks
        outputs = []
        for m in self.uni_names:
            u = x[m]
            for block in self.unimodal[m]:
                u = block(u, kv_valid=masks[m])  # Eq. 3 (self-attention over valid frames)
            outputs.append((m, u, masks[m]))
        for q, k in self.cross_pairs:
            z = x[q]
            for block in self.crossmodal[f"{q}_to_{k}"]:
                z = block(z, x[k], kv_valid=masks[k])  # Eq. 4: keys/values stay X^_beta in every layer
            outputs.append((f"{q}->{k}", z, masks[q]))
        return outputs

    def blend(self, batch: MultimodalBatch) -> tuple[torch.Tensor, torch.Tensor]:
        """Eq. 5: blended tokens (B, N, d) and their validity mask (B, N), N = sum of query lengths."""
        encoded = self.encode(batch)
        tokens = torch.cat([t for _, t, _ in encoded], dim=1)  # (B, N, d)
        valid = torch.cat([v for _, _, v in encoded], dim=1)  # (B, N)
        return tokens, valid

    def label_representations(self, tokens: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        """Eq. 6: label embeddings -> decoder -> label-specific representations (B, q, d)."""
        q = self.config.num_labels
        ids = torch.arange(q, device=tokens.device) if self.config.label_embeddings else torch.zeros(
            q, dtype=torch.long, device=tokens.device
        )
        labels = self.label_table(ids).unsqueeze(0).expand(tokens.shape[0], q, -1)  # (B, q, d)
        label_mask = None if self.config.label_correlations else self.label_mask
        for layer in self.decoder:
            labels = layer(labels, tokens, valid, label_mask)
        return labels

    def forward(self, batch: MultimodalBatch) -> ModelOutput:
        batch = self.standardize(batch)
        if self.config.use_decoder:
            tokens, valid = self.blend(batch)
            reps = self.label_representations(tokens, valid)  # (B, q, d)
            logits = self.classifier(reps)  # Eq. 7: (B, q, 1), or (B, q) per-label
            logits = logits.squeeze(-1) if logits.dim() == 3 else logits
        else:
            firsts = []
            for _, t, v in self.encode(batch):
                first = v.float().argmax(dim=1)  # (B,) index of the first valid token (0 if none)
                token = t[torch.arange(t.shape[0], device=t.device), first]  # (B, d)
                firsts.append(token * has_any(v)[:, :, 0])  # absent query modality -> zeros
            logits = self.classifier(torch.cat(firsts, dim=1))  # (B, E*d) -> (B, q)
        return ModelOutput(probs=torch.sigmoid(logits), aux={"logits": logits})

    def loss(self, output: ModelOutput, batch: MultimodalBatch) -> LossOutput:
        """Eq. 8, mean over samples and labels, targets smoothed to y(1-eps) + eps/2."""
        if batch.labels is None:
            raise ValueError("LAMB.loss needs batch.labels")
        eps = self.config.label_smoothing
        targets = batch.labels.to(output.aux["logits"].dtype) * (1.0 - eps) + eps / 2.0
        bce = F.binary_cross_entropy_with_logits(output.aux["logits"], targets)
        return LossOutput(total=bce, parts={"bce": float(bce.detach())})

    @torch.no_grad()
    def predict(self, batch: MultimodalBatch, with_uncertainty: bool = True) -> Prediction:
        """probs (B, q) = one deterministic eval-mode pass (as the paper infers); uncertainty (B, q) =
        Monte-Carlo dropout: 2 x the (population) standard deviation of the probabilities of
        `mc_samples` forward passes with dropout active (everything else in eval mode), in [0, 1]
        because a variable in [0, 1] has std <= 0.5. Dropout masks come from a generator seeded with
        `mc_seed`, so equal inputs give equal outputs. with_uncertainty=False skips the MC passes
        (uncertainty None). The module's train/eval mode is restored.
        """
        was_training = self.training
        self.eval()
        try:
            probs = self(batch).probs  # (B, q)
            uncertainty = self._mc_dropout_spread(batch) if with_uncertainty else None
        finally:
            self.train(was_training)
        return Prediction(probs=probs, uncertainty=uncertainty)

    def _mc_dropout_spread(self, batch: MultimodalBatch) -> torch.Tensor:
        """2 x std over `mc_samples` dropout passes (B, q), clamped to [0, 1]; leaves dropout active."""
        for module in self.modules():
            if isinstance(module, (nn.Dropout, nn.MultiheadAttention)):
                module.train()  # nn.MultiheadAttention drops attention weights only in train mode
        device = next(self.parameters()).device
        with _seeded_rng(self.config.mc_seed, device):
            passes = torch.stack([self(batch).probs for _ in range(self.config.mc_samples)])  # (S, B, q)
        return (2.0 * passes.std(dim=0, correction=0)).clamp(0.0, 1.0)


@contextmanager
def _seeded_rng(seed: int, device: torch.device) -> Iterator[None]:
    """Run the block with torch's RNG seeded to `seed` and restore the caller's RNG state after;
    seed < 0 leaves the global RNG untouched."""
    if seed < 0:
        yield
        return
    cuda = [device.index if device.index is not None else torch.cuda.current_device()] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=cuda):
        torch.manual_seed(seed)
        yield
