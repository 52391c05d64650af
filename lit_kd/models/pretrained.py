"""Pretrained networks by name, each with its file, checksum, architecture, input normalisation and accuracy.

Like torchvision's ``Weights`` enums: a name (``cifar10_resnet56``) carries where the weights come from, their
SHA-256, the architecture they fit, the normalisation they were trained with and their reported accuracy, and
:class:`PretrainedNetwork` builds the network and loads them after checking the file. Nothing is downloaded unless
asked (``download=True``); the files are looked up in ``weights_dir``, else ``$LIT_KD_WEIGHTS``, else
``~/.cache/lit-kd/weights``.
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from lit_kd.checkpointing import extract_state_dict, safe_load
from lit_kd.models.resnet_cifar import CifarResNet

#: ImageNet channel statistics, the normalisation many public CIFAR networks were trained with.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
WEIGHTS_ENVIRONMENT_VARIABLE = "LIT_KD_WEIGHTS"


def default_weights_dir() -> Path:
    """``$LIT_KD_WEIGHTS``, else ``$XDG_CACHE_HOME/lit-kd/weights``, else ``~/.cache/lit-kd/weights``."""
    if WEIGHTS_ENVIRONMENT_VARIABLE in os.environ:
        return Path(os.environ[WEIGHTS_ENVIRONMENT_VARIABLE]).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "lit-kd" / "weights"


def akamaster_key(key: str) -> str:
    """A key of akamaster/pytorch_resnet_cifar10's ResNets (``module.`` already removed) in :class:`CifarResNet` names.

    Example:
        >>> [akamaster_key(k) for k in ("conv1.weight", "bn1.bias", "layer2.0.conv1.weight", "linear.weight")]
        ['stem.0.weight', 'stem.1.bias', 'stages.1.0.conv1.weight', 'classifier.weight']
    """
    key = re.sub(r"^conv1\.", "stem.0.", key)
    key = re.sub(r"^bn1\.", "stem.1.", key)
    key = re.sub(r"^layer(\d+)\.", lambda match: f"stages.{int(match.group(1)) - 1}.", key)
    return re.sub(r"^linear\.", "classifier.", key)


@dataclass(frozen=True)
class PretrainedWeights:
    """Everything known about one pretrained weights file.

    Attributes:
        name: the name networks are built by (``cifar10_resnet56``).
        file_name: the file's name in the weights folder.
        sha256: its SHA-256, checked before loading.
        url: where to get it (used only with ``download=True``).
        architecture: :class:`~lit_kd.models.CifarResNet` arguments the weights fit.
        num_classes: outputs of the network.
        mean: per-channel input mean the network was trained with (images in ``[0, 1]``).
        std: per-channel input std.
        reported_top1: top-1 accuracy (%) its authors report, and on what.
        source: where the weights and their licence come from.
    """

    name: str
    file_name: str
    sha256: str
    url: str
    architecture: dict[str, Any]
    num_classes: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    reported_top1: float
    source: str
    metadata: dict[str, Any] = field(default_factory=dict)

    def path(self, weights_dir: str | Path | None = None) -> Path:
        """Where the file is expected: ``weights_dir`` or :func:`default_weights_dir`."""
        return (
            Path(weights_dir).expanduser() / self.file_name if weights_dir else default_weights_dir() / self.file_name
        )

    def verified_path(self, weights_dir: str | Path | None = None, download: bool = False) -> Path:
        """The file, after checking its SHA-256 (downloaded first when missing and ``download``).

        Raises:
            FileNotFoundError: the file is missing (and not downloaded); names the file, the SHA-256 and the URL.
            ValueError: its SHA-256 differs; names both hashes.
        """
        path = self.path(weights_dir)
        if not path.is_file() and download:
            path.parent.mkdir(parents=True, exist_ok=True)
            torch.hub.download_url_to_file(self.url, str(path), hash_prefix=self.sha256[:8])
        if not path.is_file():
            raise FileNotFoundError(
                f"pretrained weights {self.name!r}: {path} is missing (expected SHA-256 {self.sha256}). Get it from "
                f"{self.url} into that folder, point weights_dir or ${WEIGHTS_ENVIRONMENT_VARIABLE} at the folder "
                "holding it, or pass download=True."
            )
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        if digest != self.sha256:
            raise ValueError(
                f"pretrained weights {self.name!r}: {path} has SHA-256 {digest}, expected {self.sha256} (a different "
                f"or corrupt file); get the original from {self.url}"
            )
        return path

    def state_dict(self, weights_dir: str | Path | None = None, download: bool = False) -> dict[str, Tensor]:
        """The verified weights in :class:`~lit_kd.models.CifarResNet` names (loaded with ``weights_only=True``)."""
        path = self.verified_path(weights_dir, download)
        return {akamaster_key(key): value for key, value in extract_state_dict(safe_load(path), path).items()}


_AKAMASTER = "akamaster/pytorch_resnet_cifar10 (Yerlan Idelbayev, BSD 2-clause), trained 200 epochs on CIFAR-10"
_AKAMASTER_URL = "https://github.com/akamaster/pytorch_resnet_cifar10/raw/master/pretrained_models/{}"
#: Top-1 (%) measured on ``../shared/data/cifar10-jpg.tar.gz`` (a lossy JPEG re-encoding of CIFAR-10, not comparable
#: with published tables) by the weights' README: Pillow decode, ImageNet normalisation, no augmentation.
_AKAMASTER_FILES = {
    20: ("resnet20-12fca82f.th", "12fca82f0bebc4135bf1f32f6e3710e61d5108578464b84fd6d7f5c1b04036c8", 91.73, 81.03),
    32: ("resnet32-d509ac18.th", "d509ac1820d7f25398913559d7e81a13229b1e7adc5648e3bfa5e22dc137f850", 92.63, 82.56),
    44: ("resnet44-014dd654.th", "014dd6541728a1c700b1642ab640e211dc6eb8ed507d70697458dc8f8a0ae2e4", 93.10, 82.67),
    56: ("resnet56-4bfd9763.th", "4bfd97631478d6b638d2764fd2baff3edb1d7d82252d54439343b6596b9b5367", 93.39, 83.20),
}

PRETRAINED_WEIGHTS: dict[str, PretrainedWeights] = {
    f"cifar10_resnet{depth}": PretrainedWeights(
        name=f"cifar10_resnet{depth}",
        file_name=file_name,
        sha256=sha256,
        url=_AKAMASTER_URL.format(file_name),
        architecture={"depth": depth, "shortcut": "zero_pad"},
        num_classes=10,
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
        reported_top1=reported,
        source=_AKAMASTER,
        metadata={"top1_cifar10_jpg": measured},
    )
    for depth, (file_name, sha256, reported, measured) in _AKAMASTER_FILES.items()
}


def available_pretrained() -> list[str]:
    """Names :class:`PretrainedNetwork` accepts.

    Example:
        >>> available_pretrained()
        ['cifar10_resnet20', 'cifar10_resnet32', 'cifar10_resnet44', 'cifar10_resnet56']
    """
    return list(PRETRAINED_WEIGHTS)


def pretrained_weights(name: str) -> PretrainedWeights:
    """The record of ``name``; the error lists the available names."""
    if name not in PRETRAINED_WEIGHTS:
        raise ValueError(f"unknown pretrained network {name!r}; available: {', '.join(available_pretrained())}")
    return PRETRAINED_WEIGHTS[name]


class PretrainedNetwork(CifarResNet):
    """A zoo network with pretrained weights, built by name: usable as a teacher, a student or an online network.

    It is the :class:`~lit_kd.models.CifarResNet` its weights fit (a :class:`~lit_kd.models.FeatureNet`, so
    feature-based methods read its maps like any zoo network's), loaded from the verified file, and it declares the
    input normalisation it was trained with (``input_mean``/``input_std``). Methods feed it batches in the
    DataModule's normalisation and convert them (:func:`~lit_kd.models.normalization.match_input_normalization`);
    called on its own it expects inputs normalised with ``input_mean``/``input_std``.

    In YAML, in any ``student``/``teacher``/``networks`` slot::

        teacher:
          class_path: lit_kd.models.PretrainedNetwork
          init_args: {name: cifar10_resnet56}

    Args:
        name: one of :func:`available_pretrained` (:data:`PRETRAINED_WEIGHTS` says what each is).
        weights_dir: folder holding the file; default ``$LIT_KD_WEIGHTS`` or ``~/.cache/lit-kd/weights``.
        download: fetch the file from its URL when it is missing (nothing is downloaded otherwise).

    Example:
        >>> PretrainedNetwork("cifar10_resnet8")
        Traceback (most recent call last):
        ...
        ValueError: unknown pretrained network 'cifar10_resnet8'; available: cifar10_resnet20, cifar10_resnet32, \
cifar10_resnet44, cifar10_resnet56
    """

    def __init__(self, name: str, weights_dir: str | None = None, download: bool = False) -> None:
        spec = pretrained_weights(name)
        super().__init__(num_classes=spec.num_classes, **spec.architecture)
        self.load_state_dict(spec.state_dict(weights_dir, download))
        self.weights_name = name
        self.input_mean, self.input_std = spec.mean, spec.std
