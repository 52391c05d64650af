"""Behaviour of the network zoo in lit_kd.models."""

from __future__ import annotations

import doctest
from collections.abc import Callable
from types import ModuleType

import pytest
import torch
import torchvision
from torch import nn
from torch.nn import functional as F

from lit_kd.models import (
    VGG,
    CifarResNet,
    FeatureNet,
    FeatureOutput,
    MobileNetV2,
    WideResNet,
    available_models,
    base,
    create_model,
    mobilenetv2,
    registry,
    resnet_cifar,
    vgg,
    wrn,
)

NUM_CLASSES = 7  # distinct from every default, so a forgotten num_classes shows up
BIG_MODELS = {"wrn_28_10"}  # 36M parameters: one small forward only
ONE_PER_BLOCK_TYPE = ["resnet8", "resnet8x4", "wrn_16_2", "mobilenetv2", "vgg8"]

EXPECTED_NAMES = [
    "resnet8", "resnet14", "resnet20", "resnet26", "resnet32", "resnet44", "resnet56", "resnet110",
    "resnet8x4", "resnet32x4",
    "wrn_16_2", "wrn_40_2", "wrn_16_4", "wrn_40_4", "wrn_28_10",
    "mobilenetv2",
    "vgg8", "vgg11", "vgg13",
    "resnet18_8x", "resnet34_8x",
]  # fmt: skip


def downsampling_factors(name: str) -> list[int]:
    """Input size divided by the spatial size of each feature map, per architecture family."""
    if name.endswith("_8x"):
        return [1, 1, 2, 4, 8]
    if name.startswith(("resnet", "wrn")):
        return [1, 1, 2, 4]
    if name == "mobilenetv2":
        return [1, 1, 2, 4, 8]
    if name.startswith("vgg"):
        return [1, 2, 4, 8, 8]
    raise AssertionError(f"no expected downsampling for {name}")


def parameter_count(model: nn.Module) -> int:
    return sum(parameter.numel() for parameter in model.parameters())


def first_conv(model: FeatureNet) -> nn.Conv2d:
    return next(module for module in model.stem.modules() if isinstance(module, nn.Conv2d))


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


def test_registry_holds_exactly_the_documented_names() -> None:
    assert available_models() == EXPECTED_NAMES


