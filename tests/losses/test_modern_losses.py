"""DKD, DIST, CRD and logit standardisation (issue 23) against independent ports of the authors' code.

Each ``official_*`` function below is a close transliteration of the authors' code (repository, file, lines and
commit in its docstring), written for these tests only; lit_kd's implementations are written differently, so an
agreement of values and gradients is evidence, not a tautology. ``size_average=False`` of the originals is written as
its equivalent ``reduction="sum"`` (the deprecated flag warns).
"""

from __future__ import annotations

import copy
import math
import os
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F
from torch import nn

from lit_kd.losses import (
    ContrastEmbedding,
    ContrastMemory,
    CRDLoss,
    contrast_loss,
    decoupled_kd_terms,
    dist_loss,
    dist_terms,
    dkd_loss,
    dkd_warmup_factor,
    soft_target_kl,
    standardize_logits,
)

# ----------------------------------------------------------------------------------------------------------------
# Ports of the official code (test-only).
# ----------------------------------------------------------------------------------------------------------------


def official_normalize(logit):
    """sunshangquan/logit-standardization-KD@f6e5aa5172bad618e801163c3385322eea673754,
    mdistiller/distillers/KD.py:7-10 (identical in mdistiller/distillers/DKD.py:7-10)."""
    mean = logit.mean(dim=-1, keepdims=True)
    stdv = logit.std(dim=-1, keepdims=True)
    return (logit - mean) / (1e-7 + stdv)


def official_ls_kd_loss(logits_student_in, logits_teacher_in, temperature, logit_stand):
    """sunshangquan/logit-standardization-KD@f6e5aa5, mdistiller/distillers/KD.py:12-19."""
    logits_student = official_normalize(logits_student_in) if logit_stand else logits_student_in
    logits_teacher = official_normalize(logits_teacher_in) if logit_stand else logits_teacher_in
    log_pred_student = F.log_softmax(logits_student / temperature, dim=1)
    pred_teacher = F.softmax(logits_teacher / temperature, dim=1)
    loss_kd = F.kl_div(log_pred_student, pred_teacher, reduction="none").sum(1).mean()
    loss_kd *= temperature**2
    return loss_kd


def _official_get_gt_mask(logits, target):
    """megvii-research/mdistiller@a08d46f10d6102bd6e3f258ca5ac880b020ea259, mdistiller/distillers/DKD.py:35-38."""
    target = target.reshape(-1)
    return torch.zeros_like(logits).scatter_(1, target.unsqueeze(1), 1).bool()


def _official_get_other_mask(logits, target):
    """megvii-research/mdistiller@a08d46f, mdistiller/distillers/DKD.py:41-44."""
    target = target.reshape(-1)
    return torch.ones_like(logits).scatter_(1, target.unsqueeze(1), 0).bool()


def _official_cat_mask(t, mask1, mask2):
    """megvii-research/mdistiller@a08d46f, mdistiller/distillers/DKD.py:47-51."""
    t1 = (t * mask1).sum(dim=1, keepdims=True)
    t2 = (t * mask2).sum(1, keepdims=True)
    return torch.cat([t1, t2], dim=1)


def official_dkd_loss(logits_student_in, logits_teacher_in, target, alpha, beta, temperature, logit_stand=False):
    """megvii-research/mdistiller@a08d46f, mdistiller/distillers/DKD.py:8-32; with ``logit_stand`` the variant of
    sunshangquan/logit-standardization-KD@f6e5aa5, mdistiller/distillers/DKD.py:12-39 (the same body after
    ``normalize``)."""
    logits_student = official_normalize(logits_student_in) if logit_stand else logits_student_in
    logits_teacher = official_normalize(logits_teacher_in) if logit_stand else logits_teacher_in
    gt_mask = _official_get_gt_mask(logits_student, target)
    other_mask = _official_get_other_mask(logits_student, target)
    pred_student = F.softmax(logits_student / temperature, dim=1)
    pred_teacher = F.softmax(logits_teacher / temperature, dim=1)
    pred_student = _official_cat_mask(pred_student, gt_mask, other_mask)
    pred_teacher = _official_cat_mask(pred_teacher, gt_mask, other_mask)
    log_pred_student = torch.log(pred_student)
    tckd_loss = F.kl_div(log_pred_student, pred_teacher, reduction="sum") * (temperature**2) / target.shape[0]
    pred_teacher_part2 = F.softmax(logits_teacher / temperature - 1000.0 * gt_mask, dim=1)
    log_pred_student_part2 = F.log_softmax(logits_student / temperature - 1000.0 * gt_mask, dim=1)
    nckd_loss = (
        F.kl_div(log_pred_student_part2, pred_teacher_part2, reduction="sum") * (temperature**2) / target.shape[0]
    )
    return alpha * tckd_loss + beta * nckd_loss


def official_dkd_warmup(epoch, warmup):
    """megvii-research/mdistiller@a08d46f, mdistiller/distillers/DKD.py:72."""
    return min(epoch / warmup, 1.0)


