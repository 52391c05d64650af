"""Every recipe runs through the ``lit-kd`` command line with ``fast_dev_run`` on generated data."""

from __future__ import annotations

import importlib
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import pytest
import torch
import yaml

from lit_kd.cli import main
from tests.support import paths
from tests.support.cgan import write_synthetic_set

RECIPES = sorted(paths.RECIPES.rglob("*.yaml"))
DATA_FIXTURES = {"cifar10": "cifar_folder", "tiny_imagenet": "tiny_imagenet_folder", "utkface": "utkface_folder"}


def instantiate(config: dict):
    module_name, class_name = config["class_path"].rsplit(".", 1)
    return getattr(importlib.import_module(module_name), class_name)(**config.get("init_args", {}))


def test_every_dataset_folder_of_recipes_has_data_for_its_test() -> None:
    assert RECIPES, "no recipes found"
    assert {recipe.parent.name for recipe in RECIPES} <= set(DATA_FIXTURES)


#: The run length of :func:`recipe_args` by default: one training and one validation batch, loggers off.
FAST_DEV_RUN = ("--trainer.fast_dev_run", "1")


def recipe_args(recipe: Path, data_dir: Path, tmp_path: Path, run_length: Sequence[str] = FAST_DEV_RUN) -> list[str]:
    """``lit-kd fit`` arguments running ``recipe`` on the generated data in ``data_dir`` for ``run_length``.

    Teachers named by the recipe get random weights saved under ``tmp_path`` (the caching goes there too).
    """
    args = [
        "fit",
        "--config",
        str(recipe),
        "--data.data_dir",
        str(data_dir),
        "--data.batch_size",
        "4",
        "--data.cache_dir",
        str(tmp_path / "cache"),
        *run_length,
        "--trainer.enable_progress_bar",
        "false",
        "--trainer.enable_model_summary",
        "false",
    ]
    model_args = yaml.safe_load(recipe.read_text())["model"]["init_args"]
    if "PretrainedNetwork" in recipe.read_text():
        from lit_kd.models.pretrained import PRETRAINED_WEIGHTS

        try:
            PRETRAINED_WEIGHTS["cifar10_resnet56"].verified_path()
        except (FileNotFoundError, ValueError) as error:
            pytest.skip(f"{recipe.name} needs the pretrained weights: {error}")
    if "teacher" in model_args and model_args["teacher"]["class_path"].endswith("PretrainedNetwork"):
        pass  # its weights are the pretrained ones (teacher_checkpoint: null)
    elif "teacher" in model_args:
        torch.save(instantiate(model_args["teacher"]).state_dict(), tmp_path / "teacher.pt")
        args += ["--model.teacher_checkpoint", str(tmp_path / "teacher.pt")]
    if "teachers" in model_args:  # an ensemble: one random checkpoint per member
        paths = [tmp_path / f"teacher{index}.pt" for index in range(len(model_args["teachers"]))]
        for member, path in zip(model_args["teachers"], paths, strict=True):
            torch.save(instantiate(member).state_dict(), path)
        args += ["--model.teacher_checkpoint", "null", "--model.teacher_checkpoints", f"[{','.join(map(str, paths))}]"]
    if "evaluation" in yaml.safe_load(recipe.read_text())["data"]["init_args"]:  # data-free: real data evaluates only
        args = [arg.replace("--data.", "--data.evaluation.") if arg.endswith("_dir") else arg for arg in args]
    if "synthetic_dir" in yaml.safe_load(recipe.read_text())["data"]["init_args"]:  # cGAN-KD stage 3: a tiny set
        args += ["--data.synthetic_dir", str(write_synthetic_set(tmp_path / "synthetic", recipe.parent.name))]
    return args


