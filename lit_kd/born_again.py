r"""``lit-kd born-again``: born-again generations, generation ``g + 1`` of a recipe distilled from generation ``g``.

The method is :class:`~lit_kd.methods.SelfDistillation`; this command chains its runs. Usage (extra options go to
``lit-kd fit``, for every generation):

    lit-kd born-again --config recipes/cifar10/born_again_resnet20.yaml --generations 3 \
        --output_dir runs/born_again_resnet20 --data.data_dir data

Writes ``<output_dir>/generation<g>/{config.yaml,student.ckpt}`` and ``<output_dir>/generations.json`` (per
generation: its teacher checkpoint, its checkpoint, its test metrics).
"""

from __future__ import annotations

import argparse
import copy
import json
from pathlib import Path
from typing import Any

import yaml

from lit_kd.errors import one_line_errors
from lit_kd.lightning_cli import LitKDCLI


def generation_config(recipe: dict[str, Any], generation: int, teacher_checkpoint: str, folder: Path) -> dict:
    """The recipe for one generation: its teacher, its own seed and its own checkpoint/log folders."""
    config = copy.deepcopy(recipe)
    config["seed_everything"] = int(config.get("seed_everything") or 0) + generation
    config["model"]["init_args"]["teacher_checkpoint"] = teacher_checkpoint
    trainer = config.setdefault("trainer", {})
    trainer["default_root_dir"] = str(folder)
    for callback in trainer.get("callbacks") or []:
        if "dirpath" in callback.get("init_args", {}):
            callback["init_args"]["dirpath"] = str(folder / "checkpoints")
    return config


def run_generations(
    config: str | Path,
    generations: int,
    output_dir: str | Path,
    cli_args: list[str] | None = None,
    teacher_checkpoint: str | None = None,
) -> list[dict[str, Any]]:
    """Train ``generations`` born-again generations of a self-distillation recipe, each taught by the previous one.

    Generation 0 is taught by ``teacher_checkpoint``, by default the recipe's (e.g. a vanilla network of the same
    architecture); generation ``g + 1`` by generation ``g``'s final weights. Generation ``g`` is seeded with the
    recipe's seed plus ``g``, so the generations start from different initialisations. After fitting, each
    generation is tested and its checkpoint kept.

    Args:
        config: a recipe whose model takes ``teacher_checkpoint`` (e.g. ``SelfDistillation``).
        generations: how many generations to train (>= 1).
        output_dir: where each generation's folder and ``generations.json`` go.
        cli_args: more ``lit-kd`` options for every generation (``["--trainer.max_epochs", "10"]``).
        teacher_checkpoint: generation 0's teacher, instead of the recipe's ``model.init_args.teacher_checkpoint``.

    Returns:
        One record per generation: ``generation``, ``teacher_checkpoint``, ``checkpoint``, ``test`` (metrics).
    """
    if generations < 1:
        raise ValueError(f"generations must be >= 1, got {generations}")
    if any(arg.startswith("--model.teacher_checkpoint") for arg in cli_args or []):
        raise ValueError("pass generation 0's teacher as teacher_checkpoint (--teacher_checkpoint), not in cli_args")
    if not Path(config).is_file():
        raise FileNotFoundError(f"config: {config} does not exist")
    recipe = yaml.safe_load(Path(config).read_text())
    teacher_checkpoint = teacher_checkpoint or recipe.get("model", {}).get("init_args", {}).get("teacher_checkpoint")
    if teacher_checkpoint is None:
        raise ValueError(f"{config}: model.init_args.teacher_checkpoint (generation 0's teacher) is not set")
    output_dir = Path(output_dir)
    records: list[dict[str, Any]] = []
    for generation in range(generations):
        folder = output_dir / f"generation{generation}"
        folder.mkdir(parents=True, exist_ok=True)
        config_path = folder / "config.yaml"
        config_path.write_text(yaml.safe_dump(generation_config(recipe, generation, teacher_checkpoint, folder)))
        cli = LitKDCLI(args=["--config", str(config_path), *(cli_args or [])], run=False)
        cli.trainer.fit(cli.model, datamodule=cli.datamodule)
        checkpoint = folder / "student.ckpt"
        cli.trainer.save_checkpoint(checkpoint)
        (test_metrics,) = cli.trainer.test(cli.model, datamodule=cli.datamodule, verbose=False)
        records.append(
            {
                "generation": generation,
                "teacher_checkpoint": str(teacher_checkpoint),
                "checkpoint": str(checkpoint),
                "test": {name: float(value) for name, value in test_metrics.items()},
            }
        )
        (output_dir / "generations.json").write_text(json.dumps(records, indent=2))
        teacher_checkpoint = str(checkpoint)
    return records


def main(args: list[str] | None = None) -> None:
    """``lit-kd born-again``: :func:`run_generations` from the command line; unknown options go to ``lit-kd fit``."""
    parser = argparse.ArgumentParser(
        prog="lit-kd born-again", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--config", required=True, help="a self-distillation recipe")
    parser.add_argument("--generations", type=int, default=3, help="number of generations (default 3)")
    parser.add_argument("--output_dir", required=True, help="folder for checkpoints and generations.json")
    parser.add_argument("--teacher_checkpoint", help="generation 0's teacher (default: the recipe's)")
    known, cli_args = parser.parse_known_args(args)
    with one_line_errors("lit-kd born-again"):
        records = run_generations(known.config, known.generations, known.output_dir, cli_args, known.teacher_checkpoint)
    for record in records:
        print(f"generation {record['generation']}: test/acc {record['test'].get('test/acc', float('nan')):.4f}")
