r"""``lit-kd export``: the trained student of any method's checkpoint, as files a deployment can load.

Writes, under ``--output_dir``, as ``--formats`` asks:

* ``<name>.pt``: the network's plain ``state_dict`` (loads as a ``teacher_checkpoint`` or a student elsewhere);
* ``<name>.pt2``: a ``torch.export`` program (``torch.export.load(path).module()``);
* ``<name>.onnx``: ONNX, when the ``onnx`` package is installed (``pip install onnx``);
* ``<name>.json``, always: the architecture (class path and arguments, as in the recipe), the number of classes, the
  input size, the input normalisation, the task (and ``target_scale`` for regression), the method, and the checkpoint
  with its SHA-256.

By default the exported programs include the input normalisation as their first layer, so a deployment feeds RGB
images scaled to ``[0, 1]`` (NCHW); with ``--include_normalization false`` they expect inputs normalised with the
record's ``normalization.mean``/``std``. A network that declares its own input normalisation (``input_mean``/
``input_std``, as a :class:`~lit_kd.models.PretrainedNetwork` does) reads its inputs converted from the data's
normalisation into its own, in the programs (an explicit layer of their graph) as in the training module, so the
programs give the module's outputs. The plain state dict is the network alone: its weights expect
``network_normalization`` (and, where only parts of the network declare one, each part listed under ``parts``
expects its own). The network is rebuilt from the recipe (``--config`` and overrides, as for ``lit-kd fit``), never
from a class the checkpoint names::

    lit-kd export --config recipes/cifar10/kd_resnet56_resnet20.yaml \
        --ckpt_path checkpoints/cifar10/kd_resnet56_resnet20/best.ckpt --output_dir exported/

Online methods (DML, AFD) export the network that was best at the last validation, or ``--network <index>``.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from lit_kd.checkpointing import check_finite_weights, safe_load
from lit_kd.data.synthetic import file_sha256
from lit_kd.lightning_cli import LitKDCLI
from lit_kd.loggers import config_as_dict
from lit_kd.models.normalization import (
    InputConversion,
    declared_normalization,
    declaring_submodules,
    input_conversion,
    match_input_normalization,
)

FORMATS = ("state_dict", "export", "onnx")


class NormalizedNetwork(nn.Module):
    """A network with its input normalisation as the first layer: it takes images in ``[0, 1]``.

    Example:
        >>> network = NormalizedNetwork(nn.Identity(), mean=(0.5,), std=(0.25,))
        >>> network(torch.ones(1, 1, 1, 1)).item()
        2.0
    """

    def __init__(self, network: nn.Module, mean: tuple[float, ...], std: tuple[float, ...]) -> None:
        super().__init__()
        self.network = network
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1))

    def forward(self, images: Tensor) -> Tensor:
        """The network's output on ``(images - mean) / std``."""
        return self.network((images - self.mean) / self.std)


class ConvertedInputs(nn.Module):
    """A network that declares its own input normalisation, fed inputs in the data's: the conversion is its first layer.

    The explicit form of the forward pre-hook a training module puts on such a network (the same ``scale`` and
    ``shift`` as :class:`~lit_kd.models.normalization.InputConversion`), so that the conversion is a part of the
    traced programs' graph rather than a hook the network may not carry (a module that was never set up has none).

    Example:
        >>> network = ConvertedInputs(nn.Identity(), InputConversion((0.5,), (0.5,), (0.0,), (1.0,)))
        >>> network(torch.full((1, 1, 1, 1), -1.0)).item()
        0.0
    """

    def __init__(self, network: nn.Module, conversion: InputConversion) -> None:
        super().__init__()
        self.network = network
        self.register_buffer("scale", conversion.scale.detach().clone().float())
        self.register_buffer("shift", conversion.shift.detach().clone().float())

    def forward(self, images: Tensor) -> Tensor:
        """The network's output on ``images * scale + shift`` (``images`` in the data's normalisation)."""
        return self.network(images * self.scale + self.shift)


def _declaring_parts(network: nn.Module) -> dict[str, nn.Module]:
    """The parts of ``network`` that declare their own input normalisation, where ``network`` itself declares none."""
    return {} if declared_normalization(network) is not None else declaring_submodules(network)


