"""Distillation losses as pure functions and small modules, each testable against hand-computed values."""

from lit_kd.losses.afd import (
    FeatureAdapter,
    FeatureDiscriminator,
    discriminator_loss,
    generator_loss,
    l1_alignment_loss,
)
from lit_kd.losses.attention_transfer import attention_map, attention_transfer_loss
from lit_kd.losses.crd import ContrastEmbedding, ContrastMemory, ContrastScores, CRDLoss, contrast_loss
from lit_kd.losses.dfad import logit_discrepancy
from lit_kd.losses.dist import DISTTerms, dist_loss, dist_terms
from lit_kd.losses.dkd import DecoupledKDTerms, decoupled_kd_terms, dkd_loss, dkd_warmup_factor
from lit_kd.losses.dml import all_pairs, mutual_kl, ring_pairs
from lit_kd.losses.fitnets import ConvRegressor, hint_loss
from lit_kd.losses.gan import hinge_discriminator_loss, hinge_generator_loss, sample_vicinal_batch, vicinal_weights
from lit_kd.losses.kd import soft_cross_entropy, soft_target_kl, standardize_logits

__all__ = [
    "CRDLoss",
    "ContrastEmbedding",
    "ContrastMemory",
    "ContrastScores",
    "ConvRegressor",
    "DISTTerms",
    "DecoupledKDTerms",
    "FeatureAdapter",
    "FeatureDiscriminator",
    "all_pairs",
    "attention_map",
    "attention_transfer_loss",
    "contrast_loss",
    "decoupled_kd_terms",
    "discriminator_loss",
    "dist_loss",
    "dist_terms",
    "dkd_loss",
    "dkd_warmup_factor",
    "generator_loss",
    "hinge_discriminator_loss",
    "hinge_generator_loss",
    "hint_loss",
    "l1_alignment_loss",
    "logit_discrepancy",
    "mutual_kl",
    "ring_pairs",
    "sample_vicinal_batch",
    "soft_cross_entropy",
    "soft_target_kl",
    "standardize_logits",
    "vicinal_weights",
]
