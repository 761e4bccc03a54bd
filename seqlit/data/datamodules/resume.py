"""Where a resumed fit stopped, so a data module can rebuild its sampler at that exact batch."""

from __future__ import annotations

from typing import Any


def resume_position(trainer: Any) -> tuple[int | None, int]:
    """(epoch, batches already trained in it) when `trainer` is resuming a fit, else (None, 0).

    Lightning restores its loop progress before it asks for the train dataloader; `processed`
    counts the batches whose training step finished before the checkpoint was written.
    """
    fit_loop = getattr(trainer, "fit_loop", None)
    if fit_loop is None or not fit_loop.restarting:
        return None, 0
    epoch = int(fit_loop.epoch_progress.current.processed)
    done = int(fit_loop.epoch_loop.batch_progress.current.processed)
    return epoch, done