def _official_cosine_similarity(a, b, eps=1e-8):
    """hunto/image_classification_sota@d9662f7df68fe46b973c4580b7c9b896cedcd301 (the DIST_KD ``classification``
    submodule), lib/models/losses/dist_kd.py:4-5."""
    return (a * b).sum(1) / (a.norm(dim=1) * b.norm(dim=1) + eps)


def _official_pearson_correlation(a, b, eps=1e-8):
    """hunto/image_classification_sota@d9662f7, lib/models/losses/dist_kd.py:8-10."""
    return _official_cosine_similarity(a - a.mean(1).unsqueeze(1), b - b.mean(1).unsqueeze(1), eps)


def _official_inter_class_relation(y_s, y_t):
    """hunto/image_classification_sota@d9662f7, lib/models/losses/dist_kd.py:13-14."""
    return 1 - _official_pearson_correlation(y_s, y_t).mean()


def _official_intra_class_relation(y_s, y_t):
    """hunto/image_classification_sota@d9662f7, lib/models/losses/dist_kd.py:17-18."""
    return _official_inter_class_relation(y_s.transpose(0, 1), y_t.transpose(0, 1))


def official_dist(z_s, z_t, beta=1.0, gamma=1.0, tau=1.0):
    """hunto/image_classification_sota@d9662f7, lib/models/losses/dist_kd.py:21-34 (``DIST.forward``)."""
    y_s = (z_s / tau).softmax(dim=1)
    y_t = (z_t / tau).softmax(dim=1)
    inter_loss = tau**2 * _official_inter_class_relation(y_s, y_t)
    intra_loss = tau**2 * _official_intra_class_relation(y_s, y_t)
    return beta * inter_loss + gamma * intra_loss


class OfficialNormalize(nn.Module):
    """HobbitLong/RepDistiller@b84f547c5db6a35318d4671d7d5c4de74c822403, crd/criterion.py:93-102."""

    def __init__(self, power=2):
        super().__init__()
        self.power = power

    def forward(self, x):
        norm = x.pow(self.power).sum(1, keepdim=True).pow(1.0 / self.power)
        return x.div(norm)


class OfficialEmbed(nn.Module):
    """HobbitLong/RepDistiller@b84f547, crd/criterion.py:79-90."""

    def __init__(self, dim_in=1024, dim_out=128):
        super().__init__()
        self.linear = nn.Linear(dim_in, dim_out)
        self.l2norm = OfficialNormalize(2)

    def forward(self, x):
        x = x.view(x.shape[0], -1)
        return self.l2norm(self.linear(x))


class OfficialContrastLoss(nn.Module):
    """HobbitLong/RepDistiller@b84f547, crd/criterion.py:51-76 (``eps`` from line 5)."""

    def __init__(self, n_data):
        super().__init__()
        self.n_data = n_data

    def forward(self, x):
        eps = 1e-7
        bsz = x.shape[0]
        m = x.size(1) - 1
        Pn = 1 / float(self.n_data)  # noqa: N806 (the original's name)
        P_pos = x.select(1, 0)  # noqa: N806
        log_D1 = torch.div(P_pos, P_pos.add(m * Pn + eps)).log_()  # noqa: N806
        P_neg = x.narrow(1, 1, m)  # noqa: N806
        log_D0 = torch.div(P_neg.clone().fill_(m * Pn), P_neg.add(m * Pn + eps)).log_()  # noqa: N806
        return -(log_D1.sum(0) + log_D0.view(-1, 1).sum(0)) / bsz


class OfficialContrastMemory(nn.Module):
    """HobbitLong/RepDistiller@b84f547, crd/memory.py:6-79, without its AliasMethod (``.cuda()``, line 14-15): the
    tests always pass ``idx``, the branch at lines 35-37 that draws it is not ported. ``print`` left out."""

    def __init__(self, inputSize, outputSize, K, T=0.07, momentum=0.5):  # noqa: N803
        super().__init__()
        self.nLem = outputSize
        self.K = K
        self.register_buffer("params", torch.tensor([K, T, -1, -1, momentum]))
        stdv = 1.0 / math.sqrt(inputSize / 3)
        self.register_buffer("memory_v1", torch.rand(outputSize, inputSize).mul_(2 * stdv).add_(-stdv))
        self.register_buffer("memory_v2", torch.rand(outputSize, inputSize).mul_(2 * stdv).add_(-stdv))

    def forward(self, v1, v2, y, idx):
        K = int(self.params[0].item())  # noqa: N806
        T = self.params[1].item()  # noqa: N806
        Z_v1 = self.params[2].item()  # noqa: N806
        Z_v2 = self.params[3].item()  # noqa: N806
        momentum = self.params[4].item()
        batchSize = v1.size(0)  # noqa: N806
        outputSize = self.memory_v1.size(0)  # noqa: N806
        inputSize = self.memory_v1.size(1)  # noqa: N806
        weight_v1 = torch.index_select(self.memory_v1, 0, idx.view(-1)).detach()
        weight_v1 = weight_v1.view(batchSize, K + 1, inputSize)
        out_v2 = torch.bmm(weight_v1, v2.view(batchSize, inputSize, 1))
        out_v2 = torch.exp(torch.div(out_v2, T))
        weight_v2 = torch.index_select(self.memory_v2, 0, idx.view(-1)).detach()
        weight_v2 = weight_v2.view(batchSize, K + 1, inputSize)
        out_v1 = torch.bmm(weight_v2, v1.view(batchSize, inputSize, 1))
        out_v1 = torch.exp(torch.div(out_v1, T))
        if Z_v1 < 0:
            self.params[2] = out_v1.mean() * outputSize
            Z_v1 = self.params[2].clone().detach().item()  # noqa: N806
        if Z_v2 < 0:
            self.params[3] = out_v2.mean() * outputSize
            Z_v2 = self.params[3].clone().detach().item()  # noqa: N806
        out_v1 = torch.div(out_v1, Z_v1).contiguous()
        out_v2 = torch.div(out_v2, Z_v2).contiguous()
        with torch.no_grad():
            l_pos = torch.index_select(self.memory_v1, 0, y.view(-1))
            l_pos.mul_(momentum)
            l_pos.add_(torch.mul(v1, 1 - momentum))
            l_norm = l_pos.pow(2).sum(1, keepdim=True).pow(0.5)
            self.memory_v1.index_copy_(0, y, l_pos.div(l_norm))
            ab_pos = torch.index_select(self.memory_v2, 0, y.view(-1))
            ab_pos.mul_(momentum)
            ab_pos.add_(torch.mul(v2, 1 - momentum))
            ab_norm = ab_pos.pow(2).sum(1, keepdim=True).pow(0.5)
            self.memory_v2.index_copy_(0, y, ab_pos.div(ab_norm))
        return out_v1, out_v2