@pytest.mark.parametrize("size", [32, 64])
@pytest.mark.parametrize("name", [name for name in EXPECTED_NAMES if name not in BIG_MODELS])
def test_forward_features_shapes(name: str, size: int) -> None:
    model = create_model(name, num_classes=NUM_CLASSES).eval()
    with torch.no_grad():
        output = model.forward_features(torch.randn(2, 3, size, size))

    assert isinstance(output, FeatureOutput)
    assert model.num_classes == NUM_CLASSES
    assert output.logits.shape == (2, NUM_CLASSES)

    # One map for the stem and one per stage, with the declared channels and the expected resolution.
    assert len(output.features) == len(model.feature_channels) == 1 + len(model.stages)
    expected_sizes = [size // factor for factor in downsampling_factors(name)]
    for feature, channels, expected_size in zip(output.features, model.feature_channels, expected_sizes, strict=True):
        assert feature.shape == (2, channels, expected_size, expected_size)

    # The embedding is the pooled last map (post-activation) and the classifier's whole input.
    assert output.embedding.shape == (2, model.embedding_dim)
    assert model.embedding_dim == model.feature_channels[-1] == model.classifier.in_features
    assert output.features[-1].min() >= 0
    torch.testing.assert_close(output.embedding, output.features[-1].mean(dim=(2, 3)))
    torch.testing.assert_close(output.logits, model.classifier(output.embedding))


@pytest.mark.parametrize("name", ONE_PER_BLOCK_TYPE)
def test_forward_is_logits_and_features_are_plain_stage_outputs(name: str) -> None:
    model = create_model(name, num_classes=NUM_CLASSES).eval()
    images = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        output = model.forward_features(images)
        torch.testing.assert_close(model(images), output.logits)
        # Each map is exactly what its stage produced, not altered afterwards by an in-place operation.
        torch.testing.assert_close(model.stem(images), output.features[0])
        for stage, stage_input, stage_output in zip(model.stages, output.features, output.features[1:], strict=False):
            torch.testing.assert_close(stage(stage_input), stage_output)


def test_wide_resnet_28_10_forward() -> None:
    model = create_model("wrn_28_10", num_classes=NUM_CLASSES).eval()
    with torch.no_grad():
        output = model.forward_features(torch.randn(1, 3, 32, 32))
    assert output.logits.shape == (1, NUM_CLASSES)
    assert [feature.shape[1] for feature in output.features] == model.feature_channels == [16, 160, 320, 640]


@pytest.mark.parametrize(
    ("name", "num_classes", "published_millions"),
    [
        ("resnet20", 10, 0.27),  # He et al. 2016, Table 6
        ("resnet56", 10, 0.85),
        ("resnet110", 10, 1.7),
        ("wrn_40_2", 10, 2.2),  # Zagoruyko & Komodakis 2016, Table 4
        ("wrn_16_2", 100, 0.70),  # Tian et al. 2020 (RepDistiller), CIFAR-100 tables
        ("resnet8x4", 100, 1.23),
        ("resnet32x4", 100, 7.43),
        ("vgg8", 100, 3.96),
        ("vgg13", 100, 9.46),
    ],
)
def test_parameter_count_matches_published(name: str, num_classes: int, published_millions: float) -> None:
    millions = parameter_count(create_model(name, num_classes=num_classes)) / 1e6
    assert millions == pytest.approx(published_millions, rel=0.03)


@pytest.mark.parametrize("width_mult", [1.0, 0.5])
def test_mobilenetv2_has_torchvision_parameter_count(width_mult: float) -> None:
    # The CIFAR changes only alter strides, so the weights match torchvision's ImageNet model exactly.
    reference = torchvision.models.mobilenet_v2(num_classes=10, width_mult=width_mult)
    assert parameter_count(MobileNetV2(num_classes=10, width_mult=width_mult)) == parameter_count(reference)


def test_resnet_x4_widths() -> None:
    model = create_model("resnet32x4", num_classes=100)
    assert isinstance(model, CifarResNet)
    assert model.feature_channels == [32, 64, 128, 256]
    assert [len(stage) for stage in model.stages] == [5, 5, 5]


@pytest.mark.parametrize("name", ONE_PER_BLOCK_TYPE)
def test_gradient_reaches_first_conv(name: str) -> None:
    model = create_model(name, num_classes=NUM_CLASSES).train()
    output = model.forward_features(torch.randn(2, 3, 32, 32))
    F.cross_entropy(output.logits, torch.tensor([0, 1])).backward()
    stem_gradient = first_conv(model).weight.grad
    assert stem_gradient is not None and torch.isfinite(stem_gradient).all() and stem_gradient.abs().sum() > 0

    # A loss on an intermediate map alone (as in FitNets) also trains the layers below it.
    model.zero_grad()
    model.forward_features(torch.randn(2, 3, 32, 32)).features[1].pow(2).mean().backward()
    assert first_conv(model).weight.grad.abs().sum() > 0
    assert model.classifier.weight.grad is None or model.classifier.weight.grad.abs().sum() == 0


@pytest.mark.parametrize(
    ("build", "allowed_fragment"),
    [
        (lambda: CifarResNet(depth=21), "6n + 2"),
        (lambda: CifarResNet(depth=2), "20"),
        (lambda: WideResNet(depth=17, widen_factor=2), "6n + 4"),
        (lambda: WideResNet(depth=4, widen_factor=2), "16"),
        (lambda: VGG(depth=16), "[8, 11, 13]"),
    ],
)
def test_bad_depth_names_allowed_values(build: Callable[[], nn.Module], allowed_fragment: str) -> None:
    with pytest.raises(ValueError, match="depth") as error:
        build()
    assert allowed_fragment in str(error.value)


@pytest.mark.parametrize(
    ("build", "argument"),
    [
        (lambda: CifarResNet(depth=20, stage_channels=(16, 32)), "stage_channels"),
        (lambda: CifarResNet(depth=20, stem_channels=0), "stem_channels"),
        (lambda: WideResNet(depth=16, widen_factor=0), "widen_factor"),
        (lambda: WideResNet(depth=16, widen_factor=2, dropout=1.0), "dropout"),
        (lambda: MobileNetV2(width_mult=0.0), "width_mult"),
        (lambda: VGG(depth=8, num_classes=0), "num_classes"),
    ],
)
def test_bad_arguments_are_named(build: Callable[[], nn.Module], argument: str) -> None:
    with pytest.raises(ValueError, match=argument):
        build()


def test_unknown_name_lists_available_models() -> None:
    with pytest.raises(ValueError, match="resnet1000") as error:
        create_model("resnet1000", num_classes=10)
    assert all(name in str(error.value) for name in EXPECTED_NAMES)


def test_create_model_forwards_options_but_not_fixed_architecture() -> None:
    model = create_model("wrn_16_2", num_classes=10, dropout=0.3)
    assert [module.p for module in model.modules() if isinstance(module, nn.Dropout)] == [0.3, 0.3, 0.3, 0.3, 0.3, 0.3]
    assert create_model("mobilenetv2", num_classes=10, width_mult=0.5).feature_channels == [16, 16, 16, 48, 1280]
    with pytest.raises(ValueError, match="depth"):
        create_model("resnet20", num_classes=10, depth=32)


def test_classes_build_from_yaml_class_path() -> None:
    jsonargparse = pytest.importorskip("jsonargparse")
    parser = jsonargparse.ArgumentParser()
    parser.add_subclass_arguments(FeatureNet, "model")
    config = parser.parse_string(
        "model:\n"
        "  class_path: lit_kd.models.CifarResNet\n"
        "  init_args: {depth: 8, num_classes: 100, stem_channels: 32, stage_channels: [64, 128, 256]}\n"
    )
    instantiate = getattr(parser, "instantiate", None) or parser.instantiate_classes
    model = instantiate(config).model
    assert isinstance(model, CifarResNet)
    assert model.num_classes == 100
    assert parameter_count(model) == parameter_count(create_model("resnet8x4", num_classes=100))


@pytest.mark.parametrize("module", [base, resnet_cifar, wrn, mobilenetv2, vgg, registry])
def test_docstring_examples_run(module: ModuleType) -> None:
    result = doctest.testmod(module)
    assert result.attempted > 0
    assert result.failed == 0
