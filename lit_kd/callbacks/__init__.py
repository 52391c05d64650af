"""Callbacks that own training schedules: discriminator updates, cyclic multi-network pairs, ..."""

from lit_kd.callbacks.bss import BoundarySampleMining, BoundarySamples
from lit_kd.callbacks.bss_gallery import BoundarySampleGallery
from lit_kd.callbacks.cyclic import CyclicPairSchedule
from lit_kd.callbacks.discriminator_schedule import DiscriminatorUpdateSchedule

__all__ = [
    "BoundarySampleGallery",
    "BoundarySampleMining",
    "BoundarySamples",
    "CyclicPairSchedule",
    "DiscriminatorUpdateSchedule",
]
