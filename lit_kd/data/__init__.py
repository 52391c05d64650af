"""LightningDataModules: images decoded once into memory, augmented batch-wise on the training device."""

from lit_kd.data.augmentation import CropFlip, normalize, random_crop_flip
from lit_kd.data.base import InMemoryImageDataModule, LabelledImages
from lit_kd.data.cifar import CIFAR10_CLASSES, CIFAR10DataModule
from lit_kd.data.data_free import DataFreeDataModule, LatentNoiseLoader, LatentSeedSampler
from lit_kd.data.image_files import CorruptDatasetError
from lit_kd.data.indices import WithIndices
from lit_kd.data.loader import InMemoryLoader, ShardedBatchSampler
from lit_kd.data.synthetic import SyntheticSet, load_synthetic_set, save_synthetic_set
from lit_kd.data.tiny_imagenet import TinyImageNetDataModule
from lit_kd.data.utkface import UTKFaceDataModule

__all__ = [
    "CropFlip",
    "CIFAR10_CLASSES",
    "CIFAR10DataModule",
    "CorruptDatasetError",
    "DataFreeDataModule",
    "InMemoryImageDataModule",
    "InMemoryLoader",
    "LabelledImages",
    "LatentNoiseLoader",
    "LatentSeedSampler",
    "ShardedBatchSampler",
    "SyntheticSet",
    "TinyImageNetDataModule",
    "UTKFaceDataModule",
    "WithIndices",
    "load_synthetic_set",
    "normalize",
    "random_crop_flip",
    "save_synthetic_set",
]
