"""One LightningModule per distillation method, on one shared base."""

from lit_kd.checkpointing import load_network_weights
from lit_kd.methods.afd import OnlineAdversarialFeatureKD
from lit_kd.methods.ama import ActivationMapAdaptation
from lit_kd.methods.attention_transfer import AttentionTransfer
from lit_kd.methods.base import DistillationModule, StudentModule, default_optimizer
from lit_kd.methods.bss import BSSDistillation
from lit_kd.methods.cgan import ConditionalGAN
from lit_kd.methods.composed import ComposedDistillation
from lit_kd.methods.crd import ContrastiveRepresentationDistillation
from lit_kd.methods.dfad import DataFreeAdversarialDistillation
from lit_kd.methods.dist import DISTDistillation
from lit_kd.methods.dkd import DecoupledKD
from lit_kd.methods.dml import DeepMutualLearning
from lit_kd.methods.ensemble import EnsembleDistillation, LogitEnsemble
from lit_kd.methods.fitnets import FitNets
from lit_kd.methods.hinton import HintonKD
from lit_kd.methods.online import OnlineDistillationModule
from lit_kd.methods.seeds import SeedEnsembleModule
from lit_kd.methods.self_distillation import SelfDistillation
from lit_kd.methods.supervised import SupervisedModule

__all__ = [
    "ActivationMapAdaptation",
    "AttentionTransfer",
    "BSSDistillation",
    "ComposedDistillation",
    "ConditionalGAN",
    "ContrastiveRepresentationDistillation",
    "DISTDistillation",
    "DataFreeAdversarialDistillation",
    "DecoupledKD",
    "DeepMutualLearning",
    "DistillationModule",
    "EnsembleDistillation",
    "FitNets",
    "HintonKD",
    "LogitEnsemble",
    "OnlineAdversarialFeatureKD",
    "OnlineDistillationModule",
    "SeedEnsembleModule",
    "SelfDistillation",
    "StudentModule",
    "SupervisedModule",
    "default_optimizer",
    "load_network_weights",
]