@contextmanager
def _deployed(
    network: nn.Module, mean: Sequence[float], std: Sequence[float], include_normalization: bool
) -> Iterator[nn.Module]:
    """``network`` as the exported programs run it: the data's normalisation (if included), then the conversions.

    The conversions are those a training module applies for data normalised with ``mean``/``std``: a network that
    declares its own normalisation gets the conversion as its first layer (:class:`ConvertedInputs`); where only
    parts of it declare one, each outermost part gets the conversion hook for the time of the export (the trace
    records it). Conversion hooks ``network`` carried before (a module that was set up) are set aside meanwhile, so
    that nothing is converted twice, and put back on exit.
    """
    saved = {module: dict(module._forward_pre_hooks) for module in network.modules()}
    try:
        for module in saved:
            for key, hook in list(module._forward_pre_hooks.items()):
                if isinstance(hook, InputConversion):
                    del module._forward_pre_hooks[key]
        for part in _declaring_parts(network).values():
            match_input_normalization(part, mean, std)
        program: nn.Module = network
        conversion = input_conversion(network, mean, std)
        if conversion is not None:
            program = ConvertedInputs(program, conversion)
        if include_normalization:
            program = NormalizedNetwork(program, tuple(mean), tuple(std))
        yield program.eval()
    finally:
        for module, hooks in saved.items():
            module._forward_pre_hooks.clear()
            module._forward_pre_hooks.update(hooks)


def exported_network(module: nn.Module, network: str | int = "best") -> tuple[nn.Module, str]:
    """The network a method trains (its student; an online method's best or ``network``-th) and its config key."""
    networks = getattr(module, "networks", None)
    if networks is not None and hasattr(module, "best_network"):
        index = module.best_network if network == "best" else int(network)
        if not 0 <= index < len(networks):
            raise ValueError(f"--network must be 'best' or in [0, {len(networks)}), got {network!r}")
        return networks[index], f"networks[{index}]"
    if network != "best":
        raise ValueError(f"{type(module).__name__} trains one network: leave --network out")
    return module.student, "student"


def architecture(config: Any, key: str) -> dict[str, Any]:
    """The class path and arguments of ``model.init_args.<key>`` in a resolved LightningCLI config."""
    init_args = config["model"]["init_args"]
    if key.startswith("networks["):
        node = init_args["networks"][int(key[len("networks[") : -1])]
    else:
        node = init_args[key]
    return {"class_path": node["class_path"], "init_args": dict(node.get("init_args") or {})}


