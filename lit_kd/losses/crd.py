"""Contrastive representation distillation (Tian et al., "Contrastive Representation Distillation", ICLR 2020).

Student and teacher penultimate features are embedded into a shared unit sphere; for each training sample the student
embedding should score high against the teacher's memory-bank entry of the same sample (positive) and low against the
entries of ``K`` other samples (negatives), and symmetrically for the teacher embedding against the student's bank.
The loss is the NCE-style objective of the paper's Eq. 18. Official code: HobbitLong/RepDistiller at b84f547,
``crd/criterion.py`` and ``crd/memory.py``. Defaults (``train_student.py:81-85``): embedding size 128, ``K = 16384``
negatives, temperature 0.07, bank momentum 0.5, negatives from other classes (``--mode exact``); the CIFAR-100 scripts
weight the loss 0.8 next to CE weight 1 (``scripts/run_cifar_distill.sh:29``, ``-a 0 -b 0.8``).

Differences from the official code, all ours:

- **Sampling** happens here, from torch's global RNG or a ``torch.Generator`` (so a run that reseeds per batch draws
  the same indices), instead of numpy in the DataLoader workers (``dataset/cifar100.py:159-168``). With labels
  (``exact``) the negatives are drawn without replacement from the samples of the other classes (with replacement
  when there are fewer than ``K``), as there; without labels they are uniform over the dataset with replacement,
  as ``ContrastMemory``'s own draw (``crd/memory.py:35-37``). ``relax`` mode is not ported.
- **State**: the two banks and the two normalisation constants are named buffers, so they are in ``state_dict()`` and
  a resumed run continues exactly (the official constants sit in an anonymous ``params`` tensor, and its checkpoints
  keep the student only). The bank only changes in training mode; the constants are fixed on the first training
  batch, as the official first forward does (``crd/memory.py:49-57``).
- **DDP**: under ``torch.distributed`` the batch's sample indices and embeddings are gathered from every rank before
  the bank update (and the normalisation constants are the mean over all ranks' first batches), so every rank holds
  the same bank: the one a single process would hold after the same global batches. A per-rank bank would instead
  diverge and be overwritten by rank 0's at each DDP forward (``broadcast_buffers``) and in the checkpoint. Each rank
  draws its own negatives. Where the gathered batch names a sample twice (``DistributedSampler`` pads with repeats),
  the first occurrence, in rank order, updates the bank.
- **Scores**: where the bank has no more rows than the ``[B, K + 1, D]`` gather of the drawn rows would hold
  (``N <= (K + 1) * D``: up to 2.1 million samples at the defaults), every bank row is scored with one matrix product
  and the drawn ones are picked, instead of gathering the drawn rows and multiplying them (``crd/memory.py:39-47``).
  The same products, summed in another order; at 5,000 samples and ``K = 16384`` both anchors' scores, forward and
  backward, took 88-118 ms instead of the gather's 5.6-5.9 s on one CPU thread (``benchmarks/crd_scores.py``). Negatives
  drawn with replacement are picked by uniform rank among the other classes' samples, a draw with the official
  distribution but not ``torch.multinomial``'s random stream.
- Scores are computed in float32 at least (float64 in a double module), with autocast off: ``exp(score / 0.07)``
  reaches ``e^14`` and overflows float16.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn

#: Added to the denominators of the NCE terms, as ``eps`` in ``crd/criterion.py:5``.
_NCE_EPSILON = 1e-7
#: A normalisation constant not yet set (the official code marks it with -1, ``crd/memory.py:18``).
_UNSET = -1.0


class ContrastEmbedding(nn.Module):
    """A linear map of flattened features onto the unit sphere: RepDistiller's ``Embed`` (``crd/criterion.py:79-102``).

    Args:
        in_features: size of the flattened input features (e.g. the penultimate layer's channels).
        out_features: embedding size (128, ``train_student.py:81``).

    Example:
        >>> import torch
        >>> embedding = ContrastEmbedding(8, 4)(torch.randn(3, 8, 1, 1))
        >>> embedding.shape, torch.allclose(embedding.norm(dim=1), torch.ones(3))
        (torch.Size([3, 4]), True)
    """

    def __init__(self, in_features: int, out_features: int = 128) -> None:
        super().__init__()
        self.linear = nn.Linear(in_features, out_features)

    def forward(self, features: Tensor) -> Tensor:
        """``[B, ...]`` features, flattened, mapped and L2-normalised to ``[B, out_features]``."""
        return F.normalize(self.linear(features.flatten(1)), dim=1)


class ContrastScores(NamedTuple):
    """Normalised scores ``exp(bank_row . embedding / T) / Z``, ``[B, K + 1]``, the positive in column 0."""

    student_anchor: Tensor
    """The student embedding against the teacher bank (official ``out_v1``, the student's half of the loss)."""
    teacher_anchor: Tensor
    """The teacher embedding against the student bank (official ``out_v2``)."""


def contrast_loss(scores: Tensor, num_samples: int) -> Tensor:
    """CRD's NCE loss (Eq. 18) on ``[B, K + 1]`` scores, the positive in column 0: RepDistiller's ``ContrastLoss``.

    With noise ``m = K / num_samples`` (``K`` negatives drawn uniformly from ``num_samples``), it is
    ``-(sum_i log(P_i0 / (P_i0 + m)) + sum_ij log(m / (P_ij + m))) / B`` (``crd/criterion.py:51-76``, with its
    ``eps = 1e-7`` added to both denominators).

    Example:
        >>> import torch, math
        >>> scores = torch.tensor([[3.0, 1.0]])  # K = 1 negative out of 2 samples: m = 0.5
        >>> expected = -(math.log(3.0 / (3.5 + 1e-7)) + math.log(0.5 / (1.5 + 1e-7)))
        >>> math.isclose(contrast_loss(scores, num_samples=2).item(), expected, rel_tol=1e-6)
        True
    """
    if scores.ndim != 2 or scores.shape[1] < 2:
        raise ValueError(f"scores must be [B, K + 1] with K >= 1, got {tuple(scores.shape)}")
    noise = (scores.shape[1] - 1) / num_samples
    positive = scores[:, 0]
    log_positive = torch.log(positive / (positive + noise + _NCE_EPSILON))
    log_negative = torch.log(noise / (scores[:, 1:] + noise + _NCE_EPSILON))
    return -(log_positive.sum() + log_negative.sum()) / scores.shape[0]


class ContrastMemory(nn.Module):
    """The two memory banks of CRD (one row per training sample), their sampling, scores and momentum update.

    The port of RepDistiller's ``ContrastMemory`` (``crd/memory.py:6-79``); see the module docstring for what differs.
    Rows start uniform in ``[-s, s]``, ``s = 1 / sqrt(feature_dim / 3)``, student bank first (``crd/memory.py:19-21``),
    from ``generator`` or torch's global RNG; each update replaces a sample's row by
    ``normalize(momentum * row + (1 - momentum) * embedding)`` (``crd/memory.py:63-77``).

    Args:
        num_samples: training-set size ``N`` (the banks are ``[N, feature_dim]``).
        feature_dim: embedding size (128, ``train_student.py:81``).
        num_negatives: ``K`` (16384, ``train_student.py:83``).
        temperature: ``T`` of the scores (0.07, ``train_student.py:84``).
        momentum: weight of the old row in an update (0.5, ``train_student.py:85``).
        labels: ``[N]`` class of every training sample, indexed like the sample indices: negatives are then drawn
            from the other classes (``exact``, ``train_student.py:82``); ``None`` draws them uniformly.
        generator: draws the initial banks (CPU); ``None`` uses torch's global RNG.

    Example:
        >>> import torch
        >>> memory = ContrastMemory(num_samples=10, feature_dim=4, num_negatives=3, labels=torch.arange(10) % 2)
        >>> sorted(memory.state_dict())
        ['student_bank', 'student_normalizer', 'teacher_bank', 'teacher_normalizer']
        >>> drawn = memory.sample_contrast_indices(torch.tensor([0, 5]), generator=torch.Generator().manual_seed(0))
        >>> drawn[:, 0].tolist(), bool((memory.labels[drawn[:, 1:]] != memory.labels[drawn[:, :1]]).all())
        ([0, 5], True)
    """

    labels: Tensor | None

    def __init__(
        self,
        num_samples: int,
        feature_dim: int = 128,
        num_negatives: int = 16384,
        temperature: float = 0.07,
        momentum: float = 0.5,
        *,
        labels: Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        if num_samples < 2 or feature_dim < 1 or num_negatives < 1:
            raise ValueError(
                f"num_samples ({num_samples}) must be >= 2, feature_dim ({feature_dim}) and num_negatives "
                f"({num_negatives}) >= 1"
            )
        if not temperature > 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        if not 0 <= momentum < 1:
            raise ValueError(f"momentum must be in [0, 1), got {momentum}")
        if labels is not None:
            labels = torch.as_tensor(labels).reshape(-1).long()
            if labels.shape[0] != num_samples:
                raise ValueError(f"labels: {labels.shape[0]} labels for num_samples={num_samples}")
            if labels.unique().numel() < 2:
                raise ValueError("labels: negatives come from the other classes, so labels must hold at least 2")
        self.num_samples, self.num_negatives = num_samples, num_negatives
        self.temperature, self.momentum = temperature, momentum
        bound = 1.0 / math.sqrt(feature_dim / 3)
        for name in ("student_bank", "teacher_bank"):
            bank = torch.rand(num_samples, feature_dim, generator=generator) * (2 * bound) - bound
            self.register_buffer(name, bank)
        self.register_buffer("student_normalizer", torch.tensor(_UNSET))
        self.register_buffer("teacher_normalizer", torch.tensor(_UNSET))
        self.register_buffer("labels", labels, persistent=False)

    def sample_contrast_indices(self, sample_indices: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """``[B, K + 1]`` bank rows to score: column 0 the samples themselves, then ``K`` negatives each.

        Args:
            sample_indices: ``[B]`` dataset indices of the batch's samples.
            generator: the draws' generator, on the bank's device; ``None`` uses torch's global RNG.
        """
        sample_indices = sample_indices.reshape(-1).to(self.student_bank.device, torch.long)
        batch_size, device = sample_indices.shape[0], sample_indices.device
        if self.labels is None:
            negatives = torch.randint(
                0, self.num_samples, (batch_size, self.num_negatives), generator=generator, device=device
            )
        else:
            # Uniform over the other classes' samples, without replacement unless a class has fewer negatives than
            # K (np.random.choice(cls_negative[target], K, replace), dataset/cifar100.py:166-167).
            sorted_labels, order = self.labels.sort(stable=True)
            own = self.labels[sample_indices]
            start = torch.searchsorted(sorted_labels, own)
            own_count = torch.searchsorted(sorted_labels, own, right=True) - start
            others = self.num_samples - own_count
            negatives = torch.empty(batch_size, self.num_negatives, dtype=torch.long, device=device)
            enough = others >= self.num_negatives
            if enough.any():
                other_class = self.labels.unsqueeze(0) != own[enough].unsqueeze(1)
                negatives[enough] = torch.multinomial(other_class.float(), self.num_negatives, generator=generator)
            if not enough.all():  # the u-th sample of the other classes, in `order` with the own class cut out
                few = ~enough
                draws = torch.randint(2**62, (int(few.sum()), self.num_negatives), generator=generator, device=device)
                rank = draws % others[few].unsqueeze(1)  # uniform in [0, others): a bias of others / 2^62 at most
                rank += (rank >= start[few].unsqueeze(1)) * own_count[few].unsqueeze(1)
                negatives[few] = order[rank]
        return torch.cat([sample_indices.unsqueeze(1), negatives], dim=1)

    def scores(self, student_embedding: Tensor, teacher_embedding: Tensor, contrast_indices: Tensor) -> ContrastScores:
        """Scores of both embeddings ``[B, D]`` against the other side's bank rows ``contrast_indices`` ``[B, K + 1]``.

        On the first training batch this fixes the normalisation constants ``Z = mean(exp(score / T)) * N``
        (``crd/memory.py:49-57``); before that (e.g. a validation sanity check) each batch uses its own.
        """
        with torch.autocast(device_type=student_embedding.device.type, enabled=False):
            student_anchor = self._exp_scores(self.teacher_bank, student_embedding, contrast_indices)
            teacher_anchor = self._exp_scores(self.student_bank, teacher_embedding, contrast_indices)
            return ContrastScores(
                student_anchor=student_anchor / self._normalizer("student_normalizer", student_anchor),
                teacher_anchor=teacher_anchor / self._normalizer("teacher_normalizer", teacher_anchor),
            )

    def _exp_scores(self, bank: Tensor, embedding: Tensor, contrast_indices: Tensor) -> Tensor:
        dtype = torch.promote_types(bank.dtype, torch.float32)  # float32 at least (float16 overflows), float64 kept
        bank, embedding = bank.to(dtype), embedding.to(dtype)  # no gradient to the bank: it is a buffer
        if bank.shape[0] <= contrast_indices.shape[1] * bank.shape[1]:
            # Every bank row scored, the drawn ones picked (module docstring, "Scores"). The bank is copied: the
            # update after the loss changes it in place, and the backward pass reads it.
            scores = torch.gather(embedding @ bank.clone().T, 1, contrast_indices)
        else:
            scores = torch.bmm(bank[contrast_indices], embedding.unsqueeze(2)).squeeze(2)
        return torch.exp(scores / self.temperature)

    def _normalizer(self, name: str, exp_scores: Tensor) -> Tensor:
        stored: Tensor = getattr(self, name)
        if stored.item() != _UNSET:
            return stored
        with torch.no_grad():
            total = torch.stack([exp_scores.sum(), torch.tensor(exp_scores.numel(), device=exp_scores.device)])
            total = total.double()
            if _distributed():
                dist.all_reduce(total)
            normalizer = (total[0] / total[1] * self.num_samples).to(stored.dtype)
        if self.training:
            stored.copy_(normalizer)
        return normalizer

    @torch.no_grad()
    def update(self, student_embedding: Tensor, teacher_embedding: Tensor, sample_indices: Tensor) -> None:
        """Move the samples' rows of both banks towards their new embeddings, then renormalise them.

        Under ``torch.distributed`` the rows of every rank's batch are gathered first (see the module docstring).
        """
        sample_indices = sample_indices.reshape(-1).to(self.student_bank.device, torch.long)
        student_embedding = student_embedding.detach().to(self.student_bank.dtype)
        teacher_embedding = teacher_embedding.detach().to(self.teacher_bank.dtype)
        if _distributed():
            sample_indices, student_embedding, teacher_embedding = _all_gather_rows(
                sample_indices, student_embedding, teacher_embedding
            )
        first = _first_occurrences(sample_indices)
        sample_indices = sample_indices[first]
        for bank, embedding in ((self.student_bank, student_embedding), (self.teacher_bank, teacher_embedding)):
            moved = bank[sample_indices] * self.momentum + embedding[first] * (1 - self.momentum)
            bank.index_copy_(0, sample_indices, F.normalize(moved, dim=1))


class CRDLoss(nn.Module):
    """CRD: both embeddings, the memory, and the symmetric contrastive loss (RepDistiller ``CRDLoss``).

    ``forward`` returns ``contrast_loss(student half) + contrast_loss(teacher half)`` (``crd/criterion.py:31-48``)
    and, in training mode, updates the banks with the batch. The embeddings are trainable and belong in the student's
    optimiser (``train_student.py:195-198``).

    Args:
        student_dim: flattened size of the student's features (its penultimate layer, ``train_student.py:191``).
        teacher_dim: flattened size of the teacher's features.
        num_samples: training-set size; sample indices index the banks.
        feature_dim: embedding size (128, ``train_student.py:81``).
        num_negatives: ``K`` (16384, ``train_student.py:83``).
        temperature: 0.07 (``train_student.py:84``).
        momentum: 0.5 (``train_student.py:85``).
        labels: ``[N]`` training labels for class-aware negatives (``exact``); ``None`` draws them uniformly.

    Example:
        >>> import torch
        >>> crd = CRDLoss(student_dim=6, teacher_dim=8, num_samples=20, feature_dim=4, num_negatives=5)
        >>> loss = crd(torch.randn(3, 6), torch.randn(3, 8), torch.tensor([0, 7, 19]))
        >>> loss.shape, bool(loss > 0), float(crd.memory.student_normalizer) > 0
        (torch.Size([]), True, True)
    """

    def __init__(
        self,
        student_dim: int,
        teacher_dim: int,
        num_samples: int,
        feature_dim: int = 128,
        num_negatives: int = 16384,
        temperature: float = 0.07,
        momentum: float = 0.5,
        *,
        labels: Tensor | None = None,
    ) -> None:
        super().__init__()
        self.embed_student = ContrastEmbedding(student_dim, feature_dim)
        self.embed_teacher = ContrastEmbedding(teacher_dim, feature_dim)
        self.memory = ContrastMemory(num_samples, feature_dim, num_negatives, temperature, momentum, labels=labels)

    def forward(
        self,
        student_features: Tensor,
        teacher_features: Tensor,
        sample_indices: Tensor,
        contrast_indices: Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """The CRD loss of a batch.

        Args:
            student_features: ``[B, ...]`` student features (flattened to ``student_dim``).
            teacher_features: ``[B, ...]`` teacher features (no gradient needed).
            sample_indices: ``[B]`` dataset indices of the batch's samples.
            contrast_indices: ``[B, K + 1]`` bank rows to score (positive first); drawn with
                :meth:`ContrastMemory.sample_contrast_indices` when ``None``.
            generator: the generator for that draw; ``None`` uses torch's global RNG.
        """
        student_embedding = self.embed_student(student_features)
        teacher_embedding = self.embed_teacher(teacher_features)
        if contrast_indices is None:
            contrast_indices = self.memory.sample_contrast_indices(sample_indices, generator)
        scores = self.memory.scores(student_embedding, teacher_embedding, contrast_indices)
        loss = contrast_loss(scores.student_anchor, self.memory.num_samples) + contrast_loss(
            scores.teacher_anchor, self.memory.num_samples
        )
        if self.training:
            self.memory.update(student_embedding, teacher_embedding, sample_indices)
        return loss


def _distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def _all_gather_rows(*tensors: Tensor) -> list[Tensor]:
    """Every rank's rows of each tensor (same row count within a rank, possibly different across ranks), rank order."""
    device = tensors[0].device
    count = torch.tensor([tensors[0].shape[0]], device=device)
    counts = [torch.zeros_like(count) for _ in range(dist.get_world_size())]
    dist.all_gather(counts, count)
    sizes = [int(c) for c in counts]
    gathered = []
    for tensor in tensors:
        padded = tensor.new_zeros((max(sizes), *tensor.shape[1:]))
        padded[: tensor.shape[0]] = tensor
        parts = [torch.empty_like(padded) for _ in sizes]
        dist.all_gather(parts, padded)
        gathered.append(torch.cat([part[:size] for part, size in zip(parts, sizes, strict=True)]))
    return gathered


def _first_occurrences(indices: Tensor) -> Tensor:
    """Positions of the first occurrence of each distinct value of ``indices``."""
    unique, inverse = torch.unique(indices, return_inverse=True)
    positions = torch.arange(indices.shape[0], device=indices.device)
    first = torch.full((unique.shape[0],), indices.shape[0], dtype=torch.long, device=indices.device)
    return first.scatter_reduce(0, inverse, positions, reduce="amin")
