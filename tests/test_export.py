"""The student leaves the library: export formats against the module, predict to CSV, lr_find."""

from __future__ import annotations

import csv
import importlib
import json
from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch
from conftest import class_image, write_jpeg
from helpers import TinyNet, fit_args, save_state_dict, tiny_cifar, tiny_trainer
from lightning.pytorch.tuner import Tuner

from lit_kd.callbacks import PredictionWriter
from lit_kd.cli import main as lit_kd_main
from lit_kd.data import CIFAR10DataModule, UTKFaceDataModule
from lit_kd.export import export, load_trained
from lit_kd.methods import (
    AttentionTransfer,
    DataFreeAdversarialDistillation,
    DeepMutualLearning,
    HintonKD,
    SupervisedModule,
)
from lit_kd.models import DFADGenerator, create_model


def real_looking_images(count: int = 6, size: int = 32) -> torch.Tensor:
    """Images in [0, 1] like the data's (class-coloured noise), for a deployment to feed."""
    generator = torch.Generator().manual_seed(7)
    return torch.stack([class_image(index % 10, size, generator) for index in range(count)]).float() / 255


CHECKPOINT = Path("checkpoints/cifar10/kd_resnet56_resnet20/last.ckpt")  # the recipe's, under the working directory


def trained_kd(tmp_path: Path, cifar_folder: Path) -> list[str]:
    """A Hinton KD run of a few steps through lit-kd fit (in ``tmp_path``); returns its arguments."""
    torch.save(create_model("resnet56", num_classes=10).state_dict(), tmp_path / "teacher.pt")
    args = fit_args(
        "cifar10/kd_resnet56_resnet20.yaml",
        cifar_folder,
        data__batch_size=16,
        data__use_cache=False,
        trainer__max_epochs=1,
        trainer__limit_train_batches=2,
        trainer__limit_val_batches=1,
        trainer__default_root_dir=tmp_path,
        model__teacher_checkpoint=tmp_path / "teacher.pt",
        trainer__enable_progress_bar=False,
    )
    lit_kd_main(args)
    return args


def module_outputs(module: torch.nn.Module, data, images01: torch.Tensor) -> torch.Tensor:
    mean, std = torch.tensor(data.mean).view(1, 3, 1, 1), torch.tensor(data.std).view(1, 3, 1, 1)
    with torch.no_grad():
        return module.eval()((images01 - mean) / std)