def export(
    module: nn.Module,
    datamodule: Any,
    output_dir: str | Path,
    checkpoint: str | Path | None = None,
    formats: tuple[str, ...] = ("state_dict", "export"),
    network: str | int = "best",
    include_normalization: bool = True,
    name: str = "student",
    config: Any = None,
) -> dict[str, Any]:
    """Write the trained network of ``module`` in ``formats`` and its record; returns the record.

    Args:
        module: a lit-kd method with its trained weights.
        datamodule: the DataModule it was trained with (read for the input size, normalisation and task).
        output_dir: where the files go.
        checkpoint: the checkpoint the weights came from (recorded with its SHA-256).
        formats: any of :data:`FORMATS`.
        network: for online methods, ``"best"`` or a network index.
        include_normalization: put the data's normalisation in front of the exported programs.
        name: file name stem.
        config: the resolved recipe (a dict), to record the architecture.
    """
    unknown = sorted(set(formats) - set(FORMATS))
    if unknown:
        raise ValueError(f"--formats: unknown {unknown}; choose from {list(FORMATS)}")
    if "onnx" in formats and importlib.util.find_spec("onnx") is None:
        raise ValueError("--formats onnx needs the onnx package: pip install onnx")
    chosen, key = exported_network(module, network)
    prefix = key.replace("[", ".").replace("]", "")  # networks[1] -> networks.1, as in the checkpoint
    source = f"checkpoint {checkpoint}" if checkpoint is not None else "the module"
    check_finite_weights({f"{prefix}.{name}": value for name, value in chosen.state_dict().items()}, source)
    chosen = chosen.eval().float()
    mean, std = tuple(datamodule.mean), tuple(datamodule.std)
    input_shape = tuple(datamodule.input_shape)
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    example = torch.rand(2, *input_shape)
    if not include_normalization:
        example = (example - torch.tensor(mean).view(1, -1, 1, 1)) / torch.tensor(std).view(1, -1, 1, 1)
    files: dict[str, str] = {}
    if "state_dict" in formats:
        path = output_dir / f"{name}.pt"
        torch.save({k: v.detach().cpu().contiguous() for k, v in chosen.state_dict().items()}, path)
        files["state_dict"] = path.name
    with _deployed(chosen, mean, std, include_normalization) as program_module:
        if "export" in formats:
            path = output_dir / f"{name}.pt2"
            batch = torch.export.Dim("batch", min=1)
            program = torch.export.export(program_module, (example,), dynamic_shapes=({0: batch},))
            torch.export.save(program, path)
            files["export"] = path.name
        if "onnx" in formats:
            path = output_dir / f"{name}.onnx"
            torch.onnx.export(
                program_module,
                (example,),
                str(path),
                input_names=["images"],
                output_names=["outputs"],
                dynamic_axes={"images": {0: "batch"}, "outputs": {0: "batch"}},
                dynamo=False,
            )
            files["onnx"] = path.name
    declared = declared_normalization(chosen)
    parts = {path: declared_normalization(part) for path, part in _declaring_parts(chosen).items()}
    task = getattr(datamodule, "task", "classification")
    record = {
        "format": "lit-kd exported network",
        "version": 1,
        "files": files,
        "architecture": architecture(config, key) if config is not None else {"class_path": type(chosen).__qualname__},
        "num_classes": int(getattr(datamodule, "num_classes", getattr(module, "num_classes", 0)) or 0),
        "input_size": list(input_shape),
        "normalization": {
            "included": include_normalization,
            "mean": list(mean),
            "std": list(std),
            "input": "RGB images in [0, 1], NCHW" if include_normalization else "images normalised with mean/std",
        },
        "network_normalization": {
            "mean": list((declared or (mean, std))[0]),
            "std": list((declared or (mean, std))[1]),
            **(
                {"parts": {path: {"mean": list(part[0]), "std": list(part[1])} for path, part in parts.items()}}
                if parts
                else {}
            ),
        },
        "task": task,
        **({"target_scale": float(datamodule.target_scale)} if task == "regression" else {}),
        "outputs": "logits" if task == "classification" else "value / target_scale (multiply by target_scale)",
        "method": f"{type(module).__module__}.{type(module).__qualname__}",
        "network": key,
        "checkpoint": None
        if checkpoint is None
        else {"path": str(Path(checkpoint).resolve()), "sha256": file_sha256(checkpoint)},
    }
    (output_dir / f"{name}.json").write_text(json.dumps(record, indent=2) + "\n")
    return record


def load_trained(module: nn.Module, checkpoint: str | Path) -> None:
    """Load a method checkpoint into ``module`` as Lightning would (its hooks first), without running code."""
    state = safe_load(checkpoint)
    if hasattr(module, "on_load_checkpoint"):
        module.on_load_checkpoint(state)
    module.load_state_dict(state["state_dict"])


def main(args: list[str] | None = None) -> None:
    """``lit-kd export``: export options here, the rest (``--config``, overrides) builds the recipe's classes."""
    parser = argparse.ArgumentParser(
        prog="lit-kd export", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--ckpt_path", required=True, help="a checkpoint of the recipe's method")
    parser.add_argument("--output_dir", required=True, help="where to write the files")
    parser.add_argument("--formats", nargs="+", default=["state_dict", "export"], choices=FORMATS)
    parser.add_argument("--network", default="best", help="online methods: 'best' or a network index")
    parser.add_argument("--include_normalization", default="true", choices=["true", "false"])
    parser.add_argument("--name", default="student", help="file name stem")
    known, recipe_args = parser.parse_known_args(args)
    cli = LitKDCLI(args=recipe_args, run=False)
    load_trained(cli.model, known.ckpt_path)
    config = config_as_dict(cli.parser, cli.config)
    record = export(
        cli.model,
        cli.datamodule,
        known.output_dir,
        checkpoint=known.ckpt_path,
        formats=tuple(known.formats),
        network=known.network,
        include_normalization=known.include_normalization == "true",
        name=known.name,
        config=config,
    )
    print(json.dumps(record["files"]), f"and {known.name}.json written to {known.output_dir}")
