"""One LightningModule per distillation method, on one shared base."""

from lit_kd.methods.base import DistillationModule, StudentModule, default_optimizer
from lit_kd.methods.hinton import HintonKD
from lit_kd.methods.supervised import SupervisedModule
from lit_kd.methods.weights import load_network_weights

__all__ = [
    "DistillationModule",
    "HintonKD",
    "StudentModule",
    "SupervisedModule",
    "default_optimizer",
    "load_network_weights",
]
