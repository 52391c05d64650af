"""Every lit-kd method, built tiny, with the callbacks its recipes use: the cases of the method-wide test matrices.

``METHOD_CASES[name](work_dir)`` returns a fresh :class:`MethodCase`: the module, its callbacks and a builder of its
DataModule from the generated data folders; teachers are written to ``work_dir`` (the same weights every call, so
two builds of a case are identical). A new method adds one entry here and is then covered by the resume, NaN and
DDP matrices of ``tests/test_method_matrix.py``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import lightning.pytorch as pl
import torch
from torch import nn

from lit_kd.callbacks import BoundarySampleMining, CyclicPairSchedule, DiscriminatorUpdateSchedule
from lit_kd.data import DataFreeDataModule, UTKFaceDataModule
from lit_kd.losses.terms import CrossEntropyTerm, HintTerm, KDTerm
from lit_kd.methods import (
    ActivationMapAdaptation,
    AttentionTransfer,
    BSSDistillation,
    ComposedDistillation,
    ContrastiveRepresentationDistillation,
    DecoupledKD,
    DeepMutualLearning,
    DISTDistillation,
    EnsembleDistillation,
    FitNets,
    HintonKD,
    OnlineAdversarialFeatureKD,
    SeedEnsembleModule,
    SelfDistillation,
    SupervisedModule,
)
from lit_kd.models import CifarResNet, create_model
from tests.support.cgan import tiny_gan
from tests.support.dfad import tiny_dfad
from tests.support.networks import TinyNet
from tests.support.training import tiny_cifar


def cifar(folders: dict[str, Path], batch_size: int) -> pl.LightningDataModule:
    """The generated CIFAR-10 folder: 80 training images (5 batches of 16)."""
    return tiny_cifar(folders["cifar10"], batch_size=batch_size)


def latent_noise(folders: dict[str, Path], batch_size: int) -> pl.LightningDataModule:
    """Data-free training: 5 batches of 8-dimensional noise an epoch; the CIFAR folder's test split evaluates."""
    return DataFreeDataModule(tiny_cifar(folders["cifar10"]), batch_size=batch_size, latent_dim=8, batches_per_epoch=5)


