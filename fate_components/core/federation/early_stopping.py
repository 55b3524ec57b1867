"""Early stopping on the global validation loss, and the best round's model kept for the end.

Every site holds the same global validation loss after each round, so every site's
`EarlyStopping` reaches the same decision; the arbiter only hears yes or no.
"""
from __future__ import annotations

import copy

from torch import nn

__all__ = ["EarlyStopping"]


class EarlyStopping:
    """Stop after `patience` rounds without a lower global validation loss (0: never); keep the best model."""

    def __init__(self, patience: int) -> None:
        self.patience = patience
        self.best_loss = float("inf")
        self.best_round = -1
        self.best_state: dict | None = None   # held only when patience is on: the model the job ends with

    def update(self, round_idx: int, loss: float, model: nn.Module) -> bool:
        """Record this round's global validation loss; True when training should stop after it."""
        if loss < self.best_loss:
            self.best_loss, self.best_round = loss, round_idx
            if self.patience:
                self.best_state = copy.deepcopy(model.state_dict())
        return bool(self.patience) and round_idx - self.best_round >= self.patience

    def restore_best(self, model: nn.Module) -> None:
        """Load the best round's model (with patience on); without patience the last round's model stays."""
        if self.best_state is not None:
            model.load_state_dict(self.best_state)
