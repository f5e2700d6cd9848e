"""Base class of every registered network."""

from __future__ import annotations

import torch
from torch import nn

from mmer.models.batch import LossOutput, ModelOutput, MultimodalBatch, Prediction
from mmer.models.input_standardization import InputStandardizer


class EmotionModel(nn.Module):
    """A multimodal multi-label emotion network.

    Subclasses are registered with `@register_model(name, ConfigClass)` and take their config
    dataclass as the only constructor argument. The config holds `num_labels` and
    `input_dims` ({"text": D_t, "audio": D_a, "visual": D_v}).
    Every forward starts with `self.standardize(batch)`: per-feature standardisation with
    training-set statistics (fitted by the trainer through `fit_input_statistics`).
    """

    registry_name: str = ""

    def __init__(self, config) -> None:
        super().__init__()
        self.config = config
        self.standardize = InputStandardizer(config.input_dims)

    def fit_input_statistics(self, samples) -> None:
        """Fit the input standardisation on the training split: `samples` iterates over
        per-sample feature dicts {m: (T_m, D_m) array} of valid frames (e.g. `Sample.features`)."""
        self.standardize.fit(samples)

    def forward(self, batch: MultimodalBatch) -> ModelOutput:  # pragma: no cover - abstract
        raise NotImplementedError

    def loss(self, output: ModelOutput, batch: MultimodalBatch) -> LossOutput:  # pragma: no cover
        """Training objective for `output = self(batch)`; `batch.labels` is (B, q)."""
        raise NotImplementedError

    @torch.no_grad()
    def predict(self, batch: MultimodalBatch, with_uncertainty: bool = True) -> Prediction:  # pragma: no cover
        """Probabilities of one deterministic eval-mode pass and per-label uncertainty in [0, 1].
        with_uncertainty=False lets a model skip extra work for the uncertainty (it may then be None)."""
        raise NotImplementedError

    def prepare_training(self, num_train_samples: int) -> None:
        """Called once before training with the size of the training split (sample indices
        in `batch.index` run over 0..num_train_samples-1). Default: nothing to prepare."""

    def training_state(self) -> dict[str, torch.Tensor]:
        """Tensors beyond parameters/buffers that a resumed run must restore (e.g. LDDU's
        per-sample correctness history). Default: none."""
        return {}

    def load_training_state(self, state: dict[str, torch.Tensor]) -> None:
        """Inverse of `training_state`."""
