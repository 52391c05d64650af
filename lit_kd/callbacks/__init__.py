"""Callbacks that own training schedules: discriminator updates, cyclic multi-network pairs, ..."""

from lit_kd.callbacks.bss import BoundarySampleMining, BoundarySamples
from lit_kd.callbacks.bss_gallery import BoundarySampleGallery
from lit_kd.callbacks.cgan_gallery import GeneratorGallery
from lit_kd.callbacks.checkpoint import ResumableCheckpoint
from lit_kd.callbacks.cyclic import CyclicPairSchedule
from lit_kd.callbacks.dfad_gallery import DFADGallery
from lit_kd.callbacks.discriminator_schedule import DiscriminatorUpdateSchedule
from lit_kd.callbacks.generator_schedule import GeneratorUpdateSchedule
from lit_kd.callbacks.predictions import PredictionWriter
from lit_kd.callbacks.progress import EpochProgress

__all__ = [
    "BoundarySampleGallery",
    "BoundarySampleMining",
    "BoundarySamples",
    "CyclicPairSchedule",
    "DFADGallery",
    "DiscriminatorUpdateSchedule",
    "EpochProgress",
    "GeneratorGallery",
    "GeneratorUpdateSchedule",
    "PredictionWriter",
    "ResumableCheckpoint",
]