@pytest.fixture
def exported(tmp_path: Path, cifar_folder: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.chdir(tmp_path)
    recipe_args = trained_kd(tmp_path, cifar_folder)[1:]
    checkpoint = tmp_path / CHECKPOINT
    formats = ["state_dict", "export"] + (["onnx"] if importlib.util.find_spec("onnx") else [])
    lit_kd_main(
        [
            "export",
            *recipe_args,
            "--ckpt_path",
            str(checkpoint),
            "--output_dir",
            str(tmp_path / "out"),
            "--formats",
            *formats,
        ]
    )
    module = HintonKD(create_model("resnet20", num_classes=10), create_model("resnet56", num_classes=10))
    load_trained(module, checkpoint)
    return tmp_path / "out", module, checkpoint


def test_the_record_says_what_the_network_is_and_where_it_came_from(exported) -> None:
    folder, module, checkpoint = exported
    record = json.loads((folder / "student.json").read_text())
    assert record["architecture"] == {
        "class_path": "lit_kd.models.CifarResNet",
        "init_args": {
            "depth": 20,
            "num_classes": 10,
            "stem_channels": 16,
            "stage_channels": [16, 32, 64],
            "shortcut": "projection",
        },
    }
    assert record["num_classes"] == 10 and record["input_size"] == [3, 32, 32] and record["task"] == "classification"
    assert record["normalization"]["included"] and record["normalization"]["mean"] == list(CIFAR10DataModule.mean)
    assert record["method"] == "lit_kd.methods.hinton.HintonKD" and record["checkpoint"]["path"] == str(checkpoint)


def test_state_dict_export_rebuilds_from_the_record_and_gives_the_modules_outputs(exported) -> None:
    folder, module, _ = exported
    record = json.loads((folder / "student.json").read_text())
    module_name, class_name = record["architecture"]["class_path"].rsplit(".", 1)
    network = getattr(importlib.import_module(module_name), class_name)(**record["architecture"]["init_args"])
    network.load_state_dict(torch.load(folder / record["files"]["state_dict"], weights_only=True))
    images = real_looking_images()
    mean = torch.tensor(record["normalization"]["mean"]).view(1, 3, 1, 1)
    std = torch.tensor(record["normalization"]["std"]).view(1, 3, 1, 1)
    with torch.no_grad():
        torch.testing.assert_close(
            network.eval()((images - mean) / std),
            module_outputs(module, CIFAR10DataModule, images),
            rtol=1e-4,
            atol=1e-5,
        )
    teacher = create_model("resnet20", num_classes=10)  # the file loads as a teacher of another run
    from lit_kd.checkpointing import load_network_weights

    assert load_network_weights(teacher, folder / "student.pt") == ""


def test_torch_export_program_takes_images_in_unit_range(exported) -> None:
    folder, module, _ = exported
    program = torch.export.load(folder / "student.pt2").module()
    for count in (1, 6):  # the batch dimension is dynamic
        images = real_looking_images(count)
        torch.testing.assert_close(
            program(images), module_outputs(module, CIFAR10DataModule, images), rtol=1e-4, atol=1e-5
        )


@pytest.mark.skipif(importlib.util.find_spec("onnxruntime") is None, reason="onnx/onnxruntime not installed")
def test_onnx_export_gives_the_modules_outputs(exported) -> None:
    import onnxruntime

    folder, module, _ = exported
    session = onnxruntime.InferenceSession(str(folder / "student.onnx"), providers=["CPUExecutionProvider"])
    images = real_looking_images(5)
    (outputs,) = session.run(None, {"images": images.numpy()})
    torch.testing.assert_close(
        torch.from_numpy(outputs), module_outputs(module, CIFAR10DataModule, images), rtol=1e-4, atol=1e-4
    )


def test_online_methods_export_the_best_or_a_named_network(tmp_path: Path) -> None:
    torch.manual_seed(0)
    module = DeepMutualLearning([create_model("resnet8", 10), create_model("resnet14", 10)])
    module.best_network = 1
    data = CIFAR10DataModule("unused")
    record = export(module, data, tmp_path / "best", formats=("state_dict",), include_normalization=False)
    assert record["network"] == "networks[1]" and not record["normalization"]["included"]
    network = create_model("resnet14", 10)
    network.load_state_dict(torch.load(tmp_path / "best" / "student.pt", weights_only=True))
    record = export(module, data, tmp_path / "first", formats=("export",), network=0, include_normalization=False)
    images = torch.randn(2, 3, 32, 32)
    program = torch.export.load(tmp_path / "first" / "student.pt2").module()
    with torch.no_grad():
        torch.testing.assert_close(program(images), module.networks[0].eval()(images), rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match="--network"):
        export(module, data, tmp_path / "bad", network=2)


def test_regression_export_records_the_target_scale(tmp_path: Path) -> None:
    module = SupervisedModule(create_model("resnet8", num_classes=1))
    record = export(module, UTKFaceDataModule("unused"), tmp_path, formats=("state_dict",))
    assert record["task"] == "regression" and record["target_scale"] == 60.0 and record["input_size"] == [3, 64, 64]


# ------------------------------------------------------------------------------------------------ predict
def test_predict_on_a_folder_writes_a_csv_matching_the_students_outputs(tmp_path: Path, cifar_folder: Path) -> None:
    folder = tmp_path / "photos"
    folder.mkdir()
    generator = torch.Generator().manual_seed(3)
    for index in range(5):
        size = 32 if index else 48  # a user's photo of another size is resized
        write_jpeg(class_image(index, size, generator), str(folder / f"photo{index}.jpg"))
    torch.manual_seed(0)
    module = HintonKD(
        TinyNet(), TinyNet(width=16), teacher_checkpoint=str(save_state_dict(TinyNet(width=16), tmp_path / "t.pt"))
    )
    data = tiny_cifar(cifar_folder, predict_files=str(folder), eval_batch_size=2)
    trainer = tiny_trainer(tmp_path, callbacks=[PredictionWriter(tmp_path / "predictions.csv")])
    trainer.predict(module, data, return_predictions=False)
    rows = list(csv.DictReader(open(tmp_path / "predictions.csv")))
    assert [row["file"] for row in rows] == [str(folder / f"photo{i}.jpg") for i in range(5)]
    images = torch.stack(
        [data.on_after_batch_transfer((data.predict_set.images[i : i + 1], None), 0)[0][0] for i in range(5)]
    )
    with torch.no_grad():
        probabilities = module.eval()(images).softmax(-1)
    assert [int(row["prediction"]) for row in rows] == probabilities.argmax(-1).tolist()
    assert [row["label"] for row in rows] == [data.classes[int(row["prediction"])] for row in rows]
    torch.testing.assert_close(
        torch.tensor([float(r["probability"]) for r in rows]), probabilities.max(-1).values, rtol=1e-5, atol=1e-6
    )


def test_lit_kd_predict_writes_the_test_split_with_targets(
    tmp_path: Path, cifar_folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    args = trained_kd(tmp_path, cifar_folder)
    lit_kd_main(
        [
            "predict",
            *args[1:],
            "--ckpt_path",
            str(tmp_path / CHECKPOINT),
        ]
    )
    rows = list(csv.DictReader(open(tmp_path / "predictions.csv")))
    assert (
        len(rows) == 40 and rows[0]["file"] == "test[0]" and {"target", "prediction", "probability"} <= rows[0].keys()
    )


# ------------------------------------------------------------------------------------------------ lr_find
@pytest.mark.parametrize("method", ["hinton", "attention_transfer"])
def test_lr_find_runs_and_sets_the_learning_rate(method: str, tmp_path: Path, cifar_folder: Path) -> None:
    pl.seed_everything(0)
    teacher = save_state_dict(create_model("resnet14", num_classes=10), tmp_path / "teacher.pt")
    build = HintonKD if method == "hinton" else AttentionTransfer
    module = build(create_model("resnet8", 10), create_model("resnet14", 10), teacher_checkpoint=str(teacher))
    trainer = tiny_trainer(tmp_path, max_epochs=4)  # 10 batches an epoch: room for the 30 steps of the search
    finder = Tuner(trainer).lr_find(
        module, datamodule=tiny_cifar(cifar_folder, batch_size=8), num_training=30, min_lr=1e-4, max_lr=1.0
    )
    suggestion = finder.suggestion()
    assert suggestion is not None and 1e-4 <= suggestion <= 1.0
    assert module.learning_rate == suggestion
    trainer = tiny_trainer(tmp_path, max_steps=1, limit_val_batches=0)
    trainer.fit(module, tiny_cifar(cifar_folder, batch_size=8))
    assert trainer.optimizers[0].param_groups[0]["initial_lr"] == pytest.approx(suggestion)


def test_lr_find_is_refused_clearly_under_manual_optimisation(tmp_path: Path, cifar_folder: Path) -> None:
    from lit_kd.data import DataFreeDataModule

    module = DataFreeAdversarialDistillation(
        TinyNet(),
        TinyNet(width=16),
        DFADGenerator(latent_dim=8, base_channels=4),
        teacher_checkpoint=str(save_state_dict(TinyNet(width=16), tmp_path / "t.pt")),
    )
    data = DataFreeDataModule(tiny_cifar(cifar_folder), batch_size=8, latent_dim=8, batches_per_epoch=6)
    with pytest.raises(RuntimeError, match="Tuner.lr_find cannot search"):
        Tuner(tiny_trainer(tmp_path)).lr_find(module, datamodule=data, num_training=5)
