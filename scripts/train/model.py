"""The quantile LSTM and its loss. The module is exactly what goes into the ONNX graph:
normalisation in front, monotone quantiles behind, so the served model takes raw features."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from features import N_FEATURES, QUANTILES


class QuantileLSTM(nn.Module):
    """[batch, W, F] raw f32 features → [batch, 3] quantiles (5 %, 50 %, 95 %) of the next-day
    log return.

    The median is a linear read-out of the last hidden state; the lower and upper quantiles sit
    a softplus-positive distance below and above it, so q05 <= q50 <= q95 by construction. The
    read-out works in units of the training target's standard deviation (`target_scale`), which
    keeps the loss well conditioned; the graph multiplies back to log-return units."""

    def __init__(
        self,
        hidden: int,
        layers: int,
        feature_mean: np.ndarray,
        feature_std: np.ndarray,
        target_scale: float,
    ):
        super().__init__()
        if feature_mean.shape != (N_FEATURES,) or feature_std.shape != (N_FEATURES,):
            raise ValueError("normalisation statistics must have one entry per feature")
        if not np.all(feature_std > 0):
            raise ValueError("a feature with zero spread cannot be normalised")
        self.register_buffer("feature_mean", torch.tensor(feature_mean, dtype=torch.float32).view(1, 1, -1))
        self.register_buffer("feature_std", torch.tensor(feature_std, dtype=torch.float32).view(1, 1, -1))
        self.register_buffer("target_scale", torch.tensor(target_scale, dtype=torch.float32))
        self.lstm = nn.LSTM(N_FEATURES, hidden, num_layers=layers, batch_first=True)
        self.head = nn.Linear(hidden, 3)
        with torch.no_grad():
            # Start from the Gaussian answer: offsets of 1.645 sd, i.e. softplus(b) = 1.645.
            self.head.bias.copy_(torch.tensor([_inv_softplus(1.645), 0.0, _inv_softplus(1.645)]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = (x - self.feature_mean) / self.feature_std
        out, _ = self.lstm(z)
        a = self.head(out[:, -1, :])
        median = a[:, 1:2]
        lower = median - F.softplus(a[:, 0:1])
        upper = median + F.softplus(a[:, 2:3])
        return torch.cat([lower, median, upper], dim=1) * self.target_scale


def _inv_softplus(y: float) -> float:
    return float(np.log(np.expm1(y)))


def pinball_loss(pred: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Mean pinball loss over the batch and the quantile levels (pred: [B, 3], y: [B])."""
    taus = torch.tensor(QUANTILES, dtype=pred.dtype).view(1, -1)
    d = y.view(-1, 1) - pred
    return torch.maximum(taus * d, (taus - 1.0) * d).mean()
