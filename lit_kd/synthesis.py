r"""``lit-kd synthesize``, cGAN-KD's stage 2: sample a trained conditional GAN, filter and relabel with the teacher.

Ding et al. (2021) draw many samples per class (or per label of a grid for regression) from the conditional GAN,
optionally subsample them, drop those the teacher disagrees with, relabel the rest with the teacher's prediction,
and train the student on real + synthetic data. The command writes a synthetic-set folder
(:mod:`lit_kd.data.synthetic`) that any recipe adds to its training data with ``--data.synthetic_dir``::

    lit-kd synthesize --gan_checkpoint checkpoints/cifar10/cgan_sngan/last.ckpt \
        --teacher lit_kd.models.CifarResNet --teacher.depth 56 --teacher.num_classes 10 \
        --teacher_checkpoint checkpoints/cifar10/teacher_resnet56/last.ckpt \
        --data lit_kd.data.CIFAR10DataModule --output_dir synthetic/cifar10/cgan_sngan --per_label 5000

The DataModule is only read for its normalisation, task, number of classes, image size and ``target_scale``; no
image is loaded. ``lit-kd synthesize --help`` lists every option.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from lit_kd.checkpointing import load_network_weights, safe_load
from lit_kd.data.base import InMemoryImageDataModule
from lit_kd.data.synthetic import file_sha256, save_synthetic_set
from lit_kd.errors import one_line_errors
from lit_kd.models.normalization import match_input_normalization


def gan_network_allowlist() -> dict[str, type[nn.Module]]:
    """The classes a cGAN checkpoint may name for its networks: lit-kd's generators and discriminators.

    Only these: a record naming another lit-kd network could pass it arguments that act outside the file (a
    :class:`~lit_kd.models.PretrainedNetwork` with ``weights_dir`` and ``download`` creates a folder and downloads).
    """
    from lit_kd.models.gan import ConditionalGenerator, ProjectionDiscriminator

    return {f"{cls.__module__}.{cls.__qualname__}": cls for cls in (ConditionalGenerator, ProjectionDiscriminator)}


def load_conditional_gan(
    path: str | Path, allowed_classes: list[type[nn.Module]] | None = None
) -> tuple[nn.Module, nn.Module, dict[str, Any]]:
    """Rebuild the generator and discriminator of a :class:`~lit_kd.methods.ConditionalGAN` checkpoint.

    The file is read without running code (:func:`~lit_kd.checkpointing.safe_load`; a legacy pickle only with
    ``LIT_KD_TRUST_CHECKPOINTS=1``). The record names the networks' classes: only lit-kd's own networks
    (:func:`gan_network_allowlist`) and the ``allowed_classes`` the caller names are built; the file never makes
    lit-kd import a module.

    Returns both networks (in eval mode) and the checkpoint's ``conditional_gan`` record (network configs, vicinity
    parameters, training-label range for continuous labels).

    Raises:
        ValueError: the file is no cGAN checkpoint, or names a class outside the allow-list (the message lists it).
    """
    path = Path(path).expanduser()
    checkpoint = safe_load(path)
    record = checkpoint.get("conditional_gan") if isinstance(checkpoint, dict) else None
    if record is None:
        raise ValueError(f"{path} is not a lit_kd.methods.ConditionalGAN checkpoint (no 'conditional_gan' record)")
    allowed = gan_network_allowlist() | {f"{c.__module__}.{c.__qualname__}": c for c in allowed_classes or []}
    networks = []
    for name in ("generator", "discriminator"):
        class_path = record[name]["class_path"]
        if class_path not in allowed:
            raise ValueError(
                f"{path}: its {name} names the class {class_path!r}, which is not one of lit-kd's networks; a file "
                "does not choose the code lit-kd runs. If you wrote that class, name it with --allowed_classes "
                f"(lit-kd's own: {', '.join(sorted(allowed)[:6])}, ...)"
            )
        network = allowed[class_path](**record[name]["init_args"])
        network.load_state_dict(
            {
                key[len(name) + 1 :]: value
                for key, value in checkpoint["state_dict"].items()
                if key.startswith(f"{name}.")
            }
        )
        networks.append(network.eval())
    return networks[0], networks[1], record


def to_uint8(images: Tensor) -> Tensor:
    """Generator output in ``[-1, 1]`` to ``uint8`` pixels (rounded).

    Example:
        >>> to_uint8(torch.tensor([-1.0, 0.0, 1.0])).tolist()
        [0, 128, 255]
    """
    return ((images.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)


@torch.no_grad()
def generate(generator: nn.Module, labels: Tensor, batch_size: int = 500, seed: int = 0) -> Tensor:
    """``uint8`` images ``[N, 3, S, S]`` from ``generator`` (in eval mode) for each label, noise seeded by ``seed``."""
    device = next(generator.parameters()).device
    noise_source = torch.Generator().manual_seed(seed)
    generator.eval()
    batches = []
    for start in range(0, len(labels), batch_size):
        chunk = labels[start : start + batch_size].to(device)
        noise = torch.randn(len(chunk), generator.latent_dim, generator=noise_source).to(device)
        batches.append(to_uint8(generator(noise, chunk)).cpu())
    return torch.cat(batches)


@torch.no_grad()
def network_outputs(
    network: nn.Module, images: Tensor, mean: Any, std: Any, batch_size: int = 500, labels: Tensor | None = None
) -> Tensor:
    """Outputs of ``network`` (eval mode) on ``uint8`` images normalised with ``mean``/``std``; ``labels`` if given."""
    device = next(network.parameters()).device
    shape = (1, 3, 1, 1)
    mean, std = torch.tensor(mean, device=device).view(shape), torch.tensor(std, device=device).view(shape)
    network.eval()
    outputs = []
    for start in range(0, len(images), batch_size):
        batch = (images[start : start + batch_size].to(device).float() / 255 - mean) / std
        extra = () if labels is None else (labels[start : start + batch_size].to(device),)
        outputs.append(network(batch, *extra).float().cpu())
    return torch.cat(outputs)


def classification_keep_mask(
    probabilities: Tensor,
    labels: Tensor,
    min_confidence: float = 0.5,
    require_agreement: bool = True,
    keep_quantile: float | None = None,
    groups: Tensor | None = None,
) -> Tensor:
    """Which samples the teacher accepts for their conditioning class.

    Kept: the teacher's probability of the conditioning class is at least ``min_confidence``, the class is also its
    top prediction (``require_agreement``), and, with ``keep_quantile = q``, the cross-entropy ``-log p(class)`` is
    below its ``q``-quantile over all samples (cGAN-KD's CIFAR filter, ``--samp_filter_ce_percentile_threshold 0.7``
    with ``min_confidence=0`` and ``require_agreement=False``).

    Example:
        >>> probabilities = torch.tensor([[0.9, 0.1], [0.6, 0.4], [0.3, 0.7], [0.45, 0.55]])
        >>> classification_keep_mask(probabilities, torch.tensor([0, 1, 1, 0]), min_confidence=0.5).tolist()
        [True, False, True, False]
        >>> classification_keep_mask(probabilities, torch.tensor([0, 1, 1, 0]), 0.0, False, keep_quantile=0.5).tolist()
        [True, False, True, False]

    With ``groups`` (each sample's conditioning label) the quantile is taken within each group: one cutoff per class,
    as cGAN-KD's CIFAR-100 code sets it (``CIFAR-100/make_fake_datasets/main.py:498-509`` at 8fcb117, from a burn-in
    draw of the class).
    """
    if not 0 <= min_confidence <= 1 or (keep_quantile is not None and not 0 < keep_quantile <= 1):
        raise ValueError(
            f"need 0 <= min_confidence <= 1 and 0 < keep_quantile <= 1, got {min_confidence}, {keep_quantile}"
        )
    confidence = probabilities.gather(1, labels.view(-1, 1)).squeeze(1)
    keep = confidence >= min_confidence
    if require_agreement:
        keep &= probabilities.argmax(dim=1) == labels
    if keep_quantile is not None:
        cross_entropy = -confidence.clamp_min(1e-12).log()
        cutoff = torch.empty_like(cross_entropy)
        for group in groups.unique() if groups is not None else [None]:
            members = slice(None) if group is None else groups == group
            cutoff[members] = torch.quantile(cross_entropy[members], keep_quantile)
        keep &= cross_entropy < cutoff
    return keep


def regression_keep_mask(
    predictions: Tensor, labels: Tensor, tolerance: float | None = None, keep_quantile: float | None = None
) -> Tensor:
    """Which samples the teacher accepts: ``|prediction - label| <= tolerance`` and/or the error below its quantile.

    With ``keep_quantile = q``: the absolute error is below its ``q``-quantile over all samples (cGAN-KD's UTKFace
    filter, ``--samp_filter_mae_percentile_threshold 0.7``). Predictions, labels and tolerance share one unit.

    Example:
        >>> predictions, labels = torch.tensor([0.50, 0.30, 0.80]), torch.tensor([0.45, 0.50, 0.80])
        >>> regression_keep_mask(predictions, labels, tolerance=0.1).tolist()
        [True, False, True]
    """
    if tolerance is None and keep_quantile is None:
        raise ValueError("regression filtering needs a tolerance or a keep_quantile")
    if (tolerance is not None and tolerance < 0) or (keep_quantile is not None and not 0 < keep_quantile <= 1):
        raise ValueError(f"need tolerance >= 0 and 0 < keep_quantile <= 1, got {tolerance}, {keep_quantile}")
    errors = (predictions - labels).abs()
    keep = torch.ones_like(errors, dtype=torch.bool) if tolerance is None else errors <= tolerance
    if keep_quantile is not None:
        keep &= errors < torch.quantile(errors, keep_quantile)
    return keep


def rejection_sampling_mask(scores: Tensor, groups: Tensor, generator: torch.Generator) -> Tensor:
    """Accept each sample with probability ``exp(score - max score of its group)`` (discriminator rejection sampling).

    cGAN-KD subsamples with cDR-RS: rejection sampling with a conditional density ratio learnt in a pre-trained
    CNN's feature space. We use the GAN's own discriminator score as the log density ratio instead (DRS, Azadi et
    al., 2019), per conditioning label; this stand-in is our choice and only approximate for a hinge-loss
    discriminator.
    """
    accept = torch.zeros(len(scores), dtype=torch.bool)
    uniform = torch.rand(len(scores), generator=generator)
    for group in groups.unique():
        members = groups == group
        accept[members] = uniform[members] <= torch.exp(scores[members] - scores[members].max())
    return accept


def label_grid(task: str, num_classes: int, gan_record: dict[str, Any], num_labels: int | None) -> Tensor:
    """Conditioning labels: every class, or ``num_labels`` evenly spaced labels over the GAN's training-label range.

    For continuous labels the default count is the number of distinct training labels (for UTKFace, every age: the
    official default generates for the training ages).
    """
    if task == "classification":
        return torch.arange(num_classes)
    low, high = gan_record["label_min"], gan_record["label_max"]
    return torch.linspace(low, high, num_labels or gan_record["num_distinct_labels"])


def synthesize(
    generator: nn.Module,
    teacher: nn.Module,
    data: InMemoryImageDataModule,
    gan_record: dict[str, Any],
    per_label: int = 1000,
    num_labels: int | None = None,
    min_confidence: float = 0.5,
    require_agreement: bool = True,
    keep_quantile: float | None = None,
    quantile_per_label: bool = False,
    tolerance: float | None = None,
    discriminator: nn.Module | None = None,
    max_per_label: int | None = None,
    batch_size: int = 500,
    seed: int = 0,
) -> tuple[Tensor, Tensor, dict[str, Any]]:
    """Generate, (optionally) subsample, filter and relabel; returns ``uint8`` images, targets and the counts.

    ``per_label`` samples are drawn for every conditioning label of :func:`label_grid`. With a ``discriminator``
    they are first subsampled by :func:`rejection_sampling_mask`. The teacher sees the ``uint8`` images (what is
    saved) normalised as ``data``; classification keeps :func:`classification_keep_mask` (the ``keep_quantile`` cutoff
    over all samples, or per class with ``quantile_per_label``) and relabels with the teacher's top class, regression
    keeps :func:`regression_keep_mask` (``tolerance`` in the data's units, e.g. years: divided by
    ``data.target_scale``) and relabels with the teacher's prediction clipped to ``[0, 1]`` (as cGAN-KD's
    ``--adjust``). ``max_per_label`` caps what is kept per conditioning label (cGAN-KD trains its students
    on a fixed number of synthetic images per label).
    """
    task, scale = data.task, float(getattr(data, "target_scale", 1.0))
    match_input_normalization(teacher, data.mean, data.std)  # a teacher trained with other statistics (pretrained)
    grid = label_grid(task, data.num_classes, gan_record, num_labels)
    labels = grid.repeat_interleave(per_label)
    images = generate(generator, labels, batch_size, seed)
    groups = torch.arange(len(grid)).repeat_interleave(per_label)
    kept = torch.ones(len(labels), dtype=torch.bool)
    if discriminator is not None:
        scores = network_outputs(discriminator, images, (0.5,) * 3, (0.5,) * 3, batch_size, labels=labels)
        kept = rejection_sampling_mask(scores, groups, torch.Generator().manual_seed(seed + 1))
    subsampled = kept.clone()
    outputs = network_outputs(teacher, images[kept], data.mean, data.std, batch_size)
    if outputs.ndim != 2 or outputs.shape[1] != data.num_classes:
        raise ValueError(
            f"the teacher ({type(teacher).__name__}) outputs {tuple(outputs.shape[1:])} per image, but the data has "
            f"{data.num_classes} {'classes' if task == 'classification' else 'output (regression)'}"
        )
    if task == "classification":
        accepted = classification_keep_mask(
            outputs.softmax(dim=1),
            labels[kept],
            min_confidence,
            require_agreement,
            keep_quantile,
            labels[kept] if quantile_per_label else None,
        )
        relabelled = outputs.argmax(dim=1)
    else:
        predictions = outputs.view(-1)
        tolerance_scaled = None if tolerance is None else tolerance / scale
        accepted = regression_keep_mask(predictions, labels[kept].float(), tolerance_scaled, keep_quantile)
        relabelled = predictions.clamp(0, 1)
    kept[kept.clone()] = accepted
    targets = torch.zeros(len(labels), dtype=relabelled.dtype)
    targets[subsampled] = relabelled
    if max_per_label is not None:
        for group in range(len(grid)):
            members = torch.nonzero(kept & (groups == group)).view(-1)
            kept[members[max_per_label:]] = False
    counts = {}
    for group, value in enumerate(grid.tolist()):
        members = groups == group
        name = str(int(value)) if task == "classification" else f"{value * scale:.4g}"
        counts[name] = {
            "generated": int(members.sum()),
            "subsampled_out": int((members & ~subsampled).sum()),
            "kept": int((members & kept).sum()),
            "dropped": int((members & ~kept).sum()),
        }
    return images[kept], targets[kept], counts


def run(
    gan_checkpoint: str,
    teacher: nn.Module,
    teacher_checkpoint: str,
    data: InMemoryImageDataModule,
    output_dir: str,
    per_label: int = 1000,
    num_labels: int | None = None,
    min_confidence: float = 0.5,
    require_agreement: bool = True,
    keep_quantile: float | None = None,
    quantile_per_label: bool = False,
    tolerance: float | None = None,
    subsampling: bool = False,
    max_per_label: int | None = None,
    batch_size: int = 500,
    seed: int = 0,
    device: str = "auto",
    allowed_classes: list[str] | None = None,
) -> Path:
    """Stage 2 of cGAN-KD: synthesise, filter and relabel with the teacher, save with provenance; returns the folder.

    Args:
        gan_checkpoint: checkpoint of a :class:`~lit_kd.methods.ConditionalGAN` run (stage 1).
        teacher: the teacher's architecture (a network of the data's task: ``num_classes`` logits, or 1 output).
        teacher_checkpoint: the teacher's weights (a lit-kd/Lightning checkpoint or a state dict).
        data: the DataModule of the real data (read for normalisation, task, classes, image size, target scale).
        output_dir: folder to write (:mod:`lit_kd.data.synthetic` layout).
        per_label: samples generated per class or grid label; ours (cGAN-KD: 50,000 per CIFAR class before
            filtering, 2,000 per UTKFace age).
        num_labels: regression only: grid size (default: the number of distinct training labels of the GAN).
        min_confidence: classification: least teacher probability of the conditioning class; 0.5 is ours.
        require_agreement: classification: the conditioning class must be the teacher's top class; ours.
        keep_quantile: keep only samples whose teacher loss (cross-entropy, or absolute error) is below this
            quantile, pooled over the labels. cGAN-KD's code at 8fcb117 uses 0.9 for CIFAR-100, per class
            (``CIFAR-100/make_fake_datasets/scripts/run.sh:51``, cutoffs from a separate burn-in draw), and 0.7 for
            UTKFace (``UTKFace/scripts/run_gene_data.sh:6``); ``benchmarks/parity_cgan.py`` compares the two.
        quantile_per_label: classification: one ``keep_quantile`` cutoff per class, as cGAN-KD's CIFAR-100 code (its
            cutoff comes from a separate burn-in draw of the class, ours from the same samples); default pooled.
        tolerance: regression: largest ``|teacher - label|`` kept, in the data's units (years for UTKFace).
        subsampling: subsample first by discriminator rejection sampling (:func:`rejection_sampling_mask`).
        max_per_label: keep at most this many per conditioning label.
        batch_size: generation and teacher batch size.
        seed: seed of the generator noise and of the subsampling.
        device: ``"auto"`` (CUDA if available), ``"cpu"``, ``"cuda"``, ...
        allowed_classes: class paths of your own generator/discriminator classes the GAN checkpoint may name (lit-kd's
            own networks are always allowed); each is imported because you named it here.
    """
    if data.task == "classification" and tolerance is not None:
        raise ValueError("tolerance applies to regression data; classification uses min_confidence/keep_quantile")
    if quantile_per_label and (data.task != "classification" or keep_quantile is None):
        raise ValueError("quantile_per_label applies to classification with a keep_quantile")
    if data.task == "regression" and tolerance is None and keep_quantile is None:
        raise ValueError("regression: set tolerance (in the data's units, e.g. years) and/or keep_quantile")
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    target = torch.device(device)
    extra = [_import_class(class_path) for class_path in allowed_classes or []]
    generator, discriminator, record = load_conditional_gan(gan_checkpoint, extra)
    load_network_weights(teacher, teacher_checkpoint)
    expected = None if data.task == "regression" else data.num_classes
    if generator.num_classes != expected or generator.image_size != data.image_size:
        raise ValueError(
            f"the GAN of {gan_checkpoint} (num_classes={generator.num_classes}, image_size={generator.image_size}) "
            f"does not fit {type(data).__name__} ({data.task}, image_size={data.image_size})"
        )
    started = time.time()
    images, targets, counts = synthesize(
        generator.to(target),
        teacher.to(target),
        data,
        record,
        per_label=per_label,
        num_labels=num_labels,
        min_confidence=min_confidence,
        require_agreement=require_agreement,
        keep_quantile=keep_quantile,
        quantile_per_label=quantile_per_label,
        tolerance=tolerance,
        discriminator=discriminator.to(target) if subsampling else None,
        max_per_label=max_per_label,
        batch_size=batch_size,
        seed=seed,
    )
    if len(targets) == 0:
        raise ValueError(f"the teacher filter kept none of the samples; counts per label: {counts}")
    provenance = {
        "task": data.task,
        "num_classes": data.num_classes,
        "target_scale": float(getattr(data, "target_scale", 1.0)),
        "generator": {"checkpoint": str(Path(gan_checkpoint).resolve()), "sha256": file_sha256(gan_checkpoint)}
        | {key: record[key] for key in ("generator", "discriminator")},
        "teacher": {
            "class_path": f"{type(teacher).__module__}.{type(teacher).__qualname__}",
            "checkpoint": str(Path(teacher_checkpoint).resolve()),
            "sha256": file_sha256(teacher_checkpoint),
        },
        "data": f"{type(data).__module__}.{type(data).__qualname__}",
        "filter": {
            "min_confidence": min_confidence if data.task == "classification" else None,
            "require_agreement": require_agreement if data.task == "classification" else None,
            "keep_quantile": keep_quantile,
            "keep_quantile_scope": ("per label" if quantile_per_label else "pooled") if keep_quantile else None,
            "tolerance": tolerance,
            "relabel": "teacher top class" if data.task == "classification" else "teacher prediction clipped to [0, 1]",
        },
        "subsampling": "discriminator rejection sampling" if subsampling else None,
        "per_label": per_label,
        "max_per_label": max_per_label,
        "seed": seed,
        "counts": {
            "generated": sum(c["generated"] for c in counts.values()),
            "kept": len(targets),
            "per_label": counts,
        },
        "seconds": round(time.time() - started, 1),
    }
    return save_synthetic_set(output_dir, images, targets, provenance)


def _import_class(class_path: str) -> type[nn.Module]:
    """The class at ``class_path`` (named by the user on the command line, never by a file)."""
    import importlib

    module_name, _, class_name = class_path.rpartition(".")
    cls = getattr(importlib.import_module(module_name), class_name, None)
    if not isinstance(cls, type) or not issubclass(cls, nn.Module):
        raise ValueError(f"allowed_classes: {class_path!r} is not an nn.Module class")
    return cls


def main(args: list[str] | None = None) -> None:
    """``lit-kd synthesize``: :func:`run` from the command line (options as its arguments, or ``--config``)."""
    from jsonargparse import CLI

    with one_line_errors("lit-kd synthesize"):
        directory = CLI(run, args=args, as_positional=False, prog="lit-kd synthesize")
    print(f"synthetic set written to {directory}")


if __name__ == "__main__":
    main()
