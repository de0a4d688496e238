"""The training code's torch model: importable (module level), so its state dict can be rebuilt
from the recorded class. The serving image does not ship this file - it loads the class-free
torch.export program stored beside the state dict."""

from __future__ import annotations

import torch


class ChurnNet(torch.nn.Module):
    def __init__(self, n_features: int, hidden: int = 16) -> None:
        super().__init__()
        self.layers = torch.nn.Sequential(
            torch.nn.Linear(n_features, hidden), torch.nn.ReLU(), torch.nn.Linear(hidden, 1)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.layers(x)).squeeze(-1)  # churn probability per row