def utkface(folders: dict[str, Path], batch_size: int) -> pl.LightningDataModule:
    """The generated UTKFace folder (16 training faces), a regression DataModule."""
    return UTKFaceDataModule(folders["utkface"], batch_size=max(batch_size // 4, 2), use_cache=False)


class MethodCase(NamedTuple):
    """A method under test: the module, the callbacks its recipes add, and how to build its data."""

    module: pl.LightningModule
    callbacks: list[pl.Callback]
    data: Callable[[dict[str, Path], int], pl.LightningDataModule] = cifar


Case = Callable[[Path], MethodCase]


def tiny_resnet(width: int = 4, seed: int | None = None) -> CifarResNet:
    """A ResNet-8 with ``width``/2x/4x channels: a zoo network (feature maps) small enough for a test."""
    if seed is not None:
        torch.manual_seed(seed)
    return CifarResNet(8, stem_channels=width, stage_channels=(width, 2 * width, 4 * width))


def saved(network: nn.Module, path: Path) -> str:
    """Write ``network``'s weights once to ``path`` and return it (a teacher checkpoint)."""
    if not path.exists():
        torch.save(network.state_dict(), path)
    return str(path)


def logit_teacher(work_dir: Path) -> str:
    torch.manual_seed(100)
    return saved(TinyNet(width=16), work_dir / "tinynet_teacher.pt")


def feature_teacher(work_dir: Path) -> str:
    return saved(tiny_resnet(8, seed=101), work_dir / "resnet_teacher.pt")


def supervised(work_dir: Path) -> MethodCase:
    return MethodCase(SupervisedModule(TinyNet(dropout=0.3)), [])


def hinton(work_dir: Path) -> MethodCase:
    return MethodCase(HintonKD(TinyNet(dropout=0.3), TinyNet(width=16), teacher_checkpoint=logit_teacher(work_dir)), [])


def dkd(work_dir: Path) -> MethodCase:
    """DKD with a 2-epoch warm-up: the resumed run must restore the epoch the factor is computed from."""
    module = DecoupledKD(
        TinyNet(dropout=0.3), TinyNet(width=16), warmup_epochs=2, teacher_checkpoint=logit_teacher(work_dir)
    )
    return MethodCase(module, [])


def dist(work_dir: Path) -> MethodCase:
    return MethodCase(DISTDistillation(TinyNet(), TinyNet(width=16), teacher_checkpoint=logit_teacher(work_dir)), [])


def bss(work_dir: Path) -> MethodCase:
    module = BSSDistillation(TinyNet(), TinyNet(width=16), teacher_checkpoint=logit_teacher(work_dir))
    return MethodCase(module, [BoundarySampleMining(max_samples=8, num_steps=3)])


def fitnets(work_dir: Path) -> MethodCase:
    return MethodCase(FitNets(tiny_resnet(), tiny_resnet(8), teacher_checkpoint=feature_teacher(work_dir)), [])


def attention_transfer(work_dir: Path) -> MethodCase:
    return MethodCase(
        AttentionTransfer(tiny_resnet(), tiny_resnet(8), teacher_checkpoint=feature_teacher(work_dir)), []
    )


def crd(work_dir: Path) -> MethodCase:
    """CRD with 16 negatives: its memory banks are trained tensors too (resume and DDP compare them)."""
    module = ContrastiveRepresentationDistillation(
        tiny_resnet(), tiny_resnet(8), feature_dim=8, num_negatives=16, teacher_checkpoint=feature_teacher(work_dir)
    )
    return MethodCase(module, [])


def composed(work_dir: Path) -> MethodCase:
    """A composed objective with a trained term (the hint regressor) and a warm-up: CE + KD + hint."""
    terms = [CrossEntropyTerm(weight=0.5), KDTerm(weight=0.5, warmup_epochs=2), HintTerm(weight=10.0)]
    module = ComposedDistillation(tiny_resnet(), tiny_resnet(8), terms, teacher_checkpoint=feature_teacher(work_dir))
    return MethodCase(module, [])


def ama(work_dir: Path) -> MethodCase:
    return MethodCase(
        ActivationMapAdaptation(tiny_resnet(), tiny_resnet(8), teacher_checkpoint=feature_teacher(work_dir)), []
    )


def ensemble(work_dir: Path) -> MethodCase:
    checkpoints = []
    for seed in (1, 2):
        torch.manual_seed(seed)
        checkpoints.append(saved(TinyNet(width=16), work_dir / f"member{seed}.pt"))
    teachers = [TinyNet(width=16), TinyNet(width=16)]
    return MethodCase(EnsembleDistillation(TinyNet(), teachers, teacher_checkpoints=checkpoints), [])


def seeds(work_dir: Path) -> MethodCase:
    return MethodCase(SeedEnsembleModule([TinyNet(), TinyNet()]), [])


def self_distillation(work_dir: Path) -> MethodCase:
    torch.manual_seed(102)
    teacher = saved(TinyNet(), work_dir / "previous_generation.pt")
    return MethodCase(SelfDistillation(TinyNet(), TinyNet(), teacher_checkpoint=teacher), [])


def dml(work_dir: Path) -> MethodCase:
    return MethodCase(DeepMutualLearning([TinyNet(), TinyNet(width=16)]), [])


def afd_cyclic(work_dir: Path) -> MethodCase:
    module = OnlineAdversarialFeatureKD([tiny_resnet(4), tiny_resnet(8), tiny_resnet(4)])
    return MethodCase(module, [CyclicPairSchedule(steps_per_pair=2), DiscriminatorUpdateSchedule(steps_per_update=2)])


def dfad(work_dir: Path) -> MethodCase:
    return MethodCase(tiny_dfad(logit_teacher(work_dir)), [], latent_noise)


def regression(work_dir: Path) -> MethodCase:
    def optimizer(parameters):  # the UTKFace recipes' SGD learning rate: 0.1 diverges on the MSE of ages
        return torch.optim.SGD(parameters, lr=0.01, momentum=0.9, weight_decay=5e-4)

    return MethodCase(SupervisedModule(create_model("resnet8", num_classes=1), optimizer=optimizer), [], utkface)


def cgan(work_dir: Path) -> MethodCase:
    """cGAN-KD stage 1: a class-conditional GAN on the labelled images."""
    return MethodCase(tiny_gan(), [])


def ccgan(work_dir: Path) -> MethodCase:
    """cGAN-KD stage 1 for regression: a continuous-label GAN on UTKFace ages."""
    return MethodCase(tiny_gan(num_classes=None, image_size=64), [], utkface)


METHOD_CASES: dict[str, Case] = {
    "supervised": supervised,
    "hinton": hinton,
    "dkd": dkd,
    "dist": dist,
    "bss": bss,
    "fitnets": fitnets,
    "attention_transfer": attention_transfer,
    "ama": ama,
    "composed": composed,
    "crd": crd,
    "ensemble": ensemble,
    "seeds": seeds,
    "self_distillation": self_distillation,
    "dml": dml,
    "afd_cyclic": afd_cyclic,
    "dfad": dfad,
    "regression": regression,
    "cgan": cgan,
    "ccgan": ccgan,
}


def trained_weights(module: pl.LightningModule) -> dict[str, torch.Tensor]:
    """Every trained tensor of ``module`` (parameters and buffers), without the frozen teachers."""
    return {
        key: value.detach().cpu().clone()
        for key, value in module.state_dict().items()
        if not key.startswith(("teacher.", "teachers."))
    }