class OfficialCRDLoss(nn.Module):
    """HobbitLong/RepDistiller@b84f547, crd/criterion.py:8-48 (``opt`` fields as arguments)."""

    def __init__(self, s_dim, t_dim, feat_dim, n_data, nce_k, nce_t, nce_m):
        super().__init__()
        self.embed_s = OfficialEmbed(s_dim, feat_dim)
        self.embed_t = OfficialEmbed(t_dim, feat_dim)
        self.contrast = OfficialContrastMemory(feat_dim, n_data, nce_k, nce_t, nce_m)
        self.criterion_t = OfficialContrastLoss(n_data)
        self.criterion_s = OfficialContrastLoss(n_data)

    def forward(self, f_s, f_t, idx, contrast_idx):
        f_s = self.embed_s(f_s)
        f_t = self.embed_t(f_t)
        out_s, out_t = self.contrast(f_s, f_t, idx, contrast_idx)
        return self.criterion_s(out_s) + self.criterion_t(out_t)


# ----------------------------------------------------------------------------------------------------------------
# Helpers
# ----------------------------------------------------------------------------------------------------------------


def random_logits(batch: int = 8, classes: int = 10, dtype: torch.dtype = torch.float64, seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    student = (3 * torch.randn(batch, classes, generator=generator)).to(dtype)
    teacher = (5 * torch.randn(batch, classes, generator=generator) + 1).to(dtype)
    targets = torch.randint(0, classes, (batch,), generator=generator)
    return student, teacher, targets


def value_and_grad(loss_fn, student: torch.Tensor):
    student = student.clone().requires_grad_(True)
    loss = loss_fn(student)
    (grad,) = torch.autograd.grad(loss.sum(), student)
    return loss.detach().reshape(()), grad


def assert_same_value_and_grad(ours, theirs, student, rtol, atol=0.0):
    our_value, our_grad = value_and_grad(ours, student)
    their_value, their_grad = value_and_grad(theirs, student)
    assert our_grad.abs().sum() > 0
    torch.testing.assert_close(our_value, their_value, rtol=rtol, atol=atol)
    torch.testing.assert_close(our_grad, their_grad, rtol=rtol, atol=atol)


TOLERANCES = {torch.float64: 1e-9, torch.float32: 1e-4}

# ----------------------------------------------------------------------------------------------------------------
# Logit standardisation
# ----------------------------------------------------------------------------------------------------------------


def test_standardize_logits_matches_the_official_normalize_and_uses_the_sample_std() -> None:
    logits = torch.tensor([[1.0, 2.0, 3.0, 4.0]], dtype=torch.float64)
    sample_std = math.sqrt((1.5**2 + 0.5**2 + 0.5**2 + 1.5**2) / 3)  # Bessel: divide by C - 1
    expected = torch.tensor([[-1.5, -0.5, 0.5, 1.5]], dtype=torch.float64) / (1e-7 + sample_std)
    torch.testing.assert_close(standardize_logits(logits), expected, rtol=1e-12, atol=0)
    population = (logits - logits.mean()) / (1e-7 + logits.std(correction=0))
    assert not torch.allclose(standardize_logits(logits), population)
    student, _, _ = random_logits()
    torch.testing.assert_close(standardize_logits(student), official_normalize(student), rtol=1e-12, atol=1e-12)


def test_standardize_logits_refuses_a_single_class() -> None:
    with pytest.raises(ValueError, match="at least 2 classes"):
        standardize_logits(torch.zeros(3, 1))


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("standardize", [False, True])
@pytest.mark.parametrize("temperature", [1.0, 2.0, 4.0])
def test_soft_target_kl_matches_the_official_kd_loss(standardize, temperature, dtype) -> None:
    student, teacher, _ = random_logits(dtype=dtype)
    assert_same_value_and_grad(
        lambda s: soft_target_kl(s, teacher, temperature, standardize=standardize),
        lambda s: official_ls_kd_loss(s, teacher, temperature, standardize),
        student,
        rtol=TOLERANCES[dtype],
        atol=TOLERANCES[dtype] * 1e-2,
    )


def test_standardisation_changes_the_kd_loss_and_ignores_scale_and_shift() -> None:
    student, teacher, _ = random_logits()
    plain = soft_target_kl(student, teacher, 2.0)
    assert not torch.isclose(plain, soft_target_kl(student, teacher, 2.0, standardize=True))
    shifted_scaled = 7.0 * student - 3.0
    torch.testing.assert_close(
        soft_target_kl(shifted_scaled, teacher, 2.0, standardize=True),
        soft_target_kl(student, teacher, 2.0, standardize=True),
        rtol=1e-6,
        atol=1e-9,
    )


# ----------------------------------------------------------------------------------------------------------------
# DKD
# ----------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("standardize", [False, True])
@pytest.mark.parametrize(("alpha", "beta", "temperature"), [(1.0, 8.0, 4.0), (1.0, 2.0, 4.0), (9.0, 72.0, 2.0)])
def test_dkd_loss_matches_the_official_dkd_loss(alpha, beta, temperature, standardize, dtype) -> None:
    student, teacher, targets = random_logits(batch=16, classes=12, dtype=dtype)
    assert_same_value_and_grad(
        lambda s: dkd_loss(s, teacher, targets, alpha, beta, temperature, standardize=standardize),
        lambda s: official_dkd_loss(s, teacher, targets, alpha, beta, temperature, standardize),
        student,
        rtol=TOLERANCES[dtype],
        atol=TOLERANCES[dtype] * 1e-2,
    )


@pytest.mark.parametrize("standardize", [False, True])
def test_dkd_terms_are_the_official_tckd_and_nckd(standardize) -> None:
    student, teacher, targets = random_logits(batch=16, classes=12)
    terms = decoupled_kd_terms(student, teacher, targets, 4.0, standardize=standardize)
    tckd = official_dkd_loss(student, teacher, targets, 1.0, 0.0, 4.0, standardize)
    nckd = official_dkd_loss(student, teacher, targets, 0.0, 1.0, 4.0, standardize)
    torch.testing.assert_close(terms.target_class, tckd, rtol=1e-9, atol=0)
    torch.testing.assert_close(terms.non_target_class, nckd, rtol=1e-9, atol=0)
    assert terms.target_class > 0 and terms.non_target_class > 0


def test_dkd_matches_a_hand_computation() -> None:
    # Three classes, target 1, T = 2: the student is uniform, the teacher's logits are [4, 0, 0] (so [2, 0, 0] / T).
    student = torch.zeros(1, 3, dtype=torch.float64)
    teacher = torch.tensor([[4.0, 0.0, 0.0]], dtype=torch.float64)
    targets = torch.tensor([1])
    e2 = math.exp(2.0)
    teacher_target = 1 / (e2 + 2)  # softmax([2, 0, 0])[1]
    tckd = teacher_target * math.log(teacher_target / (1 / 3)) + (1 - teacher_target) * math.log(
        (1 - teacher_target) / (2 / 3)
    )
    others = [e2 / (e2 + 1), 1 / (e2 + 1)]  # the teacher over classes 0 and 2; the student is [1/2, 1/2]
    nckd = sum(p * math.log(p / 0.5) for p in others)
    terms = decoupled_kd_terms(student, teacher, targets, temperature=2.0)
    assert terms.target_class.item() == pytest.approx(4.0 * tckd, rel=1e-12)
    assert terms.non_target_class.item() == pytest.approx(4.0 * nckd, rel=1e-12)
    loss = dkd_loss(student, teacher, targets, alpha=1.0, beta=8.0, temperature=2.0)
    assert loss.item() == pytest.approx(4.0 * (tckd + 8.0 * nckd), rel=1e-12)


def test_dkd_stays_finite_where_the_official_log_of_probabilities_underflows() -> None:
    student = torch.tensor([[200.0, -200.0, 0.0]], requires_grad=True)  # p_target = exp(-400): 0 in float32
    teacher = torch.tensor([[0.0, 1.0, 2.0]])
    loss = dkd_loss(student, teacher, torch.tensor([1]), temperature=1.0)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(student.grad).all()


def test_dkd_gradient_reaches_the_student_only_and_bad_inputs_are_refused() -> None:
    student, teacher, targets = random_logits()
    student.requires_grad_(True)
    teacher.requires_grad_(True)
    dkd_loss(student, teacher.detach(), targets).backward()
    assert student.grad is not None and teacher.grad is None
    with pytest.raises(ValueError, match="temperature must be > 0"):
        dkd_loss(student, teacher, targets, temperature=float("nan"))
    with pytest.raises(ValueError, match="targets"):
        dkd_loss(student, teacher, targets[:3])


@pytest.mark.parametrize(("epoch", "expected"), [(1, 0.05), (5, 0.25), (19, 0.95), (20, 1.0), (21, 1.0), (240, 1.0)])
def test_dkd_warmup_factor_is_the_official_ramp(epoch, expected) -> None:
    assert dkd_warmup_factor(epoch) == pytest.approx(expected)
    assert dkd_warmup_factor(epoch, 20) == official_dkd_warmup(epoch, 20)
    assert dkd_warmup_factor(epoch, 0) == 1.0


# ----------------------------------------------------------------------------------------------------------------
# DIST
# ----------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("standardize", [False, True])
@pytest.mark.parametrize(("beta", "gamma", "tau"), [(1.0, 1.0, 1.0), (1.0, 1.0, 4.0), (2.0, 0.5, 2.0)])
def test_dist_loss_matches_the_official_dist(beta, gamma, tau, standardize, dtype) -> None:
    student, teacher, _ = random_logits(batch=16, classes=12, dtype=dtype)

    def theirs(s):  # ours for DIST: standardise with the official ``normalize``, then the official DIST
        if standardize:
            s, t = official_normalize(s), official_normalize(teacher)
        else:
            t = teacher
        return official_dist(s, t, beta, gamma, tau)

    assert_same_value_and_grad(
        lambda s: dist_loss(s, teacher, beta, gamma, tau, standardize=standardize),
        theirs,
        student,
        rtol=TOLERANCES[dtype],
        atol=TOLERANCES[dtype] * 1e-2,
    )


def test_dist_terms_are_the_official_inter_and_intra_class_relations() -> None:
    student, teacher, _ = random_logits(batch=16, classes=12)
    terms = dist_terms(student, teacher, temperature=4.0)
    y_s, y_t = (student / 4.0).softmax(1), (teacher / 4.0).softmax(1)
    torch.testing.assert_close(terms.inter_class, 16.0 * _official_inter_class_relation(y_s, y_t), rtol=1e-9, atol=0)
    torch.testing.assert_close(terms.intra_class, 16.0 * _official_intra_class_relation(y_s, y_t), rtol=1e-9, atol=0)


def test_dist_matches_a_hand_computation() -> None:
    # Two samples, two classes, tau = 1: the softmax rows are [a, 1 - a] and [1 - a, a], a = sigmoid(1). Every row
    # and column centred is +-[d, -d], d = a - 1/2, so each Pearson term is +-2d^2 / (2d^2 + 1e-8) (the official eps).
    student = torch.tensor([[1.0, 0.0], [0.0, 1.0]], dtype=torch.float64)
    d = 1 / (1 + math.exp(-1)) - 0.5
    correlation = 2 * d**2 / (2 * d**2 + 1e-8)
    same = dist_terms(student, student)
    assert same.inter_class.item() == pytest.approx(1 - correlation, abs=1e-15)
    assert same.intra_class.item() == pytest.approx(1 - correlation, abs=1e-15)
    swapped = dist_terms(student, student.flip(1))  # anti-correlated rows and columns
    assert swapped.inter_class.item() == pytest.approx(1 + correlation, rel=1e-14)
    assert swapped.intra_class.item() == pytest.approx(1 + correlation, rel=1e-14)
    assert dist_loss(student, student.flip(1), beta=2.0, gamma=0.5, temperature=1.0).item() == pytest.approx(
        2.5 * (1 + correlation), rel=1e-14
    )


# ----------------------------------------------------------------------------------------------------------------
# CRD
# ----------------------------------------------------------------------------------------------------------------


def test_contrast_embedding_matches_the_official_embed() -> None:
    torch.manual_seed(0)
    official = OfficialEmbed(12, 5).double()
    ours = ContrastEmbedding(12, 5).double()
    ours.linear.load_state_dict(official.linear.state_dict())
    features = torch.randn(4, 3, 2, 2, dtype=torch.float64)
    assert_same_value_and_grad(
        lambda f: ours(f)[:, 0].pow(3).sum(), lambda f: official(f)[:, 0].pow(3).sum(), features, 1e-12
    )


def test_contrast_loss_matches_the_official_contrast_loss() -> None:
    scores = torch.rand(6, 9, dtype=torch.float64) * 3
    assert_same_value_and_grad(
        lambda x: contrast_loss(x, 40), lambda x: OfficialContrastLoss(40)(x.unsqueeze(2)), scores, 1e-12
    )


def test_memory_banks_start_like_the_official_ones_from_the_same_seed() -> None:
    torch.manual_seed(3)
    official = OfficialContrastMemory(16, 50, 7)
    torch.manual_seed(3)
    ours = ContrastMemory(50, 16, 7)
    assert torch.equal(ours.student_bank, official.memory_v1)
    assert torch.equal(ours.teacher_bank, official.memory_v2)
    again = ContrastMemory(50, 16, 7, generator=torch.Generator().manual_seed(3))
    assert torch.equal(again.student_bank, official.memory_v1)


def test_memory_update_moves_with_momentum_and_renormalises() -> None:
    memory = ContrastMemory(num_samples=4, feature_dim=2, num_negatives=1, momentum=0.5)
    memory.student_bank.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.6, 0.8], [1.0, 0.0]]))
    memory.teacher_bank.copy_(torch.tensor([[0.0, 1.0], [0.0, 1.0], [0.0, 1.0], [0.0, 1.0]]))
    memory.update(
        student_embedding=torch.tensor([[0.0, 1.0], [0.8, -0.6]]),
        teacher_embedding=torch.tensor([[1.0, 0.0], [1.0, 0.0]]),
        sample_indices=torch.tensor([0, 2]),
    )
    r = 1 / math.sqrt(2)
    # row 0: 0.5 [1, 0] + 0.5 [0, 1] = [0.5, 0.5] -> [r, r]; row 2: 0.5 [0.6, 0.8] + 0.5 [0.8, -0.6] = [0.7, 0.1]
    expected_student = torch.tensor([[r, r], [0.0, 1.0], [0.7 / math.sqrt(0.5), 0.1 / math.sqrt(0.5)], [1.0, 0.0]])
    torch.testing.assert_close(memory.student_bank, expected_student)
    torch.testing.assert_close(memory.teacher_bank[[0, 2]], torch.tensor([[r, r], [r, r]]))
    torch.testing.assert_close(memory.teacher_bank[[1, 3]], torch.tensor([[0.0, 1.0], [0.0, 1.0]]))


