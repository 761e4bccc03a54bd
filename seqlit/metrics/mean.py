"""The mean of a per-target quantity (an evaluation loss) from exact summed states.

The classifier, seq2seq model and forecaster log their validation and test loss (and the forecaster its
quantile coverage) through `MeanPerTarget`. Lightning's own alternative,
`self.log(loss, batch_size=n, sync_dist=True)`, averages the summed batch sizes over ranks in integer
arithmetic under gloo, so an odd total count skews the DDP loss; summed `sum`-reduced states are exact.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torchmetrics import Metric


class MeanPerTarget(Metric):
    """Summed values over the targets they cover (float64) and the target count; `compute` is their ratio.

    States are replaced, never updated in place (like every seqlit metric): Lightning resets metrics under
    inference mode after `validate`/`test`, which turns the states into inference tensors that an in-place
    update in a later `fit` would refuse (torchmetrics' `MeanMetric` does that). NaN before any target.
    """

    is_differentiable = False
    higher_is_better = False
    full_state_update = False

    total: Tensor
    targets: Tensor

    def __init__(self, **kwargs: object) -> None:
        super().__init__(**kwargs)
        self.add_state("total", default=torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("targets", default=torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")

    def update(self, summed: Tensor, n_targets: int | Tensor) -> None:
        """Adds a batch's value summed over its `n_targets` targets (e.g. a loss with reduction="sum"); a
        tensor count stays on the device (no host sync)."""
        self.total = self.total + summed.detach().to(torch.float64)
        self.targets = self.targets + (n_targets if isinstance(n_targets, Tensor) else int(n_targets))

    def compute(self) -> Tensor:
        return (self.total / self.targets).float()
