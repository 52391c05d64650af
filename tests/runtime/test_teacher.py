"""The teacher's inference copy and feature taps keep the values the layers output (issue 22's numeric probes).

The references are the same networks run without folding, or their layers called one by one: a folded BatchNorm may
not change what a tap reads or what AMA's adapted layer feeds on, a module called twice may not be folded as if it
were called once, an in-place operation after a tapped layer may not change the recorded map, and the copy's weights
are ordinary tensors even when it is first built inside ``torch.inference_mode``.
"""

from __future__ import annotations

from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch
from torch import nn

from lit_kd.methods import ActivationMapAdaptation, AttentionTransfer, FitNets
from lit_kd.models import create_model
from lit_kd.models.features import FeatureTaps
from lit_kd.models.inference import inference_copy
from tests.support.networks import torchvision_network
from tests.support.training import tiny_cifar, tiny_trainer


def randomised_batchnorm(network: nn.Module, seed: int = 0) -> nn.Module:
    """Running statistics and affine parameters far from the identity, so that a BatchNorm lost or doubled shows."""
    generator = torch.Generator().manual_seed(seed)
    for module in network.modules():
        if isinstance(module, nn.BatchNorm2d):
            size = module.num_features
            module.running_mean.copy_(torch.rand(size, generator=generator) - 0.5)
            module.running_var.copy_(torch.rand(size, generator=generator) + 0.5)
            module.weight.data.copy_(torch.rand(size, generator=generator) + 0.5)
            module.bias.data.copy_(torch.rand(size, generator=generator) - 0.5)
    return network.eval()


def relative_error(value: torch.Tensor, reference: torch.Tensor) -> float:
    return float((value - reference).abs().max() / reference.abs().max())


def zoo_resnet20(seed: int) -> nn.Module:
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return create_model("resnet20", num_classes=10)


# (network, two tapped convolutions, the BatchNorms that read them): torchvision's and the zoo's names
TAPPED_CONVOLUTIONS = {
    "torchvision_resnet18": (
        lambda seed: torchvision_network("resnet18", seed=seed),
        ["conv1", "layer2.0.conv1"],
        {"bn1", "layer2.0.bn1"},
    ),
    "zoo_resnet20": (zoo_resnet20, ["stem.0", "stages.2.0.conv2"], {"stem.1", "stages.2.0.bn2"}),
}


@pytest.mark.parametrize("name", list(TAPPED_CONVOLUTIONS))
def test_teacher_taps_on_convolutions_equal_the_unfused_networks(name: str) -> None:
    build, layers, following_norms = TAPPED_CONVOLUTIONS[name]
    module = AttentionTransfer(
        randomised_batchnorm(build(1)), randomised_batchnorm(build(0)), student_layers=layers, teacher_layers=layers
    )
    images = torch.randn(4, 3, 32, 32)
    copy = module.frozen_teacher
    _, fast_maps = module.teacher_forward(lambda batch: module.teacher_taps(batch, copy), images)
    with torch.no_grad():
        _, unfused_maps = module.teacher_taps(images)  # the teacher itself: nothing folded
        first_layer = module.teacher.get_submodule(layers[0])(images)  # the first layer reads the images
    for layer, fast, unfused in zip(layers, fast_maps, unfused_maps, strict=True):
        assert relative_error(fast, unfused) < 1e-5, layer
    assert relative_error(fast_maps[0], first_layer) < 1e-5
    # every other BatchNorm is still folded: only those reading a tapped convolution are left
    kept = {path for path, layer in copy.named_modules() if isinstance(layer, nn.BatchNorm2d)}
    assert kept == following_norms


@pytest.mark.parametrize("fast_teacher", [True, False], ids=["fast", "unfused"])
@pytest.mark.parametrize("name", list(TAPPED_CONVOLUTIONS))
def test_ama_adapted_teacher_starts_as_the_teacher_on_an_adapted_convolution(name: str, fast_teacher: bool) -> None:
    build, layers, _ = TAPPED_CONVOLUTIONS[name]
    adapted_layer = layers[1]  # a convolution that a BatchNorm reads
    module = ActivationMapAdaptation(
        randomised_batchnorm(build(1)),
        randomised_batchnorm(build(0)),
        adapted_layer=adapted_layer,
        fast_teacher=fast_teacher,
    )
    images = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        adapted_map, adapted_logits = module.adapted_teacher(images)
        teacher_logits = module.teacher(images)
    assert relative_error(adapted_logits, teacher_logits) < 1e-5
    assert adapted_map.shape[1] == module.teacher.get_submodule(adapted_layer).out_channels