def test_memory_update_weights_the_old_row_by_the_momentum() -> None:
    memory = ContrastMemory(num_samples=2, feature_dim=2, num_negatives=1, momentum=0.75)
    memory.student_bank.copy_(torch.tensor([[1.0, 0.0], [1.0, 0.0]]))
    memory.update(torch.tensor([[0.0, 1.0]]), torch.tensor([[0.0, 1.0]]), torch.tensor([1]))
    torch.testing.assert_close(memory.student_bank[1], torch.tensor([0.75, 0.25]) / math.sqrt(0.75**2 + 0.25**2))
    torch.testing.assert_close(memory.student_bank[0], torch.tensor([1.0, 0.0]))


def test_memory_update_with_a_repeated_index_keeps_the_first_occurrence() -> None:
    memory = ContrastMemory(num_samples=3, feature_dim=2, num_negatives=1, momentum=0.0)
    memory.update(torch.tensor([[1.0, 0.0], [0.0, 1.0]]), torch.tensor([[0.0, 1.0], [1.0, 0.0]]), torch.tensor([1, 1]))
    torch.testing.assert_close(memory.student_bank[1], torch.tensor([1.0, 0.0]))
    torch.testing.assert_close(memory.teacher_bank[1], torch.tensor([0.0, 1.0]))


