"""Network zoo for distillation: CIFAR ResNets, wide ResNets, MobileNetV2 and VGG.

Pretrained networks are built by name (:class:`PretrainedNetwork`, ``cifar10_resnet56``, ...). Every network is a
:class:`FeatureNet` (stem -> stages -> global average pool -> linear) whose
``forward_features`` returns logits, the stem and stage outputs, and the pooled embedding, so
feature-based distillation methods need no hooks. Build one by class (e.g. from YAML with
``class_path: lit_kd.models.CifarResNet``) or by name with :func:`create_model`.
"""

from lit_kd.models.base import FeatureNet, FeatureOutput
from lit_kd.models.gan import ConditionalGenerator, LabelEmbedding, ProjectionDiscriminator
from lit_kd.models.generators import DCGANGenerator, DFADGenerator
from lit_kd.models.mobilenetv2 import MobileNetV2
from lit_kd.models.normalization import declared_normalization, match_input_normalization
from lit_kd.models.pretrained import PRETRAINED_WEIGHTS, PretrainedNetwork, available_pretrained, pretrained_weights
from lit_kd.models.registry import available_models, create_model
from lit_kd.models.resnet_cifar import CifarResNet
from lit_kd.models.resnet_imagenet_style import ImageNetStyleResNet
from lit_kd.models.vgg import VGG
from lit_kd.models.wrn import WideResNet

__all__ = [
    "VGG",
    "CifarResNet",
    "ConditionalGenerator",
    "DCGANGenerator",
    "DFADGenerator",
    "FeatureNet",
    "FeatureOutput",
    "LabelEmbedding",
    "ImageNetStyleResNet",
    "MobileNetV2",
    "PRETRAINED_WEIGHTS",
    "PretrainedNetwork",
    "ProjectionDiscriminator",
    "WideResNet",
    "available_models",
    "available_pretrained",
    "create_model",
    "declared_normalization",
    "match_input_normalization",
    "pretrained_weights",
]
