"""Sample indices in training batches, for methods that keep a memory per training sample (CRD)."""

from __future__ import annotations

from typing import Any

from torch.utils.data import Dataset


class WithIndices(Dataset):
    """A dataset whose items are ``(image, target, index)``: ``dataset[index]`` and the index itself.

    Methods with a memory bank per training sample
    (:class:`~lit_kd.methods.ContrastiveRepresentationDistillation`) need each sample's index in every training
    batch. lit-kd's DataModules give it themselves (``return_indices``); wrap your own training ``Dataset`` in this
    (only the training one: evaluation batches stay ``(images, targets)``) and a ``DataLoader``'s default collation
    makes the batches ``(images, targets, indices)``. ``targets`` is the wrapped dataset's ``targets`` (as
    torchvision's datasets have), or ``None``: CRD draws its negatives from the other classes when it is there.

    Args:
        dataset: a map-style dataset whose items are ``(image, target)``.

    Example:
        >>> import torch
        >>> from torch.utils.data import DataLoader, TensorDataset
        >>> dataset = WithIndices(TensorDataset(torch.zeros(6, 3, 4, 4), torch.arange(6) % 2))
        >>> images, targets, indices = next(iter(DataLoader(dataset, batch_size=4, shuffle=True)))
        >>> bool((targets == indices % 2).all()), len(dataset)
        (True, 6)
    """

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset
        self.targets = getattr(dataset, "targets", None)

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, index: int) -> tuple[Any, Any, int]:
        image, target = self.dataset[index]
        return image, target, index
