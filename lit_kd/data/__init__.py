"""LightningDataModules: images decoded once into memory, augmented batch-wise on the training device."""

from lit_kd.data.augmentation import normalize, random_crop_flip
from lit_kd.data.base import InMemoryImageDataModule, LabelledImages
from lit_kd.data.cifar import CIFAR10_CLASSES, CIFAR10DataModule
from lit_kd.data.image_files import CorruptDatasetError
from lit_kd.data.loader import InMemoryLoader, ShardedBatchSampler
from lit_kd.data.tiny_imagenet import TinyImageNetDataModule

__all__ = [
    "CIFAR10_CLASSES",
    "CIFAR10DataModule",
    "CorruptDatasetError",
    "InMemoryImageDataModule",
    "InMemoryLoader",
    "LabelledImages",
    "ShardedBatchSampler",
    "TinyImageNetDataModule",
    "normalize",
    "random_crop_flip",
]
