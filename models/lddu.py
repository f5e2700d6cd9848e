"""LDDU: Latent Distribution Decouple for Uncertainty-aware multimodal multi-label emotion
recognition (paper text in shared/papers/lddu.txt; equation numbers below refer to it).

Pipeline, per batch of B samples, q labels, modalities in `MODALITIES` order (text, audio, visual):

1. Uni-modal extractor (Sec. 3.2): per modality, LayerNorm + linear projection of the input frames
   to `hidden`, sinusoidal (or learned) positions, `*_layers` masked Transformer layers
   -> O^m (B, T_m, hidden).
2. Emotion space modelling (Eq. 1-2): q learnable emotion embeddings L; per modality
   a_ij = softmax_j(Proj(l_i)^T Proj(o_j) / sqrt(proj_dim)) over the valid frames and
   Z^m = Linear(A^m Proj(O^m)) -> (B, q, d_z); zero for an absent modality.
3. Info classifier (Eq. 3): one MLP shared by the labels on F_dir,i = [Z^t_i, Z^a_i, Z^v_i]
   (B, q, 3*d_z) -> one logit per label -> y_dir.
4. Disentangled distributions (Sec. 3.3.2): per (modality, label) an MLP encoder (or per modality,
   shared by the labels: `encoder_per_label=False`) and two linear heads -> mu and
   sigma = softplus(.) + SIGMA_FLOOR (or exp(./2) + SIGMA_FLOOR), each (B, 3, q, latent_dim).
5. Mean-branch / variance-branch classifiers (Sec. 3.4.1): per label an MLP on the concatenation
   over modalities of mu (resp. sigma) (B, q, 3*latent_dim) -> y_mu, y_sigma; fused by a gate
   that is valid at inference (`gate`, see LDDUConfig) -> probs.
6. Loss (Eq. 16): L_cls + lambda_ocl*L_ocl + beta_scl*L_scl + gamma_dir*L_dir, see `LDDU.loss`.

Per-label uncertainty at inference comes from the latent variances (see `LDDU.label_uncertainty`).
Every ablation of the paper's Table 3 is a config setting (docs/lddu.md maps rows to flags), and so
is every detail in which the authors' public code differs (`LDDUConfig.PRESETS["authors"]`).
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
    SUPCON_REDUCTIONS,
    CorrectnessTracker,
    DistributionQueue,
    authors_code_ordinality_loss,
    gather_across_ranks,
    ordinality_loss,
    smooth_targets,
    supcon_loss,
)

SIGMA_FLOOR = 1e-4
"""Lower bound added to softplus so every latent standard deviation is strictly positive (latent units)."""

GATES: tuple[str, ...] = ("info_prob", "confidence", "mean_only", "variance_only")
SCL_REPRESENTATIONS: tuple[str, ...] = ("both", "mean", "variance")
SCL_REDUCTIONS: tuple[str, ...] = SUPCON_REDUCTIONS
CORRECTNESS_RULES: tuple[str, ...] = ("label_share", "exact")
POSITIONS: tuple[str, ...] = ("sinusoidal", "learned")
SIGMA_ACTIVATIONS: tuple[str, ...] = ("softplus", "exp")
OCL_VARIANTS: tuple[str, ...] = ("paper", "authors_code")
INIT_SCHEMES: tuple[str, ...] = ("torch", "authors")
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
    dropout: float = 0.3  # encoder dropout: input embedding, residual branches, MLP (paper silent)
    attention_dropout: float = 0.0  # dropout on encoder attention weights (slow on CPU; off by default)
    ff_inner_dropout: bool = True  # dropout also between the two layers of each encoder layer's MLP
    head_dropout: float = 0.3  # dropout of the label pooling and of the classifiers
    positions: str = "sinusoidal"  # encoder positions: "sinusoidal" (fixed) | "learned" (a table)
    max_positions: int = 512  # rows of the learned position table (longest sequence it accepts)
    embedding_norm: bool = False  # LayerNorm after projection + positions (a BERT embedding layer)
    standardize_inputs: bool = True  # per-feature standardisation with training statistics (models.base)
    pad_frames_to: int = 0  # > 0: zero-pad each present modality at the end to this many frames and
    # attend to every frame, padding included (no padding mask); 0: padding masked
    init_scheme: str = "torch"  # "torch" defaults | "authors": BERT-style encoders, Xavier encoders
    activation_checkpointing: bool = False  # training memory: keep only each encoder layer's input and
    # recompute the layer in the backward pass (same numbers, dropout included; about a third more compute)
    # Emotion space modelling (Eq. 1-2)
    use_emotion_space: bool = True  # False = Table 3 (1) "w/o ESM": per-label MLP attention pooling
    proj_dim: int = 256  # width of the Proj layers of Eq. 1-2
    d_z: int = 128  # width d_h of the label-related features Z^m ("feature Z")
    # Distributions and classifiers
    latent_dim: int = 64  # width of each centre mu and each variance vector sigma
    encoder_hidden: int = 128  # width of the last hidden layer of the distribution encoder MLP
    encoder_extra_hidden: tuple[int, ...] = ()  # widths of hidden layers before it (ReLU each)
    sigma_activation: str = "softplus"  # sigma = softplus(h) + SIGMA_FLOOR | "exp": exp(h / 2) + floor
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
    scl_reduction: str = "mean"  # "mean" over anchors with a positive | "sum" (Eq. 7 as printed) |
    # "all_rows": batch and queue rows are all anchors, mean over all of them (authors' code; see docs)
    # Ordinality calibration (Eq. 10-15)
    ocl_pairs: tuple[str, ...] = ("DR", "SR")  # pairs of S, D, R; Table 3 (8)-(10) use one pair
    correctness: str = "label_share"  # what counts as a correct info prediction for r_i
    ocl_variant: str = "paper"  # "paper": Eq. 10-15 over ocl_pairs | "authors_code": the code's CRLDis
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
            # network (myModels.py MyModel, module_bert.py, the encoder config printed in log.txt)
            "d_z": 256, "ff_dim": 256, "encoder_extra_hidden": (192, 128), "latent_dim": 128,
            "encoder_per_label": False, "sigma_activation": "exp",
            "head_dropout": 0.1, "attention_dropout": 0.3, "ff_inner_dropout": False,
            "positions": "learned", "max_positions": 60, "embedding_norm": True,
            "standardize_inputs": False, "pad_frames_to": 50, "init_scheme": "authors",
            # losses
            "gamma_dir": 0.3, "beta_scl": 1.0, "lambda_ocl": 0.3, "ocl_variant": "authors_code",
            "scl_absent_labels": True, "scl_renormalise": True, "scl_reduction": "all_rows",
            # training
            "lr": 2e-4, "batch_size": 64, "optimizer": "bertadam", "weight_decay": 0.01,
            "no_decay_bias_norm": True, "grad_clip": 1.0, "scheduler": "warmup_cosine_total",
            "early_stop_patience": 5, "threshold_mode": "fixed", "threshold": 0.21,
            "threshold_grid": (0.15, 0.295, 0.005),
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
    (github.com/201983290498/lddu_mmer) where it differs, each value's source in PRESET_SOURCES
    (files at commit b33f538, train.py/train.sh/log.txt at 4725e27; docs/lddu.md lists what no
    setting reproduces); "small" = many more, larger steps (batch 16, lr 1e-3: about 20 steps per
    epoch on 350 clips where batch 128 gives 3), a contrastive queue no larger than such a training
    set (8192 entries would hold dozens of stale copies of every clip), a smaller contrastive weight
    and the compact network of the shipped defaults (recipes/train_default_models.py)."""
    AUTHORS_CODE: ClassVar[str] = ("github.com/201983290498/lddu_mmer: src/ at commit b33f538; train.py, "
                                   "train.sh and experience/late_fusion_2/log.txt at 4725e27")
    PRESET_SOURCES: ClassVar[dict[str, str]] = {
        "d_z": "src/models/myModels.py:41 (out_projection pro_dim -> hidden_size 256 = width of Z)",
        "ff_dim": "experience/late_fusion_2/log.txt:63 (encoder config: intermediate_size 256)",
        "encoder_extra_hidden": "src/models/myModels.py:245 (LatentEncoder [256, 192, 128] then 128 -> 128)",
        "latent_dim": "train.py:69 (--latent_size 128)",
        "encoder_per_label": "src/models/myModels.py:245 (one LatentEncoder per modality, shared by the labels)",
        "sigma_activation": "src/models/myModels.py:280 (std = exp(0.5 * log_var))",
        "head_dropout": "src/models/myModels.py:33,204,212,228 (Dropout 0.1: pooling and classifiers)",
        "attention_dropout": "experience/late_fusion_2/log.txt:58 (attention_probs_dropout_prob 0.3)",
        "ff_inner_dropout": "src/models/module_bert.py:204-214 (BertIntermediate: no dropout inside the MLP)",
        "positions": "src/models/module_bert.py:105 (learned position_embeddings table)",
        "max_positions": "experience/late_fusion_2/log.txt:64 (max_position_embeddings 60)",
        "embedding_norm": "src/models/module_bert.py:109,123 (LayerNorm after word + position embeddings)",
        "standardize_inputs": "src/models/myModels.py:267-269 (inputs only LayerNorm-ed, no dataset statistics)",
        "pad_frames_to": "src/dataloaders/cmu_dataloader_ai.py:62-80 (every frame mask 1; aligned_50 has 50 frames)",
        "init_scheme": "src/models/module_bert.py (BertModel applies init_weights), log.txt:62 (initializer_range 0.02), myModels.py:75-82,181-182",
        "gamma_dir": "train.sh:3 (--cml 0.3, weight of the info-classifier BCE)",
        "beta_scl": "train.sh:5 (--cdl 1, weight of the SupCon loss)",
        "lambda_ocl": "train.sh:7 (--crl 0.3, weight of the code's own ordinality loss)",
        "ocl_variant": "src/models/myModels.py:316-333 (CRLDis)",
        "scl_absent_labels": "src/models/myModels.py:461-485 (get_cl_labels: a class per label, present and absent)",
        "scl_renormalise": "src/models/myModels.py:129 (SupConLoss: similarity / 2.0)",
        "scl_reduction": "src/models/myModels.py:359 and :149 (every batch and queue row an anchor; loss.mean())",
        "lr": "train.sh:2 (--lr 0.0002)",
        "batch_size": "train.sh:9 (--batch_size 64)",
        "optimizer": "train.py:158-160 (BertAdam: no bias correction, eps 1e-6, decoupled weight decay)",
        "weight_decay": "train.py:152-160 (weight_decay 0.01)",
        "no_decay_bias_norm": "train.py:141-155 (biases and LayerNorm weights in the 0.0 decay groups)",
        "grad_clip": "train.py:251 (clip_grad_norm_ 1.0) and :160 (max_grad_norm=1.0)",
        "scheduler": "train.py:158-159 (schedule='warmup_cosine', warmup 0.1, t_total = all steps)",
        "early_stop_patience": "train.py:335,369,378 (EarlyStopping(patience=5) on the selection metric)",
        "threshold_mode": "train.py:353-354,383-384 @4725e27 (fixed args.threshold; search on test commented out)",
        "threshold": "train.py:72 (--threshold 0.21)",
        "threshold_grid": "src/models/myModels.py:20 (search_binary: range(150, 300, 5) / 1000, the b33f538 search)",
    }

    def __post_init__(self) -> None:
        # JSON (checkpoints, --set) turns tuples into lists; a bare "SR" string means one pair.
        if isinstance(self.ocl_pairs, str):
            self.ocl_pairs = tuple(p.strip() for p in self.ocl_pairs.split(",") if p.strip())
        self.ocl_pairs = tuple(self.ocl_pairs)
        self.encoder_extra_hidden = tuple(int(w) for w in self.encoder_extra_hidden)
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
        if not 0.0 <= self.head_dropout < 1.0:
            problems.append("head_dropout must lie in [0, 1)")
        if self.positions not in POSITIONS:
            problems.append(f"positions {self.positions!r}: choose from {', '.join(POSITIONS)}")
        if self.max_positions < 1:
            problems.append("max_positions must be >= 1")
        if self.pad_frames_to < 0:
            problems.append("pad_frames_to must be >= 0 (0 = off)")
        if self.positions == "learned" and self.pad_frames_to > self.max_positions:
            problems.append(f"pad_frames_to ({self.pad_frames_to}) exceeds max_positions ({self.max_positions})")
        if self.init_scheme not in INIT_SCHEMES:
            problems.append(f"init_scheme {self.init_scheme!r}: choose from {', '.join(INIT_SCHEMES)}")
        if self.sigma_activation not in SIGMA_ACTIVATIONS:
            problems.append(f"sigma_activation {self.sigma_activation!r}: choose from {', '.join(SIGMA_ACTIVATIONS)}")
        if self.ocl_variant not in OCL_VARIANTS:
            problems.append(f"ocl_variant {self.ocl_variant!r}: choose from {', '.join(OCL_VARIANTS)}")
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
               self.classifier_hidden, self.ff_dim, *self.encoder_extra_hidden) < 1:
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
            head_dropout=0.0,
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

    LayerNorm of the input frames, linear projection to `hidden`, plus fixed sinusoidal positions
    or a learned table of `max_positions` rows, optionally a LayerNorm (`embedding_norm`, a BERT
    embedding layer), dropout, then the Transformer layers.

    checkpointing: while training with gradients, each layer keeps only its input (B, T, hidden)
    for the backward pass and recomputes the rest there (torch.utils.checkpoint, RNG state
    restored so dropout draws the same masks): the same outputs and gradients in far less memory.
    """

    def __init__(self, in_dim: int, hidden: int, layers: int, heads: int, ff_dim: int, dropout: float,
                 attention_dropout: float, checkpointing: bool = False, *, mlp_inner_dropout: bool = True,
                 learned_positions: int = 0, embedding_norm: bool = False) -> None:
        super().__init__()
        self.checkpointing = checkpointing
        self.input_norm = nn.LayerNorm(in_dim)
        self.project = nn.Linear(in_dim, hidden)
        self.positions = nn.Embedding(learned_positions, hidden) if learned_positions > 0 else None
        self.embedding_norm = nn.LayerNorm(hidden) if embedding_norm else None
        self.dropout = nn.Dropout(dropout)
        self.layers = nn.ModuleList(
            AttentionBlock(hidden, heads, ff_dim, dropout, attention_dropout, mlp_inner_dropout)
            for _ in range(layers)
        )

    def position_codes(self, length: int, device: torch.device) -> torch.Tensor:
        """(length, hidden) position encodings; ConfigError when a learned table is too short."""
        if self.positions is None:
            return sinusoidal_positions(length, self.project.out_features, device)
        if length > self.positions.num_embeddings:
            raise ConfigError(f"a sequence of {length} frames is longer than the learned position table "
                              f"(max_positions = {self.positions.num_embeddings}); raise max_positions",
                              parameter="max_positions")
        return self.positions.weight[:length]

    def forward(self, x: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        h = self.project(self.input_norm(x))  # (B, T, hidden)
        h = h + self.position_codes(h.shape[1], h.device)
        if self.embedding_norm is not None:
            h = self.embedding_norm(h)
        h = self.dropout(h)
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
                               c.activation_checkpointing, mlp_inner_dropout=c.ff_inner_dropout,
                               learned_positions=c.max_positions if c.positions == "learned" else 0,
                               embedding_norm=c.embedding_norm)
            for m in MODALITIES
        })
        self.emotions = nn.Parameter(torch.randn(q, c.hidden) * c.hidden ** -0.5) if c.use_emotion_space else None
        self.pooling = nn.ModuleDict({
            m: LabelPooling(c.hidden, c.proj_dim, c.d_z, q, c.use_emotion_space, c.head_dropout) for m in MODALITIES
        })
        self.info_classifier = nn.Sequential(
            nn.Linear(NUM_MODALITIES * c.d_z, c.classifier_hidden), nn.ReLU(), nn.Dropout(c.head_dropout),
            nn.Linear(c.classifier_hidden, 1),
        )
        grid = (NUM_MODALITIES, q if c.encoder_per_label else 1)
        widths = (c.d_z, *c.encoder_extra_hidden)
        self.dist_extra = nn.ModuleList(GroupedLinear(grid, a, b) for a, b in zip(widths[:-1], widths[1:]))
        self.dist_hidden = GroupedLinear(grid, widths[-1], c.encoder_hidden)
        self.dist_mu = GroupedLinear(grid, c.encoder_hidden, c.latent_dim)
        self.dist_sigma = GroupedLinear(grid, c.encoder_hidden, c.latent_dim)
        self.mean_classifier = PerLabelMLP(q, NUM_MODALITIES * c.latent_dim, c.classifier_hidden, c.head_dropout)
        self.variance_classifier = PerLabelMLP(q, NUM_MODALITIES * c.latent_dim, c.classifier_hidden, c.head_dropout)
        # Class id of the (modality m, label i) distribution for SupCon: m*q + i (absent labels,
        # with scl_absent_labels: 3q + m*q + i).
        self.register_buffer("class_ids", torch.arange(NUM_MODALITIES * q).view(NUM_MODALITIES, q), persistent=False)
        rep_dim = 2 * c.latent_dim if c.scl_representation == "both" else c.latent_dim
        self.queue = DistributionQueue(c.queue_size, rep_dim)
        self.tracker = CorrectnessTracker()
        # Per-label reference variance norm (EMA over training batches); part of the checkpoint.
        self.register_buffer("sigma_ref", torch.ones(q))
        self.register_buffer("sigma_ref_updates", torch.zeros((), dtype=torch.long))
        if c.init_scheme == "authors":
            self._init_like_authors()

    def _init_like_authors(self) -> None:
        """The LDDU authors' initialisation: encoders as BERT (`BertModel.__init__` applies
        `init_weights`: weights and position table ~ N(0, 0.02), biases 0, LayerNorm 1/0), emotion
        embeddings and distribution-encoder weights Xavier-uniform (myModels.py:181-182, :75-82);
        pooling and classifiers keep PyTorch's defaults (MyModel applies no init to them)."""
        for encoder in self.encoders.values():
            for module in encoder.modules():
                if isinstance(module, (nn.Linear, nn.Embedding)):
                    nn.init.normal_(module.weight, std=0.02)
                    if getattr(module, "bias", None) is not None:
                        nn.init.zeros_(module.bias)
                elif isinstance(module, nn.MultiheadAttention):
                    nn.init.normal_(module.in_proj_weight, std=0.02)
                    nn.init.zeros_(module.in_proj_bias)
                    nn.init.normal_(module.out_proj.weight, std=0.02)
                    nn.init.zeros_(module.out_proj.bias)
                elif isinstance(module, nn.LayerNorm):
                    nn.init.ones_(module.weight)
                    nn.init.zeros_(module.bias)
        if self.emotions is not None:
            nn.init.xavier_uniform_(self.emotions)
        for layer in (*self.dist_extra, self.dist_hidden, self.dist_mu, self.dist_sigma):
            fan_in, fan_out = layer.weight.shape[-2:]
            bound = math.sqrt(6.0 / (fan_in + fan_out))
            with torch.no_grad():
                layer.weight.uniform_(-bound, bound)

    # ------------------------------------------------------------------ forward
    def forward(self, batch: MultimodalBatch) -> ModelOutput:
        """probs (B, q) = gated fusion of y_mu and y_sigma. aux holds, for the loss and for analysis:
        dir_logits / y_dir (B, q) info classifier, y_mu / y_sigma / gate (B, q),
        mu / sigma (B, 3, q, latent_dim) in MODALITIES order, present (B, 3) bool."""
        if self.config.standardize_inputs:
            batch = self.standardize(batch)
        zs, present = [], []
        for m in MODALITIES:
            x, valid = self._frames(batch.features[m], batch.masks[m].bool())
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

        h = z
        for layer in self.dist_extra:
            h = F.relu(layer(h))  # (B, 3, q, encoder_extra_hidden[k])
        h = F.relu(self.dist_hidden(h))  # (B, 3, q, encoder_hidden)
        mu = self.dist_mu(h)  # (B, 3, q, L)
        raw = self.dist_sigma(h)
        if self.config.sigma_activation == "exp":  # raw is a log-variance: sigma = exp(raw / 2)
            sigma = torch.exp(0.5 * raw) + SIGMA_FLOOR
        else:
            sigma = F.softplus(raw) + SIGMA_FLOOR  # (B, 3, q, L), > 0

        y_mu = torch.sigmoid(self.mean_classifier(mu.transpose(1, 2).reshape(batch_size, q, -1)))  # (B, q)
        y_sigma = torch.sigmoid(self.variance_classifier(sigma.transpose(1, 2).reshape(batch_size, q, -1)))
        gate = self._gate(y_dir.detach() if self.config.detach_gate else y_dir)
        probs = gate * y_mu + (1.0 - gate) * y_sigma
        aux = {"dir_logits": dir_logits, "y_dir": y_dir, "y_mu": y_mu, "y_sigma": y_sigma, "gate": gate,
               "mu": mu, "sigma": sigma, "present": present_mask}
        return ModelOutput(probs=probs, aux=aux)

    def _frames(self, x: torch.Tensor, valid: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """With `pad_frames_to` = N > 0: frames (B, T, D) zero-padded at the end to max(T, N) and
        every frame of a present modality marked valid, padding included (the authors' loader gives
        every frame mask 1); an absent modality stays all-invalid. Otherwise unchanged."""
        n = self.config.pad_frames_to
        if n <= 0:
            return x, valid
        if x.shape[1] < n:
            x = F.pad(x, (0, 0, 0, n - x.shape[1]))
        present = valid.any(dim=1, keepdim=True)  # (B, 1)
        return x, present.expand(-1, x.shape[1])

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
        if c.lambda_ocl and c.ocl_variant == "authors_code":
            l_ocl = authors_code_ordinality_loss(aux["y_dir"], aux["sigma"])
        elif c.lambda_ocl and c.ocl_pairs:
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
