"""LDDU: Latent Distribution Decouple for Uncertainty-aware multimodal multi-label emotion
recognition (paper text in shared/papers/lddu.txt; equation numbers below refer to it).

Pipeline, per batch of B samples, q labels, modalities in `MODALITIES` order (text, audio, visual):

1. Uni-modal extractor (Sec. 3.2): per modality, LayerNorm + linear projection of the input frames
   to `hidden`, sinusoidal positions, `*_layers` masked Transformer layers -> O^m (B, T_m, hidden).
2. Emotion space modelling (Eq. 1-2): q learnable emotion embeddings L; per modality
   a_ij = softmax_j(Proj(l_i)^T Proj(o_j) / sqrt(proj_dim)) over the valid frames and
   Z^m = Linear(A^m Proj(O^m)) -> (B, q, d_z); zero for an absent modality.
3. Info classifier (Eq. 3): one MLP shared by the labels on F_dir,i = [Z^t_i, Z^a_i, Z^v_i]
   (B, q, 3*d_z) -> one logit per label -> y_dir.
4. Disentangled distributions (Sec. 3.3.2): per (modality, label) an MLP encoder (or per modality,
   shared by the labels: `encoder_per_label=False`) and two linear heads -> mu and
   sigma = softplus(.) + SIGMA_FLOOR, each (B, 3, q, latent_dim).
5. Mean-branch / variance-branch classifiers (Sec. 3.4.1): per label an MLP on the concatenation
   over modalities of mu (resp. sigma) (B, q, 3*latent_dim) -> y_mu, y_sigma; fused by a gate
   that is valid at inference (`gate`, see LDDUConfig) -> probs.
6. Loss (Eq. 16): L_cls + lambda_ocl*L_ocl + beta_scl*L_scl + gamma_dir*L_dir, see `LDDU.loss`.

Per-label uncertainty at inference comes from the latent variances (see `LDDU.label_uncertainty`).
Every ablation of the paper's Table 3 is a config setting (docs/lddu.md maps rows to flags).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import ClassVar

import torch
import torch.nn.functional as F
import torch.utils.checkpoint
from torch import nn

from mmer.models.attention import AttentionBlock, has_any, key_padding_mask, sinusoidal_positions
from mmer.models.base import EmotionModel
from mmer.models.batch import LossOutput, ModelOutput, MultimodalBatch, Prediction
from mmer.models.config import ConfigError, OptimSettings
from mmer.core.feature_spec import MODALITIES
from mmer.models.lddu_losses import (
    OCL_SCORES,
    CorrectnessTracker,
    DistributionQueue,
    gather_across_ranks,
    ordinality_loss,
    smooth_targets,
    supcon_loss,
)

SIGMA_FLOOR = 1e-4
"""Lower bound added to softplus so every latent standard deviation is strictly positive (latent units)."""

GATES: tuple[str, ...] = ("info_prob", "confidence", "mean_only", "variance_only")
SCL_REPRESENTATIONS: tuple[str, ...] = ("both", "mean", "variance")
SCL_REDUCTIONS: tuple[str, ...] = ("sum", "mean")
CORRECTNESS_RULES: tuple[str, ...] = ("label_share", "exact")
NUM_MODALITIES = len(MODALITIES)


@dataclass
class LDDUConfig(OptimSettings):
    """Every LDDU hyper-parameter. Defaults follow the paper (Sec. 4.1, App. A.1) where it states
    a value; the others are documented choices (docs/lddu.md also lists the authors' code values)."""

    num_labels: int = 6  # q (CMU-MOSEI: 6, M3ED: 7)
    input_dims: dict[str, int] = field(default_factory=lambda: {"text": 768, "audio": 74, "visual": 35})
    # Uni-modal extractors (App. A.1)
    hidden: int = 256  # width of the encoder outputs O^m ("feature Y")
    text_layers: int = 3  # Transformer layers n_t
    audio_layers: int = 3  # n_a
    visual_layers: int = 3  # n_v
    heads: int = 8  # attention heads per encoder layer (authors' code)
    ff_dim: int = 512  # hidden width of each encoder layer's MLP (not stated; 2*hidden)
    dropout: float = 0.3  # encoder, pooling and classifier dropout (authors' code; paper silent)
    attention_dropout: float = 0.0  # dropout on encoder attention weights (slow on CPU; off by default)
    activation_checkpointing: bool = False  # training memory: keep only each encoder layer's input and
    # recompute the layer in the backward pass (same numbers, dropout included; about a third more compute)
    # Emotion space modelling (Eq. 1-2)
    use_emotion_space: bool = True  # False = Table 3 (1) "w/o ESM": per-label MLP attention pooling
    proj_dim: int = 256  # width of the Proj layers of Eq. 1-2
    d_z: int = 128  # width d_h of the label-related features Z^m ("feature Z")
    # Distributions and classifiers
    latent_dim: int = 64  # width of each centre mu and each variance vector sigma
    encoder_hidden: int = 128  # hidden width of the distribution encoder MLP
    encoder_per_label: bool = True  # one encoder per (modality, label); False: per modality (authors)
    classifier_hidden: int = 128  # hidden width of the info / mean / variance classifier MLPs
    gate: str = "info_prob"  # fusion of y_mu and y_sigma, one of GATES (docs/lddu.md)
    detach_gate: bool = False  # True: L_cls does not train the info classifier through the gate
    # Contrastive learning (Eq. 4-7)
    queue_size: int = 8192  # s_q, past distributions kept for SupCon; 0 = Table 3 (4) "w/o queue"
    temperature: float = 0.07  # tau of Eq. 5
    scl_representation: str = "both"  # "both" (Eq. 4) | "mean" | "variance": Table 3 (5)/(6)
    scl_renormalise: bool = False  # divide e of Eq. 4 by sqrt(2) so z is a cosine (authors' code)
    scl_absent_labels: bool = False  # True: absent labels' distributions are anchors too, 6q classes (authors' code)
    scl_reduction: str = "mean"  # "mean" over anchors (authors' code) | "sum" (Eq. 7 as printed; see docs)
    # Ordinality calibration (Eq. 10-15)
    ocl_pairs: tuple[str, ...] = ("DR", "SR")  # pairs of S, D, R; Table 3 (8)-(10) use one pair
    correctness: str = "label_share"  # what counts as a correct info prediction for r_i
    # Loss weights (Eq. 16)
    lambda_ocl: float = 0.1
    beta_scl: float = 0.8
    gamma_dir: float = 0.1
    # Uncertainty at inference
    uncertainty_momentum: float = 0.99  # EMA momentum of the per-label reference variance norm
    # Training (Sec. 4.1, App. A.1; OptimSettings documents each field)
    lr: float = 2e-5
    batch_size: int = 128
    epochs: int = 30
    optimizer: str = "adam"
    scheduler: str = "cosine_warmup"
    warmup_ratio: float = 0.1

    PRESETS: ClassVar[dict[str, dict[str, object]]] = {
        "paper": {},
        "authors": {
            "lr": 2e-4, "batch_size": 64, "latent_dim": 128,
            "optimizer": "adamw", "weight_decay": 0.01, "grad_clip": 1.0,
            "gamma_dir": 0.3, "beta_scl": 1.0, "lambda_ocl": 0.3,
            "encoder_per_label": False, "scl_absent_labels": True, "scl_renormalise": True,
            "threshold_mode": "fixed", "threshold": 0.21,
        },
        "small": {  # a few hundred to a few thousand clips (docs/training.md, "Small corpora")
            "lr": 1e-3, "batch_size": 16, "epochs": 30, "scheduler": "cosine_warmup", "warmup_ratio": 0.1,
            "early_stop_patience": 8, "queue_size": 256, "beta_scl": 0.1,
            "hidden": 64, "text_layers": 1, "audio_layers": 1, "visual_layers": 1, "heads": 4, "ff_dim": 128,
            "dropout": 0.1, "proj_dim": 64, "d_z": 32, "latent_dim": 16, "encoder_hidden": 32,
            "classifier_hidden": 64,
        },
    }
    """`mmer train --preset`: "paper" = the defaults above; "authors" = the LDDU authors' public code
    (github.com/201983290498/lddu_mmer) where it differs, each value's source in PRESET_SOURCES;
    "small" = many more, larger steps (batch 16, lr 1e-3: 20 steps per epoch on 320 clips where batch
    128 gives 3), a contrastive queue no larger than such a training set (8192 entries would hold
    dozens of stale copies of every clip), a smaller contrastive weight and the compact network of
    the shipped defaults (recipes/train_default_models.py)."""
    PRESET_SOURCES: ClassVar[dict[str, str]] = {
        "lr": "train.sh (--lr 0.0002)",
        "batch_size": "train.sh (--batch_size 64)",
        "latent_dim": "train.py (--latent_size 128)",
        "optimizer": "train.py prep_optimizer (BertAdam: decoupled weight decay)",
        "weight_decay": "train.py prep_optimizer (weight_decay=0.01)",
        "grad_clip": "train.py train_epoch (clip_grad_norm_ 1.0) and prep_optimizer (max_grad_norm=1.0)",
        "gamma_dir": "train.sh (--cml 0.3, weight of the info-classifier BCE)",
        "beta_scl": "train.sh (--cdl 1, weight of the SupCon loss)",
        "lambda_ocl": "train.sh (--crl 0.3, weight of the code's own ordinality loss)",
        "encoder_per_label": "src/models/myModels.py (one LatentEncoder per modality)",
        "scl_absent_labels": "src/models/myModels.py get_cl_labels (a class per label, present and absent)",
        "scl_renormalise": "src/models/myModels.py SupConLoss (similarity / 2.0)",
        "threshold_mode": "train.py (getBinaryTensor with args.threshold at test time, no tuning)",
        "threshold": "train.py (--threshold 0.21)",
    }

    def __post_init__(self) -> None:
        # JSON (checkpoints, --set) turns tuples into lists; a bare "SR" string means one pair.
        if isinstance(self.ocl_pairs, str):
            self.ocl_pairs = tuple(p.strip() for p in self.ocl_pairs.split(",") if p.strip())
        self.ocl_pairs = tuple(self.ocl_pairs)
        self.input_dims = dict(self.input_dims)
        problems = []
        if sorted(self.input_dims) != sorted(MODALITIES):
            problems.append(f"input_dims must have exactly the keys {', '.join(MODALITIES)}")
        if self.num_labels < 1:
            problems.append("num_labels must be >= 1")
        if self.hidden % self.heads != 0:
            problems.append(f"hidden ({self.hidden}) must be divisible by heads ({self.heads})")
        if min(self.text_layers, self.audio_layers, self.visual_layers) < 0:
            problems.append("layer counts must be >= 0")
        if not (0.0 <= self.dropout < 1.0 and 0.0 <= self.attention_dropout < 1.0):
            problems.append("dropout and attention_dropout must lie in [0, 1)")
        if self.gate not in GATES:
            problems.append(f"gate {self.gate!r}: choose from {', '.join(GATES)}")
        if self.scl_representation not in SCL_REPRESENTATIONS:
            problems.append(f"scl_representation {self.scl_representation!r}: "
                            f"choose from {', '.join(SCL_REPRESENTATIONS)}")
        if self.scl_reduction not in SCL_REDUCTIONS:
            problems.append(f"scl_reduction {self.scl_reduction!r}: choose from {', '.join(SCL_REDUCTIONS)}")
        if self.correctness not in CORRECTNESS_RULES:
            problems.append(f"correctness {self.correctness!r}: choose from {', '.join(CORRECTNESS_RULES)}")
        for pair in self.ocl_pairs:
            if len(pair) != 2 or pair[0] == pair[1] or any(c not in OCL_SCORES for c in pair):
                problems.append(f"ocl_pairs entry {pair!r}: two different letters of S, D, R (e.g. DR)")
        if self.queue_size < 0:
            problems.append("queue_size must be >= 0")
        if self.temperature <= 0:
            problems.append("temperature must be > 0")
        if not 0.0 <= self.uncertainty_momentum < 1.0:
            problems.append("uncertainty_momentum must lie in [0, 1)")
        if min(self.hidden, self.proj_dim, self.d_z, self.latent_dim, self.encoder_hidden,
               self.classifier_hidden, self.ff_dim) < 1:
            problems.append("all widths must be >= 1")
        if problems:
            raise ConfigError("LDDUConfig: " + "; ".join(problems))

    @classmethod
    def tiny(cls, num_labels: int = 3, input_dims: dict[str, int] | None = None) -> "LDDUConfig":
        """Debug-size config for tests: width 16, 1 layer per modality, queue of 32, no dropout."""
        return cls(
            num_labels=num_labels,
            input_dims=dict(input_dims or {"text": 12, "audio": 8, "visual": 6}),
            hidden=16,
            text_layers=1,
            audio_layers=1,
            visual_layers=1,
            heads=2,
            ff_dim=32,
            dropout=0.0,
            proj_dim=16,
            d_z=12,
            latent_dim=8,
            encoder_hidden=12,
            classifier_hidden=16,
            queue_size=32,
            lr=1e-3,
            batch_size=8,
        )


class GroupedLinear(nn.Module):
    """Independent linear layers for a grid of groups, applied in one einsum.

    groups: e.g. (3, q) for one layer per (modality, label), or (3, 1) for one layer per modality
    shared by the labels (a group axis of size 1 is shared along that axis of the input).
    Input (B, *G, in_dim) -> output (B, *G, out_dim), G of the input's size. Initialised like
    nn.Linear (uniform +-1/sqrt(in_dim)).
    """

    def __init__(self, groups: tuple[int, ...], in_dim: int, out_dim: int) -> None:
        super().__init__()
        bound = 1.0 / math.sqrt(in_dim)
        self.weight = nn.Parameter(torch.empty(*groups, in_dim, out_dim).uniform_(-bound, bound))
        self.bias = nn.Parameter(torch.empty(*groups, out_dim).uniform_(-bound, bound))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # (B, G..., i) x (G..., i, o) -> (B, G..., o); groups flattened to one axis for einsum.
        batch, groups, in_dim = x.shape[0], x.shape[1:-1], x.shape[-1]
        weight = self.weight.expand(*groups, in_dim, self.weight.shape[-1])  # shared axes broadcast
        flat_x = x.reshape(batch, -1, in_dim)  # (B, G, i)
        flat_w = weight.reshape(-1, in_dim, weight.shape[-1])  # (G, i, o)
        out = torch.einsum("bgi,gio->bgo", flat_x, flat_w)
        return out.reshape(batch, *groups, -1) + self.bias


class ModalityEncoder(nn.Module):
    """Uni-modal extractor: (B, T, D_in) frames + (B, T) valid mask -> O (B, T, hidden).

    checkpointing: while training with gradients, each layer keeps only its input (B, T, hidden)
    for the backward pass and recomputes the rest there (torch.utils.checkpoint, RNG state
    restored so dropout draws the same masks): the same outputs and gradients in far less memory.
    """

    def __init__(self, in_dim: int, hidden: int, layers: int, heads: int, ff_dim: int, dropout: float,
                 attention_dropout: float, checkpointing: bool = False) -> None:
        super().__init__()
        self.checkpointing = checkpointing
        self.input_norm = nn.LayerNorm(in_dim)
        self.project = nn.Linear(in_dim, hidden)
        self.dropout = nn.Dropout(dropout)
        self.layers = nn.ModuleList(
            AttentionBlock(hidden, heads, ff_dim, dropout, attention_dropout) for _ in range(layers)
        )

    def forward(self, x: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        h = self.project(self.input_norm(x))  # (B, T, hidden)
        h = self.dropout(h + sinusoidal_positions(h.shape[1], h.shape[2], h.device))
        recompute = self.checkpointing and self.training and torch.is_grad_enabled()
        for layer in self.layers:
            if recompute:
                h = torch.utils.checkpoint.checkpoint(layer, h, None, valid, use_reentrant=False)
            else:
                h = layer(h, kv_valid=valid)
        return h


class LabelPooling(nn.Module):
    """Per-label attention pooling of one modality's frames (Eq. 1-2): O (B, T, hidden) -> Z (B, q, d_z).

    With emotion queries (ESM): scores_ij = Proj_q(l_i)^T Proj(o_j) / sqrt(proj_dim), where the
    emotion embeddings L (q, hidden) are shared by all modalities and passed in.
    Without (Table 3 (1)): scores_j = MLP(Proj(o_j)) in R^q, i.e. MLP-based attention with no
    trainable label features. In both cases a = softmax over valid frames and
    Z = Linear(A Proj(O)); Z is zero for a sample whose modality is absent.
    """

    def __init__(self, hidden: int, proj_dim: int, d_z: int, num_labels: int, use_emotion_space: bool,
                 dropout: float) -> None:
        super().__init__()
        self.proj_frames = nn.Linear(hidden, proj_dim)
        if use_emotion_space:
            self.proj_labels = nn.Linear(hidden, proj_dim)
        else:
            self.score_mlp = nn.Sequential(nn.Linear(proj_dim, proj_dim), nn.Tanh(), nn.Linear(proj_dim, num_labels))
        self.use_emotion_space = use_emotion_space
        self.scale = 1.0 / math.sqrt(proj_dim)
        self.out = nn.Linear(proj_dim, d_z)
        self.dropout = nn.Dropout(dropout)

    def forward(self, o: torch.Tensor, valid: torch.Tensor, emotions: torch.Tensor | None) -> torch.Tensor:
        frames = self.proj_frames(o)  # (B, T, p)
        if self.use_emotion_space:
            queries = self.proj_labels(emotions)  # (q, p)
            scores = torch.einsum("qp,btp->bqt", queries, frames) * self.scale  # (B, q, T)
        else:
            scores = self.score_mlp(frames).transpose(1, 2)  # (B, T, q) -> (B, q, T)
        ignore = key_padding_mask(valid).unsqueeze(1)  # (B, 1, T); empty rows keep frame 0
        attn = scores.masked_fill(ignore, float("-inf")).softmax(dim=-1)  # (B, q, T)
        pooled = self.dropout(attn @ frames) * has_any(valid)  # (B, q, p), zero if modality absent
        return self.out(pooled) * has_any(valid)  # (B, q, d_z)


class PerLabelMLP(nn.Module):
    """Separate two-layer MLP per label, vectorised: (B, q, in_dim) -> (B, q) logits."""

    def __init__(self, num_labels: int, in_dim: int, hidden: int, dropout: float) -> None:
        super().__init__()
        self.first = GroupedLinear((num_labels,), in_dim, hidden)
        self.second = GroupedLinear((num_labels,), hidden, 1)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.second(self.dropout(F.relu(self.first(x)))).squeeze(-1)


class LDDU(EmotionModel):
    """LDDU network. forward(batch) -> ModelOutput(probs (B, q), aux); see the module docstring."""

    registry_name = "lddu"

    def __init__(self, config: LDDUConfig) -> None:
        super().__init__(config)
        c = config
        q = c.num_labels
        layers = {"text": c.text_layers, "audio": c.audio_layers, "visual": c.visual_layers}
        self.encoders = nn.ModuleDict({
            m: ModalityEncoder(c.input_dims[m], c.hidden, layers[m], c.heads, c.ff_dim, c.dropout, c.attention_dropout,
                               c.activation_checkpointing)
            for m in MODALITIES
        })
        self.emotions = nn.Parameter(torch.randn(q, c.hidden) * c.hidden ** -0.5) if c.use_emotion_space else None
        self.pooling = nn.ModuleDict({
            m: LabelPooling(c.hidden, c.proj_dim, c.d_z, q, c.use_emotion_space, c.dropout) for m in MODALITIES
        })
        self.info_classifier = nn.Sequential(
            nn.Linear(NUM_MODALITIES * c.d_z, c.classifier_hidden), nn.ReLU(), nn.Dropout(c.dropout),
            nn.Linear(c.classifier_hidden, 1),
        )
        grid = (NUM_MODALITIES, q if c.encoder_per_label else 1)
        self.dist_hidden = GroupedLinear(grid, c.d_z, c.encoder_hidden)
        self.dist_mu = GroupedLinear(grid, c.encoder_hidden, c.latent_dim)
        self.dist_sigma = GroupedLinear(grid, c.encoder_hidden, c.latent_dim)
        self.mean_classifier = PerLabelMLP(q, NUM_MODALITIES * c.latent_dim, c.classifier_hidden, c.dropout)
        self.variance_classifier = PerLabelMLP(q, NUM_MODALITIES * c.latent_dim, c.classifier_hidden, c.dropout)
        # Class id of the (modality m, label i) distribution for SupCon: m*q + i (absent labels,
        # with scl_absent_labels: 3q + m*q + i).
        self.register_buffer("class_ids", torch.arange(NUM_MODALITIES * q).view(NUM_MODALITIES, q), persistent=False)
        rep_dim = 2 * c.latent_dim if c.scl_representation == "both" else c.latent_dim
        self.queue = DistributionQueue(c.queue_size, rep_dim)
        self.tracker = CorrectnessTracker()
        # Per-label reference variance norm (EMA over training batches); part of the checkpoint.
        self.register_buffer("sigma_ref", torch.ones(q))
        self.register_buffer("sigma_ref_updates", torch.zeros((), dtype=torch.long))

    # ------------------------------------------------------------------ forward
    def forward(self, batch: MultimodalBatch) -> ModelOutput:
        """probs (B, q) = gated fusion of y_mu and y_sigma. aux holds, for the loss and for analysis:
        dir_logits / y_dir (B, q) info classifier, y_mu / y_sigma / gate (B, q),
        mu / sigma (B, 3, q, latent_dim) in MODALITIES order, present (B, 3) bool."""
        batch = self.standardize(batch)
        zs, present = [], []
        for m in MODALITIES:
            x, valid = batch.features[m], batch.masks[m].bool()
            if x.shape[-1] != self.config.input_dims[m]:
                raise ValueError(f"{m} features have dimension {x.shape[-1]}, "
                                 f"the model expects {self.config.input_dims[m]}")
            o = self.encoders[m](x, valid)  # (B, T_m, hidden)
            zs.append(self.pooling[m](o, valid, self.emotions))  # (B, q, d_z)
            present.append(valid.any(dim=1))
        z = torch.stack(zs, dim=1)  # (B, 3, q, d_z)
        present_mask = torch.stack(present, dim=1)  # (B, 3)
        batch_size, _, q, _ = z.shape

        f_dir = z.transpose(1, 2).reshape(batch_size, q, -1)  # (B, q, 3*d_z) = [Z^t_i, Z^a_i, Z^v_i]
        dir_logits = self.info_classifier(f_dir).squeeze(-1)  # (B, q)
        y_dir = torch.sigmoid(dir_logits)

        h = F.relu(self.dist_hidden(z))  # (B, 3, q, encoder_hidden)
        mu = self.dist_mu(h)  # (B, 3, q, L)
        sigma = F.softplus(self.dist_sigma(h)) + SIGMA_FLOOR  # (B, 3, q, L), > 0

        y_mu = torch.sigmoid(self.mean_classifier(mu.transpose(1, 2).reshape(batch_size, q, -1)))  # (B, q)
        y_sigma = torch.sigmoid(self.variance_classifier(sigma.transpose(1, 2).reshape(batch_size, q, -1)))
        gate = self._gate(y_dir.detach() if self.config.detach_gate else y_dir)
        probs = gate * y_mu + (1.0 - gate) * y_sigma
        aux = {"dir_logits": dir_logits, "y_dir": y_dir, "y_mu": y_mu, "y_sigma": y_sigma, "gate": gate,
               "mu": mu, "sigma": sigma, "present": present_mask}
        return ModelOutput(probs=probs, aux=aux)

    def _gate(self, y_dir: torch.Tensor) -> torch.Tensor:
        """Weight of y_mu in the fusion (B, q); y_sigma gets 1 - weight."""
        gate = self.config.gate
        if gate == "info_prob":  # authors' code: y = y_mu*y_dir + y_sigma*(1 - y_dir)
            return y_dir
        if gate == "confidence":  # info classifier's confidence: low uncertainty -> centre features
            return (2.0 * y_dir - 1.0).abs()
        if gate == "mean_only":
            return torch.ones_like(y_dir)
        return torch.zeros_like(y_dir)  # "variance_only"

    # ------------------------------------------------------------------ loss
    def loss(self, output: ModelOutput, batch: MultimodalBatch) -> LossOutput:
        """Eq. 16: L_cls + lambda_ocl*L_ocl + beta_scl*L_scl + gamma_dir*L_dir.

        L_cls = BCE(probs, y) and L_dir = BCE(y_dir, y), both averaged over samples and labels
        (targets label-smoothed when config.label_smoothing > 0). L_scl: `supcon_loss` over the
        present modalities' distributions of the positive labels (of every label with
        `scl_absent_labels`), against the batch and the queue.
        L_ocl: `ordinality_loss` of S, D, R (see `ordinality_scores`). L_scl and L_ocl are not
        computed when their weight is 0 (or ocl_pairs is empty) and then report 0 in `parts`.

        In training mode this also updates the training state: the correctness tracker (with
        batch.index, before L_ocl reads it), then, after the loss, the queue and the reference
        variance norms used by `label_uncertainty`.
        """
        c = self.config
        aux = output.aux
        labels = batch.labels.to(output.probs.dtype)
        targets = smooth_targets(labels, c.label_smoothing)
        l_cls = F.binary_cross_entropy(output.probs, targets)
        l_dir = F.binary_cross_entropy_with_logits(aux["dir_logits"], targets)
        zero = output.probs.sum() * 0.0
        l_scl = self._contrastive(aux["mu"], aux["sigma"], aux["present"], labels) if c.beta_scl else zero
        if self.training and batch.index is not None:
            correct = self._correctness(aux["y_dir"], labels)
            self.tracker.update(gather_across_ranks(batch.index), gather_across_ranks(correct))
        l_ocl = zero
        if c.lambda_ocl and c.ocl_pairs:
            scores, valid = self.ordinality_scores(aux["y_dir"], aux["sigma"], aux["present"], labels, batch.index)
            l_ocl = ordinality_loss(scores, valid, c.ocl_pairs)
        if self.training:
            self._update_training_state(aux, labels)
        total = l_cls + c.lambda_ocl * l_ocl + c.beta_scl * l_scl + c.gamma_dir * l_dir
        parts = {"cls": float(l_cls.detach()), "ocl": float(l_ocl.detach()), "scl": float(l_scl.detach()),
                 "dir": float(l_dir.detach()),
                 "total": float(total.detach())}
        return LossOutput(total=total, parts=parts)

    def scl_representation(self, mu: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        """Eq. 4: e = [mu/|mu|, sigma/|sigma|] (last axis), or one half for the ablations.
        With scl_renormalise the concatenation is divided by sqrt(2) (unit norm, z a cosine)."""
        rep = self.config.scl_representation
        if rep == "mean":
            return F.normalize(mu, dim=-1)
        if rep == "variance":
            return F.normalize(sigma, dim=-1)
        e = torch.cat([F.normalize(mu, dim=-1), F.normalize(sigma, dim=-1)], dim=-1)
        return e / math.sqrt(2.0) if self.config.scl_renormalise else e

    def _contrastive_anchors(self, mu, sigma, present, labels) -> tuple[torch.Tensor, torch.Tensor]:
        """Representations (A, D) and class ids (A,) of the distributions that are samples of
        their class: present modality and positive label (paper; class m*q + i), or, with
        `scl_absent_labels`, every label of a present modality, an absent label i of modality m
        being its own class 3q + m*q + i (authors' code)."""
        e = self.scl_representation(mu, sigma)  # (B, 3, q, D)
        positive = (labels > 0.5).unsqueeze(1)  # (B, 1, q)
        classes = self.class_ids.unsqueeze(0).expand(e.shape[0], -1, -1)  # (B, 3, q)
        if self.config.scl_absent_labels:
            chosen = present.unsqueeze(2).expand_as(classes)  # (B, 3, q)
            classes = torch.where(positive, classes, classes + self.class_ids.numel())
        else:
            chosen = positive & present.unsqueeze(2)  # (B, 3, q)
        return e[chosen], classes[chosen]

    def _contrastive(self, mu, sigma, present, labels) -> torch.Tensor:
        anchors, classes = self._contrastive_anchors(mu, sigma, present, labels)
        bank = bank_classes = None
        if self.queue.capacity > 0:
            bank, bank_classes = self.queue.feats, self.queue.classes
        return supcon_loss(anchors, classes, bank, bank_classes, self.config.temperature, self.config.scl_reduction)

    def ordinality_scores(
        self, y_dir: torch.Tensor, sigma: torch.Tensor, present: torch.Tensor, labels: torch.Tensor,
        index: torch.Tensor | None = None,
    ) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        """Per-sample vectors of Eq. 12-14 and which samples take part.

        S (B,) = 1/||sigma_i||_2 over the present modalities' variance vectors of all labels,
                 rescaled by sqrt(3/n_present) so a missing modality does not look like low variance.
        D (B,) = 1 - d_i, d_i = mean absolute error between y_dir and y over the labels.
        R (B,) = r_i: in training mode with `index`, the tracker's running share of correct
                 info-classifier predictions (`loss` records the current step first); otherwise
                 this step's correctness alone (no history exists for validation samples).
        valid (B,) bool = at least one modality present (S undefined otherwise).
        """
        norms = self._present_norm(sigma, present, dims=(1, 2, 3))  # (B,)
        valid = present.any(dim=1)
        s = 1.0 / norms.clamp(min=SIGMA_FLOOR)
        d = 1.0 - (y_dir - labels).abs().mean(dim=1)
        if self.training and index is not None:
            r = self.tracker.share(index).to(y_dir.dtype)
        else:
            r = self._correctness(y_dir, labels)
        return {"S": s, "D": d, "R": r}, valid

    def _correctness(self, y_dir: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """(B,) correctness of the info classifier at threshold 0.5: share of right labels
        ("label_share") or 1 when every label is right ("exact")."""
        right = ((y_dir.detach() > 0.5) == (labels > 0.5)).to(y_dir.dtype)  # (B, q)
        return right.mean(dim=1) if self.config.correctness == "label_share" else right.min(dim=1).values

    @staticmethod
    def _present_norm(sigma: torch.Tensor, present: torch.Tensor, dims: tuple[int, ...]) -> torch.Tensor:
        """L2 norm of sigma (B, 3, q, L) over the present modalities, summed over `dims`
        (which include the modality axis 1 and the latent axis 3), rescaled by sqrt(3/n_present)
        to the scale of a sample with every modality present. 0 where no modality is present."""
        weight = present.to(sigma.dtype)[:, :, None, None]  # (B, 3, 1, 1)
        sq = (sigma.square() * weight).sum(dim=dims)  # (B,) or (B, q)
        n_present = present.sum(dim=1).to(sigma.dtype)  # (B,)
        scale = NUM_MODALITIES / n_present.clamp(min=1.0)
        some = n_present > 0
        if sq.dim() == 2:
            scale, some = scale.unsqueeze(1), some.unsqueeze(1)
        # sqrt'(0) is infinite: take the root of 1 where nothing is present so gradients stay finite.
        root = torch.where(some, sq * scale, torch.ones_like(sq)).sqrt()
        return torch.where(some, root, torch.zeros_like(root))

    @torch.no_grad()
    def _update_training_state(self, aux: dict[str, torch.Tensor], labels: torch.Tensor) -> None:
        """After a training step's loss: enqueue its distributions, update the reference norms
        (with every rank's rows under torch.distributed, see `gather_across_ranks`)."""
        if self.config.beta_scl and self.queue.capacity > 0:
            anchors, classes = self._contrastive_anchors(aux["mu"], aux["sigma"], aux["present"], labels)
            self.queue.enqueue(gather_across_ranks(anchors), gather_across_ranks(classes))
        per_label = self._present_norm(aux["sigma"], aux["present"], dims=(1, 3))  # (B, q)
        per_label = gather_across_ranks(per_label[aux["present"].any(dim=1)])  # (B', q), all ranks
        if per_label.shape[0] > 0:
            batch_ref = per_label.mean(dim=0)  # (q,)
            steps = int(self.sigma_ref_updates)
            momentum = min(self.config.uncertainty_momentum, steps / (steps + 1.0))  # first step: copy
            self.sigma_ref.mul_(momentum).add_((1.0 - momentum) * batch_ref)
            self.sigma_ref_updates.add_(1)

    # ------------------------------------------------------------------ inference
    def label_uncertainty(self, sigma: torch.Tensor, present: torch.Tensor) -> torch.Tensor:
        """(B, q) uncertainty in [0, 1]: u = n / (n + ref), n = ||sigma_label|| over the present
        modalities (rescaled to three modalities), ref = `sigma_ref` (EMA of n over training
        batches), so u = 0.5 at the typical training variance and grows with sigma.
        A sample with no modality at all gets u = 1."""
        n = self._present_norm(sigma, present, dims=(1, 3))  # (B, q)
        u = n / (n + self.sigma_ref.clamp(min=SIGMA_FLOOR))
        return torch.where(present.any(dim=1, keepdim=True), u, torch.ones_like(u))

    @torch.no_grad()
    def predict(self, batch: MultimodalBatch, with_uncertainty: bool = True) -> Prediction:
        """Eval-mode probabilities (B, q) and per-label uncertainty (B, q) from the latent variances
        (the same pass gives both, so the uncertainty is always returned)."""
        was_training = self.training
        self.eval()
        try:
            output = self(batch)
            uncertainty = self.label_uncertainty(output.aux["sigma"], output.aux["present"])
        finally:
            self.train(was_training)
        return Prediction(probs=output.probs, uncertainty=uncertainty)

    # ------------------------------------------------------------------ training state
    def prepare_training(self, num_train_samples: int) -> None:
        """Size the correctness tracker for the training split (indices 0..N-1), clearing it."""
        self.tracker.resize(num_train_samples)

    def training_state(self) -> dict[str, torch.Tensor]:
        """Correctness history and SupCon queue (not needed for inference, so not in state_dict)."""
        state = {f"tracker.{k}": v for k, v in self.tracker.state().items()}
        state.update({f"queue.{k}": v for k, v in self.queue.state().items()})
        return state

    def load_training_state(self, state: dict[str, torch.Tensor]) -> None:
        missing = [k for k in ("tracker.correct", "tracker.seen", "queue.feats", "queue.classes", "queue.ptr")
                   if k not in state]
        if missing:
            raise ValueError(f"LDDU training state lacks {', '.join(missing)}")
        self.tracker.load_state({"correct": state["tracker.correct"], "seen": state["tracker.seen"]})
        self.queue.load_state({k: state[f"queue.{k}"] for k in ("feats", "classes", "ptr")})