def test_sampling_puts_the_sample_first_and_draws_negatives_from_other_classes() -> None:
    labels = torch.arange(30) % 3  # 20 samples of other classes for each sample
    memory = ContrastMemory(num_samples=30, feature_dim=4, num_negatives=12, labels=labels)
    samples = torch.tensor([0, 4, 29, 4])
    drawn = memory.sample_contrast_indices(samples, generator=torch.Generator().manual_seed(0))
    assert drawn.shape == (4, 13)
    assert torch.equal(drawn[:, 0], samples)
    assert (labels[drawn[:, 1:]] != labels[samples].unsqueeze(1)).all()
    assert all(row.unique().numel() == 12 for row in drawn[:, 1:])  # without replacement: 12 <= 20
    assert torch.equal(drawn, memory.sample_contrast_indices(samples, generator=torch.Generator().manual_seed(0)))
    assert not torch.equal(drawn, memory.sample_contrast_indices(samples, generator=torch.Generator().manual_seed(1)))
    torch.manual_seed(5)
    first = memory.sample_contrast_indices(samples)
    torch.manual_seed(5)
    assert torch.equal(first, memory.sample_contrast_indices(samples))


def test_sampling_with_replacement_when_a_class_has_too_few_negatives_and_uniform_without_labels() -> None:
    labels = torch.tensor([0] * 8 + [1] * 2)  # a class-1 sample has 8 negatives, a class-0 sample only 2
    memory = ContrastMemory(num_samples=10, feature_dim=4, num_negatives=5, labels=labels)
    drawn = memory.sample_contrast_indices(torch.tensor([9, 0]), generator=torch.Generator().manual_seed(0))
    assert drawn[0, 1:].unique().numel() == 5 and (labels[drawn[0, 1:]] == 0).all()
    assert set(drawn[1, 1:].tolist()) <= {8, 9}
    uniform = ContrastMemory(num_samples=10, feature_dim=4, num_negatives=2000)
    drawn = uniform.sample_contrast_indices(torch.tensor([3]), generator=torch.Generator().manual_seed(0))
    assert drawn[0, 0] == 3 and set(drawn[0, 1:].tolist()) == set(range(10))


