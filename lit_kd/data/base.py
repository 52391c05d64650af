"""The DataModule base every lit-kd dataset shares: decoded images in memory, augmentation on the device."""

from __future__ import annotations

import warnings
from abc import abstractmethod
from pathlib import Path
from typing import Any, ClassVar, Literal, NamedTuple

import torch
from lightning.pytorch import LightningDataModule
from lightning.pytorch.utilities import rank_zero_info
from torch import Tensor

from lit_kd.data.augmentation import CropFlip, normalize
from lit_kd.data.fraction import fraction_indices
from lit_kd.data.image_files import CorruptDatasetError, decode_images, default_cache_dir, image_files
from lit_kd.data.loader import InMemoryLoader, ShardedBatchSampler
from lit_kd.data.order import run_seed, strata, stratified_order
from lit_kd.data.synthetic import load_synthetic_set
from lit_kd.seeding import batch_seed

Split = Literal["train", "test"]


class LabelledImages(NamedTuple):
    """A split of a dataset: ``uint8`` images ``[N, 3, H, W]`` and their targets ``[N]``."""

    images: Tensor
    targets: Tensor


class InMemoryImageDataModule(LightningDataModule):
    """Base DataModule: a dataset decoded once into ``uint8`` tensors, augmented batch-wise on the device.

    Subclasses say where the data is and how to read it (:meth:`load_split`) and declare ``num_classes``,
    ``image_size``, ``mean`` and ``std``. This base holds the data in memory, splits off a seeded validation set,
    optionally subsamples the training set, serves batches through :class:`InMemoryLoader` (sharded across DDP
    ranks, resumable mid-epoch), and in :meth:`on_after_batch_transfer` applies random crop + flip (training only)
    and normalisation on whatever device the batch was moved to.

    Every split is stored in a seeded stratified order (:func:`~lit_kd.data.order.stratified_order`): any prefix of
    a validation or test loader holds every class in about its share (every age decile for regression), so
    ``limit_val_batches`` and friends give a fair sample, and the validation split and ``subset_size`` are drawn as
    prefixes of that order, balanced within one image per class. Evaluation splits use ``order_seed`` (fixed across
    runs, so shortened evaluations of different runs see the same images); the validation split, the subset, the
    shuffling and the augmentation use ``seed``. With ``overfit_batches`` the training batches are the same every
    epoch and are not augmented.

    Augmentation draws come from a generator seeded by ``(seed, epoch, batch, rank)``, and the number of batches
    consumed is part of :meth:`state_dict`, so a run resumed from a mid-epoch checkpoint sees exactly the batches
    an uninterrupted run would.

    Args:
        data_dir: folder holding the dataset (layout: see the subclass).
        batch_size: training batch size per process.
        eval_batch_size: validation/test batch size per process (default: ``batch_size``).
        val_size: held out from the training set for validation: a count, or a fraction in ``(0, 1)``, drawn per
            class. With 0, validation uses the test split: then selecting a checkpoint by validation metrics selects
            it on the test set (say so when you report numbers; the recipes hold out a validation split).
        subset_size: keep only this many training images (seeded, per class), for quick runs.
        train_fraction: the limited-label setting: keep only this fraction, in ``(0, 1]``, of the training split
            (seeded by ``seed``; the same fraction of every class for classification, a uniform draw for
            regression; see :func:`~lit_kd.data.fraction.fraction_indices`). Applied first, so the validation split
            and ``subset_size`` come out of the kept images. ``None`` keeps everything.
        seed: seed of the validation split, the subset, the training fraction, the shuffling and the augmentation;
            ``None`` (default) takes the run's seed (``seed_everything``, ``lit-kd``'s ``seed_everything:``), so runs
            with different seeds see different data streams. Set it to pin the data while the run's seed varies.
        order_seed: seed of the stored order of the evaluation splits (fixed by default).
        crop_padding: zero padding for the random crop (0 disables it).
        horizontal_flip: random horizontal flips during training.
        cache_dir: where decoded images are cached (default ``~/.cache/lit-kd``); ``None`` would disable it, set
            ``use_cache=False`` for that.
        use_cache: cache decoded image folders on disk.
        predict_files: what ``trainer.predict`` / ``lit-kd predict`` reads: a folder (its image files, recursively, in
            sorted order) or a list of image files, decoded and normalised like the evaluation data (resized to
            ``image_size`` when they differ); ``None`` (default): the test split.
        synthetic_dir: a synthetic set written by cGAN-KD's stage 2 (:mod:`lit_kd.synthesis`), appended to the
            training split after the options above (checked against this dataset's task, image size and labels by
            :func:`~lit_kd.data.synthetic.load_synthetic_set`), so any method trains on real + synthetic images.
        return_indices: training batches are ``(images, targets, indices)``, each sample's index into
            :attr:`train_set` (evaluation batches stay ``(images, targets)``). Methods that need it set it at setup
            (:class:`~lit_kd.methods.ContrastiveRepresentationDistillation`); off by default.
        return_views: training batches are ``(images, targets, indices, views)``: the indices as above and each
            image's view id in :attr:`augmentation` (:class:`~lit_kd.data.augmentation.CropFlip`), the key of a
            memoised teacher output (``teacher_memo`` of :class:`~lit_kd.methods.DistillationModule`, which sets
            it at setup); off by default.
    """

    num_classes: ClassVar[int]
    image_size: ClassVar[int]
    mean: ClassVar[tuple[float, float, float]]
    std: ClassVar[tuple[float, float, float]]
    task: ClassVar[Literal["classification", "regression"]] = "classification"

    def __init__(
        self,
        data_dir: str | Path = "data",
        batch_size: int = 128,
        eval_batch_size: int | None = None,
        val_size: int | float = 0,
        subset_size: int | None = None,
        train_fraction: float | None = None,
        seed: int | None = None,
        order_seed: int = 0,
        crop_padding: int = 4,
        horizontal_flip: bool = True,
        cache_dir: str | Path | None = None,
        use_cache: bool = True,
        synthetic_dir: str | Path | None = None,
        predict_files: str | Path | list[str] | None = None,
        return_indices: bool = False,
        return_views: bool = False,
    ) -> None:
        super().__init__()
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if val_size < 0:
            raise ValueError(f"val_size must be >= 0 (a count or a fraction in (0, 1)), got {val_size}")
        if subset_size is not None and subset_size < 1:
            raise ValueError(f"subset_size must be >= 1 or None, got {subset_size}")
        if train_fraction is not None and not 0 < train_fraction <= 1:
            raise ValueError(f"train_fraction must be in (0, 1] or None, got {train_fraction}")
        self.data_dir = Path(data_dir).expanduser()
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size or batch_size
        self.val_size = val_size
        self.subset_size = subset_size
        self.train_fraction = train_fraction
        self.seed = seed
        self.order_seed = order_seed
        self.crop_padding = crop_padding
        self.horizontal_flip = horizontal_flip
        self.cache_dir = (Path(cache_dir).expanduser() if cache_dir else default_cache_dir()) if use_cache else None
        self.synthetic_dir = Path(synthetic_dir).expanduser() if synthetic_dir is not None else None
        self.predict_files = predict_files
        self.return_indices = return_indices
        self.return_views = return_views
        self.predict_set: LabelledImages | None = None
        self.predict_names: list[str] = []  # a name per predicted image: its file, or test[<index>]
        self.predict_targets: Tensor | None = None  # the labels, when predicting on the test split
        self.train_set: LabelledImages | None = None
        #: each training image's index in the training split as loaded (synthetic images after the real ones)
        self.train_sources: Tensor | None = None
        self.num_sources = 0  # images in the training split as loaded, plus the synthetic ones
        self.val_set: LabelledImages | None = None
        self.test_set: LabelledImages | None = None
        self._train_sampler: ShardedBatchSampler | None = None
        self._consumed = {"epoch": 0, "batches": 0}  # training batches moved to the device in the current epoch
        self._resume_from: dict[str, int] | None = None

    @abstractmethod
    def load_split(self, split: Split) -> LabelledImages:
        """Read one split of the dataset from ``data_dir`` (raising a clear error if it is missing or corrupt)."""

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """Shape ``(C, H, W)`` of one image as the networks see it."""
        return (3, self.image_size, self.image_size)

    @property
    def data_seed(self) -> int:
        """The seed in use: ``seed`` if set, else the run's (:func:`~lit_kd.data.order.run_seed`)."""
        return self.seed if self.seed is not None else run_seed()

    def setup(self, stage: str | None = None) -> None:
        """Load the splits needed for ``stage`` into memory (once), check them and store them in a stratified order."""
        if stage in ("fit", "validate", None) and self.train_set is None:
            train = self._checked(self.load_split("train"), "train")
            sources = torch.arange(len(train.targets))
            self.num_sources = len(sources)
            if self.train_fraction is not None:
                stratified = self.task == "classification"
                kept = fraction_indices(train.targets, self.train_fraction, self.data_seed, stratified)
                train, sources = LabelledImages(train.images[kept], train.targets[kept]), sources[kept]
            order = stratified_order(strata(train.targets), self.data_seed)
            num_val = self._num_val(len(order))
            val_index, train_index = order[:num_val], order[num_val:]
            if num_val:
                self.val_set = LabelledImages(train.images[val_index], train.targets[val_index])
            if self.subset_size is not None:
                train_index = train_index[: self.subset_size]
            train, sources = LabelledImages(train.images[train_index], train.targets[train_index]), sources[train_index]
            if self.synthetic_dir is not None:  # appended, then stored in a stratified order like the rest
                real = len(train.targets)
                train = self._with_synthetic(train)
                sources = torch.cat([sources, torch.arange(len(train.targets) - real) + self.num_sources])
                self.num_sources += len(train.targets) - real
                order = stratified_order(strata(train.targets), self.data_seed)
                train, sources = LabelledImages(train.images[order], train.targets[order]), sources[order]
            self.train_set, self.train_sources = train, sources
        if self.test_set is None and (stage in ("test", None) or (self.val_set is None and stage != "predict")):
            self.test_set = self._evaluation_order(self._checked(self.load_split("test"), "test"))
        if self.val_set is None:
            self.val_set = self.test_set
        if stage == "predict" and self.predict_set is None:
            self._setup_predict()

    def _setup_predict(self) -> None:
        """The images to predict: :attr:`predict_files`, or the test split; batches carry their indices."""
        if self.predict_files is None:
            if self.test_set is None:
                self.test_set = self._evaluation_order(self._checked(self.load_split("test"), "test"))
            images, self.predict_targets = self.test_set
            self.predict_names = [f"test[{index}]" for index in range(len(images))]
        else:
            paths = image_files(self.predict_files)
            images = decode_images(paths, (self.image_size, self.image_size), resize=True)
            self.predict_names = [str(path) for path in paths]
        self.predict_set = LabelledImages(images, torch.arange(len(images)))

    def _evaluation_order(self, split: LabelledImages) -> LabelledImages:
        """``split`` in the stratified order of ``order_seed``: every prefix is a fair sample of it."""
        order = stratified_order(strata(split.targets), self.order_seed)
        return LabelledImages(split.images[order], split.targets[order])

    @property
    def augmentation(self) -> CropFlip:
        """The training augmentation, with its finite set of views (override to use another that declares them)."""
        return CropFlip(self.crop_padding, self.horizontal_flip)

    @property
    def input_identity(self) -> dict[str, Any]:
        """What decides a network's input besides the image and its view: the dataset, the shape, the normalisation."""
        return {
            "dataset": type(self).__name__,
            "input_shape": list(self.input_shape),
            "mean": list(self.mean),
            "std": list(self.std),
            "augmentation": self.augmentation.identity,
        }

    @property
    def overfitting(self) -> bool:
        """Whether the trainer runs with ``overfit_batches`` (same batches every epoch, no augmentation)."""
        return self.trainer is not None and bool(self.trainer.overfit_batches)

    def _num_val(self, num_train: int) -> int:
        num_val = round(self.val_size * num_train) if isinstance(self.val_size, float) else int(self.val_size)
        if isinstance(self.val_size, float) and not 0 <= self.val_size < 1:
            raise ValueError(f"val_size as a fraction must be in [0, 1), got {self.val_size}")
        if num_val >= num_train:
            raise ValueError(f"val_size={self.val_size} leaves no training images out of {num_train}")
        return num_val

    def _checked(self, split: LabelledImages, name: str) -> LabelledImages:
        images, targets = split
        expected = (3, self.image_size, self.image_size)
        if images.dtype != torch.uint8 or images.ndim != 4 or tuple(images.shape[1:]) != expected:
            raise CorruptDatasetError(
                f"{type(self).__name__} {name} split under {self.data_dir}: images are {tuple(images.shape)} "
                f"{images.dtype}, expected [N, {', '.join(map(str, expected))}] uint8"
            )
        if len(images) != len(targets) or len(images) == 0:
            raise CorruptDatasetError(
                f"{type(self).__name__} {name} split under {self.data_dir}: {len(images)} images and "
                f"{len(targets)} targets (expected equal, non-zero counts)"
            )
        if self.task == "regression" and (not targets.is_floating_point() or not targets.isfinite().all()):
            problem = "non-finite values" if targets.is_floating_point() else f"dtype {targets.dtype}"
            raise CorruptDatasetError(
                f"{type(self).__name__} {name} split under {self.data_dir}: regression targets must be finite "
                f"floats (scaled to [0, 1]), got {problem}"
            )
        if self.task == "classification" and (targets.min() < 0 or targets.max() >= self.num_classes):
            raise CorruptDatasetError(
                f"{type(self).__name__} {name} split under {self.data_dir}: labels span "
                f"[{int(targets.min())}, {int(targets.max())}], expected [0, {self.num_classes - 1}]"
            )
        return split

    def _with_synthetic(self, train: LabelledImages) -> LabelledImages:
        """``train`` followed by the synthetic set under ``synthetic_dir`` (checked against this dataset)."""
        synthetic = load_synthetic_set(self.synthetic_dir, self.image_size, self.task, self.num_classes)
        rank_zero_info(f"{type(self).__name__}: {len(train.targets)} real + {len(synthetic.targets)} synthetic images")
        images, targets = torch.cat([train.images, synthetic.images]), torch.cat([train.targets, synthetic.targets])
        return LabelledImages(images, targets)

    def _rank_and_world(self) -> tuple[int, int]:
        if self.trainer is None:
            return 0, 1
        return self.trainer.global_rank, self.trainer.world_size

    def _loader(self, split: LabelledImages | None, name: str, train: bool) -> InMemoryLoader:
        if split is None:
            raise RuntimeError(f"{type(self).__name__}: the {name} split is not loaded; call setup() first")
        rank, world_size = self._rank_and_world()
        if self.overfitting:  # these loaders do not shuffle then: Lightning only recognises torch's SequentialSampler
            warnings.filterwarnings("ignore", message=r"You requested to overfit but enabled \w+ dataloader shuffling")
        sampler = ShardedBatchSampler(
            len(split.targets),
            self.batch_size if train else self.eval_batch_size,
            shuffle=train and not self.overfitting,
            drop_last=train and len(split.targets) // world_size >= self.batch_size,
            even_shards=train,
            seed=self.data_seed,
            rank=rank,
            world_size=world_size,
        )
        indices = train and (self.return_indices or self.return_views)
        return InMemoryLoader(split.images, split.targets, sampler, return_indices=indices)

    def train_dataloader(self) -> InMemoryLoader:
        """Shuffled, sharded training batches of ``uint8`` images (augmented after the device transfer)."""
        loader = self._loader(self.train_set, "train", train=True)
        if self._resume_from is not None:
            loader.sampler.skip_consumed(self._resume_from["epoch"], self._resume_from["batches"])
            self._resume_from = None
        self._train_sampler = loader.sampler
        return loader

    def val_dataloader(self) -> InMemoryLoader:
        """Validation batches in a fixed order (the held-out split, or the test split when ``val_size=0``)."""
        return self._loader(self.val_set, "validation", train=False)

    def test_dataloader(self) -> InMemoryLoader:
        """Test batches in a fixed order."""
        return self._loader(self.test_set, "test", train=False)

    def predict_dataloader(self) -> InMemoryLoader:
        """Batches ``(images, indices)`` of :attr:`predict_files` or the test split; names in :attr:`predict_names`."""
        return self._loader(self.predict_set, "predict", train=False)

    def on_after_batch_transfer(self, batch: tuple[Tensor, ...], dataloader_idx: int) -> tuple[Tensor, ...]:
        """Augment (training only, not with ``overfit_batches``) and normalise a batch already on its device.

        The images change; targets and any sample indices (``return_indices``) pass through as they are; with
        ``return_views`` each image's view id follows them (the unaugmented view's with ``overfit_batches``).
        """
        images, *rest = batch
        if self.trainer is not None and self.trainer.training:
            epoch = self._train_sampler.epoch if self._train_sampler is not None else 0
            if self._consumed["epoch"] != epoch:
                self._consumed = {"epoch": epoch, "batches": 0}
            augmentation = self.augmentation
            if self.overfitting:
                views = torch.full((len(images),), augmentation.identity_view, device=images.device)
            else:
                rank, world_size = self._rank_and_world()
                batch_index = self._consumed["batches"]
                seed = batch_seed(self.data_seed, epoch, batch_index, rank, world_size)
                generator = torch.Generator(device=images.device).manual_seed(seed)
                views = augmentation.draw(len(images), generator, images.device)
                images = augmentation.apply(images, views)
            if self.return_views:
                rest.append(views)
            self._consumed["batches"] += 1
        return (normalize(images, self.mean, self.std), *rest)

    def state_dict(self) -> dict[str, Any]:
        """Progress through the current training epoch, so a resumed run skips the batches already used."""
        return dict(self._consumed)

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore the progress saved by :meth:`state_dict` (called by Lightning when resuming)."""
        self._consumed = {"epoch": int(state_dict["epoch"]), "batches": int(state_dict["batches"])}
        self._resume_from = dict(self._consumed)
