"""A frozen teacher's outputs memoised exactly, keyed by (training sample, augmentation view).

A frozen teacher's logits on a training image depend only on the image and on the augmentation drawn. Where the
augmentation has finitely many views (:class:`~lit_kd.data.augmentation.CropFlip`: 162 for CIFAR's pad-4 crop and
flip), every output the teacher can give during training is one entry of a ``[samples, views, outputs]`` table:
:class:`TeacherMemo` holds that table, fills it as entries are first needed (or all at once:
``lit-kd teacher-memo``), and reads it back afterwards, in this run and in every later run with the same teacher and
data (other seeds, other methods, other temperatures).

The file is a safetensors file (plain tensors and a string header, never a pickle). Its header records what makes an
entry valid: the teacher's weights (a hash), how it was run (precision, folded copy), the dataset, the input
normalisation, the augmentation and the stored dtype; a file whose record differs is refused with one line naming
what differs. Each stored sample also keeps a hash of its image, checked against the images of every run that binds
to the file, so runs on other subsets of the same split share it and a changed image is never served a stale entry.
Writes are atomic (a temporary file, then ``os.replace``) and merge what another run saved meanwhile.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save_file
from torch import Tensor, nn

#: Storage dtypes by name: ``float32`` reproduces the teacher's logits exactly, ``float16`` halves the file.
MEMO_DTYPES = {"float32": torch.float32, "float16": torch.float16}


class StaleMemoError(ValueError):
    """A memo file was built for another teacher, data, augmentation or dtype than the run that opens it."""


def weights_hash(network: nn.Module) -> str:
    """A hash of ``network``'s state dict: every tensor's name, dtype, shape and bytes (16 hex digits)."""
    digest = hashlib.blake2b(digest_size=8)
    for name, tensor in network.state_dict().items():
        tensor = tensor.detach().cpu().contiguous()
        digest.update(f"{name}:{tensor.dtype}:{tuple(tensor.shape)};".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def image_hashes(images: Tensor) -> Tensor:
    """One non-zero 63-bit hash per image of ``images`` ``[N, ...]`` (int64; 0 marks "no image stored")."""
    flat = images.detach().cpu().contiguous().view(len(images), -1).view(torch.uint8).numpy()
    hashes = [int.from_bytes(hashlib.blake2b(row.tobytes(), digest_size=8).digest(), "little") >> 1 for row in flat]
    return torch.tensor([value or 1 for value in hashes], dtype=torch.int64)


def memo_size_bytes(num_samples: int, num_views: int, num_outputs: int, dtype: str) -> int:
    """The size of a memo's file: the values, the filled flags, and each sample's index and image hash.

    Example:
        >>> round(memo_size_bytes(45000, 162, 10, "float16") / 1e6)  # CIFAR-10's training split, pad-4 crop + flip
        154
    """
    values = num_samples * num_views * num_outputs * MEMO_DTYPES[dtype].itemsize
    return values + num_samples * num_views + 16 * num_samples


class TeacherMemo:
    """The table of a frozen teacher's outputs per (sample, view), bound to one file.

    Rows exist for the samples a run binds (:meth:`bind`) and for those the file holds, so a memo of a 5,000-image
    subset of CIFAR-10 stores 5,000 rows, and runs on other subsets add theirs.

    Args:
        path: the safetensors file (read if it exists; written by :meth:`save`).
        identity: what makes an entry valid (teacher hash, precision, dataset, normalisation, augmentation); strings
            or JSON-serialisable values, compared with the file's record.
        num_samples: samples the keys index (the training split as loaded, plus any synthetic images).
        num_views: views of each sample (the augmentation's ``num_views``).
        num_outputs: outputs per entry (the teacher's logits).
        dtype: ``"float32"`` or ``"float16"``.

    Raises:
        StaleMemoError: the file's record or table shape differs from this one (one line naming each difference).

    Example:
        >>> import tempfile
        >>> path = Path(tempfile.mkdtemp()) / "memo.safetensors"
        >>> memo = TeacherMemo(path, {"teacher": "abc"}, num_samples=4, num_views=2, num_outputs=3)
        >>> memo.bind(torch.arange(4), torch.tensor([5, 6, 7, 8]))
        >>> _ = memo.fill(torch.tensor([1]), torch.tensor([0]), torch.ones(1, 3))
        >>> memo.save()
        >>> reopened = TeacherMemo(path, {"teacher": "abc"}, num_samples=4, num_views=2, num_outputs=3)
        >>> values, known = reopened.lookup(torch.tensor([1]), torch.tensor([0]))
        >>> known.tolist(), values[0].tolist(), reopened.entries().tolist()
        ([True], [1.0, 1.0, 1.0], [[1, 0]])
    """

    def __init__(
        self,
        path: str | Path,
        identity: dict[str, Any],
        num_samples: int,
        num_views: int,
        num_outputs: int,
        dtype: str = "float32",
    ) -> None:
        if dtype not in MEMO_DTYPES:
            raise ValueError(f"teacher_memo_dtype must be one of {sorted(MEMO_DTYPES)}, got {dtype!r}")
        self.path = Path(path).expanduser()
        self.record = {
            **{key: json.dumps(value, sort_keys=True) for key, value in identity.items()},
            "dtype": dtype,
            "shape": json.dumps([num_samples, num_views, num_outputs]),
        }
        self.num_views, self.num_outputs = num_views, num_outputs
        self.row_of = torch.full((num_samples,), -1, dtype=torch.int64)  # each sample's row, -1: none
        self.samples = torch.zeros(0, dtype=torch.int64)  # the sample of each row
        self.hashes = torch.zeros(0, dtype=torch.int64)  # its image's hash
        self.values = torch.zeros(0, num_views, num_outputs, dtype=MEMO_DTYPES[dtype])
        self.filled = torch.zeros(0, num_views, dtype=torch.bool)
        self.new = torch.zeros(0, num_views, dtype=torch.bool)  # filled here since the last save
        self.bound = torch.zeros(0, dtype=torch.int64)  # the samples this run keys (sorted)
        self.hits = self.misses = 0
        if self.path.is_file():
            self._merge(self._read())

    @property
    def size_bytes(self) -> int:
        """The size of this memo's file, for its rows."""
        return memo_size_bytes(len(self.samples), self.num_views, self.num_outputs, self.record["dtype"])

    def _read(self) -> dict[str, Tensor]:
        """The file's tensors, after checking its record against this memo's."""
        with safe_open(str(self.path), framework="pt") as file:
            stored = file.metadata() or {}
            keys = sorted(set(stored) | set(self.record))
            differing = [key for key in keys if stored.get(key) != self.record.get(key)]
            if differing:
                details = "; ".join(f"{key}: stored {stored.get(key)}, now {self.record.get(key)}" for key in differing)
                raise StaleMemoError(
                    f"teacher memo {self.path} was built for another run ({details}): delete it or name another file"
                )
            return {name: file.get_tensor(name) for name in ("samples", "hashes", "values", "filled")}

    def _add_rows(self, samples: Tensor, hashes: Tensor) -> Tensor:
        """The rows of ``samples``, made (empty) for those without one; a sample's image hash must not change."""
        rows = self.row_of[samples]
        known = rows >= 0
        if (self.hashes[rows[known]] != hashes[known]).any():
            differs = known.clone()
            differs[known] = self.hashes[rows[known]] != hashes[known]
            raise StaleMemoError(
                f"teacher memo {self.path}: sample {int(samples[differs][0])} holds another image than this run's "
                f"({int(differs.sum())} of {len(samples)} differ): the data changed; delete the file or name another"
            )
        added = samples[~known]
        count = len(added)
        self.row_of[added] = torch.arange(len(self.samples), len(self.samples) + count)
        self.samples = torch.cat([self.samples, added])
        self.hashes = torch.cat([self.hashes, hashes[~known]])
        self.values = torch.cat([self.values, self.values.new_zeros(count, self.num_views, self.num_outputs)])
        self.filled = torch.cat([self.filled, self.filled.new_zeros(count, self.num_views)])
        self.new = torch.cat([self.new, self.new.new_zeros(count, self.num_views)])
        return self.row_of[samples]

    def _merge(self, stored: dict[str, Tensor]) -> None:
        """Take the entries of a stored table that this one lacks (their images' hashes must agree)."""
        rows = self._add_rows(stored["samples"], stored["hashes"])
        taken = stored["filled"] & ~self.filled[rows]
        self.values[rows] = torch.where(taken[..., None], stored["values"], self.values[rows])
        self.filled[rows] |= stored["filled"]

    def bind(self, samples: Tensor, hashes: Tensor) -> None:
        """Key this run's images by ``samples`` (their :func:`image_hashes` checked against the stored ones).

        Raises:
            StaleMemoError: a sample's stored image differs from this run's (the data changed under its name).
        """
        self._add_rows(samples, hashes)
        self.bound = samples.sort().values

    def stored(self, samples: Tensor) -> Tensor:
        """Which views of each of ``samples`` (bound) are stored: ``[len(samples), views]``."""
        return self.filled[self.row_of[samples]]

    def entries(self) -> Tensor:
        """Every stored key, ``[K, 2]`` rows of (sample, view), in sample order."""
        rows, views = self.filled.nonzero().T
        keys = torch.stack([self.samples[rows], views], dim=1)
        return keys[torch.argsort(keys[:, 0] * self.num_views + keys[:, 1])]

    def lookup(self, samples: Tensor, views: Tensor) -> tuple[Tensor, Tensor]:
        """The stored outputs ``[B, outputs]`` (float32) of the keys (bound samples), and which are stored ``[B]``."""
        rows = self.row_of[samples]
        known = self.filled[rows, views]
        self.hits += int(known.sum())
        self.misses += int((~known).sum())
        return self.values[rows, views].float(), known

    def fill(self, samples: Tensor, views: Tensor, outputs: Tensor) -> Tensor:
        """Store ``outputs`` ``[B, outputs]`` under the keys; return them as stored (rounded to the dtype), float32."""
        rows = self.row_of[samples]
        stored = outputs.detach().to(device="cpu", dtype=self.values.dtype)
        self.values[rows, views] = stored
        self.filled[rows, views] = True
        self.new[rows, views] = True
        return stored.float()

    def share_new_entries(self, all_reduce: Callable[[Tensor], Any]) -> None:
        """Make every process's new entries every process's (DDP): ``all_reduce(tensor)`` sums a tensor in place.

        Every process binds the same training samples; the rows of those are reduced. Each entry is the same
        wherever it was computed (the same teacher on the same view), so the sum of the copies divided by their
        number is the entry.
        """
        rows = self.row_of[self.bound]
        counts = self.new[rows].to(torch.float32)
        sums = self.values[rows].float() * counts[..., None]
        all_reduce(counts)
        all_reduce(sums)
        shared = counts > 0
        averaged = sums / counts.clamp(min=1)[..., None]
        self.values[rows] = torch.where(shared[..., None], averaged.to(self.values.dtype), self.values[rows])
        self.filled[rows] |= shared
        self.new[rows] |= shared

    def save(self) -> None:
        """Write the table atomically, merged with whatever another run saved to the file meanwhile."""
        if self.path.is_file():
            self._merge(self._read())
        self.path.parent.mkdir(parents=True, exist_ok=True)
        partial = self.path.with_name(f".{self.path.name}.{os.getpid()}.partial")
        try:
            tensors = {"samples": self.samples, "hashes": self.hashes, "values": self.values, "filled": self.filled}
            save_file(tensors, str(partial), metadata=self.record)
            os.replace(partial, self.path)
        finally:
            partial.unlink(missing_ok=True)
        self.new.zero_()


def memoised_outputs(
    memo: TeacherMemo, samples: Tensor, views: Tensor, images: Tensor, compute: Callable[[Tensor], Tensor]
) -> Tensor:
    """The teacher's outputs on ``images`` (sample ``samples``, view ``views`` each), from ``memo`` where stored.

    The entries not stored are computed by ``compute`` (the teacher's gradient-free pass) on those images only (on
    the whole batch, as an unmemoised step would, when none is stored), stored, and returned as stored: float32 on
    ``images``' device.
    """
    samples, views = samples.cpu(), views.cpu()
    values, known = memo.lookup(samples, views)
    if not known.all():
        missing = (~known).nonzero().squeeze(1)
        computed = compute(images if not known.any() else images[missing.to(images.device)])
        values[missing] = memo.fill(samples[missing], views[missing], computed)
    return values.to(images.device)


def open_teacher_memo(
    path: str | Path, teacher: nn.Module, teacher_run: dict[str, Any], datamodule: Any, num_outputs: int, dtype: str
) -> TeacherMemo:
    """The memo of ``teacher``'s outputs on ``datamodule``'s training images, bound to this run's images.

    Args:
        path: the memo file (created by the first run that saves it).
        teacher: the frozen teacher (its weights are hashed into the record).
        teacher_run: how the teacher runs (precision, folded copy, memory format): part of the record.
        datamodule: a set-up lit-kd DataModule (:class:`~lit_kd.data.InMemoryImageDataModule`: ``train_set``,
            ``train_sources``, ``num_sources``, ``augmentation``, ``input_identity``).
        num_outputs: outputs per entry (the teacher's logits).
        dtype: ``"float32"`` or ``"float16"``.
    """
    needed = ("train_set", "train_sources", "num_sources", "augmentation", "input_identity")
    if any(getattr(datamodule, name, None) is None for name in needed):
        raise ValueError(
            f"teacher_memo needs a lit-kd DataModule (lit_kd.data.InMemoryImageDataModule, set up for fit), got "
            f"{type(datamodule).__name__}"
        )
    identity = {"teacher": weights_hash(teacher), "teacher_run": teacher_run, **datamodule.input_identity}
    num_views = datamodule.augmentation.num_views
    memo = TeacherMemo(path, identity, datamodule.num_sources, num_views, num_outputs, dtype)
    memo.bind(datamodule.train_sources, image_hashes(datamodule.train_set.images))
    return memo


def describe(memo: TeacherMemo) -> str:
    """One line: the memo's file, table shape, size and how much of it is stored."""
    num_samples, num_views, num_outputs = memo.values.shape
    return (
        f"teacher memo {memo.path}: {num_samples} samples x {num_views} views x {num_outputs} outputs in "
        f"{memo.record['dtype']}, {memo.size_bytes / 1e6:.1f} MB; {int(memo.filled.sum())} of {memo.filled.numel()} "
        "entries stored"
    )