def test_negatives_drawn_with_replacement_are_uniform_over_exactly_the_other_classes_samples() -> None:
    """``np.random.choice(cls_negative[target], K, replace=True)`` (``dataset/cifar100.py:166-167``): every sample of
    another class, equally often, none of the own class; class ids need not be 0..C-1 nor the samples sorted."""
    labels = torch.tensor([7, -1, 3, 7, 3, 3, -1, 7, 7, 3, -1, 3, 7, 3, 3])
    memory = ContrastMemory(num_samples=15, feature_dim=4, num_negatives=6000, labels=labels)
    samples = torch.tensor([0, 1, 2])  # classes 7, -1, 3: 10, 12 and 8 negatives, fewer than K
    drawn = memory.sample_contrast_indices(samples, generator=torch.Generator().manual_seed(0))
    for row, sample in zip(drawn, samples, strict=True):
        others = (labels != labels[sample]).nonzero().flatten()
        counts = torch.bincount(row[1:], minlength=15)
        assert torch.equal(counts.nonzero().flatten(), others)
        expected = 6000 / others.numel()  # at least 500; 25% is over 5 standard deviations
        assert ((counts[others] - expected).abs() < 0.25 * expected).all()


def make_pair(
    num_samples=40, student_dim=6, teacher_dim=10, feature_dim=8, num_negatives=9, temperature=0.07, momentum=0.5
):
    torch.manual_seed(0)
    official = OfficialCRDLoss(student_dim, teacher_dim, feature_dim, num_samples, num_negatives, temperature, momentum)
    ours = CRDLoss(student_dim, teacher_dim, num_samples, feature_dim, num_negatives, temperature, momentum)
    ours.embed_student.linear.load_state_dict(official.embed_s.linear.state_dict())
    ours.embed_teacher.linear.load_state_dict(official.embed_t.linear.state_dict())
    ours.memory.student_bank.copy_(official.contrast.memory_v1)
    ours.memory.teacher_bank.copy_(official.contrast.memory_v2)
    return ours, official