class ReusedPair(nn.Module):
    """One convolution + BatchNorm pair applied twice (traceable)."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.conv = nn.Conv2d(8, 8, 3, padding=1)
        self.bn = nn.BatchNorm2d(8)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        features = torch.relu(self.bn(self.conv(self.stem(images))))
        return self.bn(self.conv(features)).mean(dim=(2, 3))


class ReusedConvolution(nn.Module):
    """A ``Sequential`` conv + BatchNorm pair whose convolution is also used alone; data-dependent, so untraceable."""

    def __init__(self) -> None:
        super().__init__()
        self.block = nn.Sequential(nn.Conv2d(3, 3, 3, padding=1), nn.BatchNorm2d(3))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        features = self.block(images)
        if features.sum() > -1e9:  # data-dependent control flow: torch.fx cannot trace this network
            features = features + self.block[0](images)
        return features.mean(dim=(2, 3))


@pytest.mark.parametrize("network_class", [ReusedPair, ReusedConvolution])
def test_modules_called_more_than_once_are_not_folded(network_class: type[nn.Module]) -> None:
    torch.manual_seed(0)
    network = randomised_batchnorm(network_class())
    images = torch.randn(4, 3, 16, 16)
    with torch.no_grad():
        reference = network(images)
        folded = inference_copy(network)(images)
    assert relative_error(folded, reference) < 1e-5


def inplace_relu_taps_reference(network: nn.Module, images: torch.Tensor) -> list[torch.Tensor]:
    """torchvision ResNet-18's ``layer1.0.bn1`` and ``layer1.0.bn2`` outputs, computed layer by layer."""
    block = network.layer1[0]
    with torch.no_grad():
        stem = network.maxpool(torch.relu(network.bn1(network.conv1(images))))
        first = block.bn1(block.conv1(stem))
        second = block.bn2(block.conv2(torch.relu(first)))
    return [first, second]


def test_student_taps_keep_a_batchnorm_output_that_inplace_operations_follow() -> None:
    """``layer1.0.bn1`` is followed by ``ReLU(inplace=True)``, ``layer1.0.bn2`` by ``out += identity``."""
    network = randomised_batchnorm(torchvision_network("resnet18"))
    images = torch.randn(4, 3, 32, 32)
    references = inplace_relu_taps_reference(network, images)
    taps = FeatureTaps(network, ["layer1.0.bn1", "layer1.0.bn2"], "student_layers")
    with torch.no_grad():
        _, maps = taps(images)
    for feature_map, reference in zip(maps, references, strict=True):
        assert reference.min() < 0 and feature_map.min() < 0
        assert relative_error(feature_map, reference) < 1e-5


@pytest.mark.parametrize("fast_teacher", [True, False], ids=["fast", "unfused"])
def test_teacher_taps_keep_a_batchnorm_output_that_inplace_operations_follow(fast_teacher: bool) -> None:
    layers = ["layer1.0.bn1", "layer1.0.bn2"]
    module = AttentionTransfer(
        randomised_batchnorm(torchvision_network("resnet18", seed=1)),
        randomised_batchnorm(torchvision_network("resnet18")),
        student_layers=layers,
        teacher_layers=layers,
        fast_teacher=fast_teacher,
    )
    images = torch.randn(4, 3, 32, 32)
    references = inplace_relu_taps_reference(module.teacher, images)
    teacher = module.frozen_teacher
    _, maps = module.teacher_forward(lambda batch: module.teacher_taps(batch, teacher), images)
    for feature_map, reference in zip(maps, references, strict=True):
        assert feature_map.min() < 0
        assert relative_error(feature_map, reference) < 1e-5


@pytest.mark.parametrize("method", [AttentionTransfer, FitNets])
def test_teacher_copy_built_in_a_training_step_can_be_differentiated(
    method: type, tmp_path: Path, cifar_folder: Path
) -> None:
    class RecordTeacherCopy(pl.Callback):
        def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx) -> None:
            self.copy = module.frozen_teacher  # the copy the training step built (cached: not made again here)

    torch.manual_seed(0)
    module = method(create_model("resnet8", num_classes=10), create_model("resnet14", num_classes=10))
    recorder = RecordTeacherCopy()
    trainer = tiny_trainer(tmp_path, limit_train_batches=1, limit_val_batches=0, callbacks=[recorder])
    trainer.fit(module, tiny_cifar(cifar_folder))
    copy = recorder.copy
    assert copy is not module.teacher
    assert not any(tensor.is_inference() for tensor in [*copy.parameters(), *copy.buffers()])
    images = torch.randn(2, 3, 32, 32, requires_grad=True)
    copy(images).logsumexp(dim=1).sum().backward()
    expected = torch.randn(2, 3, 32, 32, requires_grad=True)
    with torch.no_grad():
        expected.copy_(images)
    module.teacher(expected).logsumexp(dim=1).sum().backward()  # the teacher itself (eval, unfolded)
    torch.testing.assert_close(images.grad, expected.grad, rtol=1e-4, atol=1e-6)