def test_a_born_again_student_starts_from_its_own_initialisation_on_its_parents_data() -> None:
    """Every self-distillation recipe seeds its run otherwise than the recipe that trains its teacher (the student
    does not start from its parent's initial weights) and pins its data seed to the parent's (the same split, order
    and augmentation)."""

    def load(path: Path) -> dict:
        return yaml.safe_load(path.read_text())

    def saves_to(recipe: dict) -> set[str]:
        return {str(c.get("init_args", {}).get("dirpath")) for c in recipe.get("trainer", {}).get("callbacks") or []}

    born_again = [path for path in RECIPES if load(path)["model"]["class_path"] == "lit_kd.methods.SelfDistillation"]
    assert born_again
    for path in born_again:
        recipe = load(path)
        folder = str(Path(recipe["model"]["init_args"]["teacher_checkpoint"]).parent)
        (parent,) = [load(p) for p in RECIPES if folder in saves_to(load(p))]
        name = str(path.relative_to(paths.RECIPES))
        assert recipe["seed_everything"] != parent["seed_everything"], name
        data, parent_data = recipe["data"]["init_args"], parent["data"]["init_args"]
        assert data.pop("seed", None) == parent_data.pop("seed", parent["seed_everything"]), name
        assert data == parent_data, name


@pytest.mark.parametrize("recipe", RECIPES, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_recipe_runs_with_fast_dev_run(
    recipe: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest
) -> None:
    data_dir = request.getfixturevalue(DATA_FIXTURES[recipe.parent.name])
    monkeypatch.chdir(tmp_path)  # recipes write checkpoints/ and runs/ relative to the working directory
    main(recipe_args(recipe, data_dir, tmp_path))


def test_python_dash_m_prints_the_resolved_config() -> None:
    recipe = next(r for r in RECIPES if r.name == "kd_resnet56_resnet20.yaml")
    result = subprocess.run(
        [sys.executable, "-m", "lit_kd", "fit", "--config", str(recipe), "--print_config"],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    config = yaml.safe_load(result.stdout)
    assert "args parameter" not in result.stderr  # the command line reaches LightningCLI once, not twice
    assert config["model"]["class_path"] == "lit_kd.methods.HintonKD"
    assert config["model"]["init_args"]["student"]["init_args"]["depth"] == 20


def test_unknown_method_fails_before_training(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    monkeypatch.chdir(tmp_path)
    recipe = next(r for r in RECIPES if r.name == "vanilla_resnet20.yaml")
    with pytest.raises(SystemExit):
        main(["fit", "--config", str(recipe), "--model", "lit_kd.methods.NoSuchMethod"])
    assert "NoSuchMethod" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("override", "message"),
    [
        (["--model.teacher_checkpoint", "no/such/teacher.ckpt"], "no/such/teacher.ckpt"),
        (["--model.teacher.init_args.num_classes", "100"], "does not fit CifarResNet"),
        (
            ["--model.teacher.init_args.num_classes", "100", "--model.teacher_checkpoint", "null"],
            "outputs 100 classes but the data has 10",
        ),
        (["--model.student.init_args.num_classes", "7"], "outputs 7 classes but the data has 10"),
    ],
    ids=["missing teacher checkpoint", "checkpoint of another shape", "teacher class count", "student class count"],
)
def test_bad_recipe_overrides_fail_before_training(
    override: list[str],
    message: str,
    tmp_path: Path,
    cifar_folder: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture,
) -> None:
    monkeypatch.chdir(tmp_path)
    recipe = next(r for r in RECIPES if r.name == "kd_resnet56_resnet20.yaml")
    args = recipe_args(recipe, cifar_folder, tmp_path, run_length=("--trainer.max_epochs", "1"))
    with pytest.raises(SystemExit) as failure:
        main([*args, *override])
    error = capsys.readouterr().err
    assert failure.value.code == 2 and error.startswith("lit-kd: error: ") and message in error
    assert "Does not validate against any of the Union subtypes" not in error  # one short message, no namespace dump
    assert error.splitlines()[-1] == "(set LIT_KD_TRACEBACK=1 for the full traceback)" and len(error.splitlines()) <= 5
    assert not (tmp_path / "checkpoints").exists()  # nothing was trained, nothing was saved