@pytest.mark.parametrize(
    ("temperature", "momentum", "num_samples"),
    # 40 samples: lit-kd scores every bank row and picks the drawn ones (N <= (K + 1) * D = 80); 200: it gathers the
    # drawn rows first, as the official code always does
    [(0.07, 0.5, 40), (0.2, 0.8, 40), (0.07, 0.5, 200)],
)
def test_crd_loss_matches_the_official_crd_loss_over_steps_with_injected_negatives(
    temperature, momentum, num_samples
) -> None:
    ours, official = make_pair(num_samples=num_samples, temperature=temperature, momentum=momentum)
    generator = torch.Generator().manual_seed(1)
    for step in range(3):
        sample_indices = torch.randperm(num_samples, generator=generator)[:5]
        contrast_indices = torch.randint(0, num_samples, (5, 10), generator=generator)
        contrast_indices[:, 0] = sample_indices
        student_features = torch.randn(5, 6, generator=generator)
        teacher_features = torch.randn(5, 10, generator=generator)

        def our_loss(f, ours=ours, t=teacher_features, i=sample_indices, c=contrast_indices):
            return ours(f, t, i, c)

        def their_loss(f, official=official, t=teacher_features, i=sample_indices, c=contrast_indices):
            return official(f, t, i, c)

        assert_same_value_and_grad(our_loss, their_loss, student_features, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(ours.memory.student_bank, official.contrast.memory_v1, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(ours.memory.teacher_bank, official.contrast.memory_v2, rtol=1e-5, atol=1e-6)
        if step == 0:  # assert_same_value_and_grad ran each side once: both fixed Z on that first batch
            assert float(ours.memory.student_normalizer) == pytest.approx(
                float(official.contrast.params[2].detach()), rel=1e-6
            )
            assert float(ours.memory.teacher_normalizer) == pytest.approx(
                float(official.contrast.params[3].detach()), rel=1e-6
            )
    # The embeddings' gradients agree too (they are trained with the student).
    features = torch.randn(5, 6), torch.randn(5, 10)
    indices = torch.tensor([0, 1, 2, 3, 4])
    negatives = torch.cat([indices.unsqueeze(1), torch.randint(0, num_samples, (5, 9))], 1)
    ours(*features, indices, negatives).backward()
    official(*features, indices, negatives).backward()
    torch.testing.assert_close(ours.embed_student.linear.weight.grad, official.embed_s.linear.weight.grad)
    torch.testing.assert_close(ours.embed_teacher.linear.weight.grad, official.embed_t.linear.weight.grad)


def test_crd_state_is_in_the_state_dict_and_a_resumed_loss_continues_exactly() -> None:
    crd = CRDLoss(6, 10, num_samples=40, feature_dim=8, num_negatives=9, labels=torch.arange(40) % 4)
    state = {name: value.clone() for name, value in crd.state_dict().items()}
    assert {"memory.student_bank", "memory.teacher_bank", "memory.student_normalizer", "memory.teacher_normalizer"} <= (
        set(state)
    )
    assert "memory.labels" not in state  # configuration, not state: passed again when the loss is built
    torch.manual_seed(0)
    crd(torch.randn(5, 6), torch.randn(5, 10), torch.arange(5))  # fixes Z, moves five rows
    assert float(crd.memory.student_normalizer) > 0
    checkpoint = {name: value.clone() for name, value in crd.state_dict().items()}
    assert not torch.equal(checkpoint["memory.student_bank"], state["memory.student_bank"])

    resumed = CRDLoss(6, 10, num_samples=40, feature_dim=8, num_negatives=9, labels=torch.arange(40) % 4)
    resumed.load_state_dict(checkpoint)
    batch = torch.randn(5, 6), torch.randn(5, 10), torch.arange(10, 15)
    torch.manual_seed(7)
    expected = crd(*batch)
    torch.manual_seed(7)
    torch.testing.assert_close(resumed(*batch), expected, rtol=0, atol=0)
    torch.testing.assert_close(resumed.memory.student_bank, crd.memory.student_bank, rtol=0, atol=0)


def test_crd_in_eval_mode_leaves_the_bank_and_constants_alone() -> None:
    crd = CRDLoss(6, 10, num_samples=40, feature_dim=8, num_negatives=9).eval()
    before = {name: value.clone() for name, value in crd.state_dict().items()}
    loss = crd(torch.randn(5, 6), torch.randn(5, 10), torch.arange(5))
    assert torch.isfinite(loss)
    for name, value in crd.state_dict().items():
        assert torch.equal(value, before[name]), name


def test_crd_scores_stay_float32_under_autocast() -> None:
    crd = CRDLoss(6, 10, num_samples=40, feature_dim=8, num_negatives=9)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = crd(torch.randn(5, 6), torch.randn(5, 10), torch.arange(5))
    assert loss.dtype == torch.float32 and torch.isfinite(loss)


def test_crd_runs_in_float64_and_equals_its_float32_loss() -> None:
    # a double module (Trainer precision 64, the float64 step-parity check): the bank's dtype is kept, not cast down
    torch.manual_seed(0)
    single = CRDLoss(6, 10, num_samples=40, feature_dim=8, num_negatives=9)
    double = copy.deepcopy(single).double()
    student, teacher, indices = torch.randn(5, 6), torch.randn(5, 10), torch.arange(5)
    contrast = single.memory.sample_contrast_indices(indices)  # the same negatives on both sides
    loss_single = single(student, teacher, indices, contrast)
    loss_double = double(student.double(), teacher.double(), indices, contrast)
    assert loss_double.dtype == torch.float64
    torch.testing.assert_close(loss_double.float(), loss_single, rtol=1e-5, atol=1e-6)


def test_crd_memory_refuses_bad_settings() -> None:
    with pytest.raises(ValueError, match="labels"):
        ContrastMemory(10, labels=torch.zeros(9))
    with pytest.raises(ValueError, match="at least 2"):
        ContrastMemory(10, labels=torch.zeros(10))
    with pytest.raises(ValueError, match="momentum"):
        ContrastMemory(10, momentum=1.0)
    with pytest.raises(ValueError, match="temperature"):
        ContrastMemory(10, temperature=float("nan"))


def _ddp_bank_worker(rank: int, world_size: int, port: int, path: str) -> None:
    os.environ["MASTER_ADDR"], os.environ["MASTER_PORT"] = "127.0.0.1", str(port)
    dist.init_process_group("gloo", rank=rank, world_size=world_size)
    try:
        torch.manual_seed(0)  # the same initial banks and embeddings on both ranks
        crd = CRDLoss(6, 10, num_samples=40, feature_dim=8, num_negatives=9)
        generator = torch.Generator().manual_seed(0)
        for _ in range(2):
            student = torch.randn(2 * 3, 6, generator=generator)
            teacher = torch.randn(2 * 3, 10, generator=generator)
            indices = torch.randperm(40, generator=generator)[: 2 * 3]
            indices[5] = indices[0]  # a repeated sample, as DistributedSampler's padding makes: rank 0's wins
            negatives = torch.randint(0, 40, (2 * 3, 10), generator=generator)
            negatives[:, 0] = indices
            rows = slice(3 * rank, 3 * rank + 3)
            crd(student[rows], teacher[rows], indices[rows], negatives[rows])
        torch.save({name: value for name, value in crd.state_dict().items() if "memory" in name}, f"{path}.{rank}")
    finally:
        dist.destroy_process_group()


def test_crd_under_ddp_gathers_every_rank_into_the_same_bank_as_one_process(tmp_path) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    path = str(tmp_path / "bank")
    mp.spawn(_ddp_bank_worker, args=(2, port, path), nprocs=2, join=True)
    rank_states = [torch.load(f"{path}.{rank}", weights_only=True) for rank in range(2)]

    torch.manual_seed(0)
    single = CRDLoss(6, 10, num_samples=40, feature_dim=8, num_negatives=9)
    generator = torch.Generator().manual_seed(0)
    for _ in range(2):  # one process, the two ranks' rows as one batch (the repeat included: its first row wins)
        student = torch.randn(6, 6, generator=generator)
        teacher = torch.randn(6, 10, generator=generator)
        indices = torch.randperm(40, generator=generator)[:6]
        indices[5] = indices[0]
        negatives = torch.randint(0, 40, (6, 10), generator=generator)
        negatives[:, 0] = indices
        single(student, teacher, indices, negatives)
    for name, value in single.state_dict().items():
        if "memory" in name:
            torch.testing.assert_close(rank_states[0][name], value, msg=name)
            assert torch.equal(rank_states[0][name], rank_states[1][name]), name
    # The bank is not what rank 0 alone would make of its own rows.
    torch.manual_seed(0)
    alone = CRDLoss(6, 10, num_samples=40, feature_dim=8, num_negatives=9)
    assert not torch.allclose(alone.memory.student_bank, rank_states[0]["memory.student_bank"])
