"""The student leaves the library: export formats against the module, predict to CSV, lr_find."""

from __future__ import annotations

import csv
import importlib
import json
import re
import warnings
from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch
from lightning.pytorch.tuner import Tuner

from lit_kd.callbacks import PredictionWriter
from lit_kd.checkpointing import safe_load
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
from lit_kd.models import CifarResNet, DFADGenerator, create_model
from lit_kd.models.pretrained import IMAGENET_MEAN, IMAGENET_STD
from tests.support.data import class_image, write_jpeg
from tests.support.networks import TinyNet, save_state_dict
from tests.support.training import fit_args, tiny_cifar, tiny_trainer


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


# ------------------------------------------------------------------------------ a student with its own normalisation
class ImageNetNormalisedResNet(CifarResNet):
    """A student like ``PretrainedNetwork("cifar10_resnet20")`` (zero-pad ResNet-20 declaring the ImageNet statistics,
    not the data's), with random weights: nothing is downloaded."""

    input_mean, input_std = IMAGENET_MEAN, IMAGENET_STD

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__(depth=20, num_classes=num_classes, shortcut="zero_pad")


class WrapsANormalisedNetwork(torch.nn.Module):
    """A student of which only a part (``backbone``) declares its input normalisation."""

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.backbone = ImageNetNormalisedResNet(num_classes)
        self.head = torch.nn.Linear(num_classes, num_classes)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(images))


ONNX_RUNS = importlib.util.find_spec("onnx") is not None and importlib.util.find_spec("onnxruntime") is not None


@pytest.fixture(scope="module")
def pretrained_style_run(tmp_path_factory: pytest.TempPathFactory, cifar_folder: Path) -> tuple[Path, list[str], Path]:
    """``recipes/cifar10/adapt_pretrained_resnet56.yaml`` run for two steps through lit-kd fit, its student an
    :class:`ImageNetNormalisedResNet`; returns the folder (the working directory to use), recipe arguments and
    checkpoint."""
    root = tmp_path_factory.mktemp("pretrained_style")
    args = fit_args(
        "cifar10/adapt_pretrained_resnet56.yaml",
        cifar_folder,
        "--model.student",
        f"{__name__}.ImageNetNormalisedResNet",
        data__batch_size=16,
        data__use_cache=False,
        trainer__max_epochs=1,
        trainer__limit_train_batches=2,
        trainer__limit_val_batches=1,
        trainer__default_root_dir=root,
        trainer__enable_progress_bar=False,
    )
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(root)
        lit_kd_main(args)
    return root, args[1:], root / "checkpoints/cifar10/adapt_pretrained_resnet56/last.ckpt"


def as_fed_to_the_module(count: int = 6) -> tuple[torch.Tensor, torch.Tensor]:
    """Images in [0, 1] and the same batch as the module sees it (normalised by the DataModule, as in training)."""
    generator = torch.Generator().manual_seed(11)
    uint8_images = torch.stack([class_image(index % 10, 32, generator) for index in range(count)])
    batch, _ = CIFAR10DataModule("unused").on_after_batch_transfer((uint8_images, torch.zeros(count)), 0)
    return uint8_images.float() / 255, batch


def program_inputs(record: dict, images01: torch.Tensor) -> torch.Tensor:
    """What the record says the exported programs read: images in [0, 1], or normalised with its mean/std."""
    if record["normalization"]["included"]:
        return images01
    mean = torch.tensor(record["normalization"]["mean"]).view(1, 3, 1, 1)
    std = torch.tensor(record["normalization"]["std"]).view(1, 3, 1, 1)
    return (images01 - mean) / std


def exported_outputs(folder: Path, record: dict, inputs: torch.Tensor) -> dict[str, torch.Tensor]:
    """The outputs of each exported program (``.pt2``, and ``.onnx`` where onnxruntime is installed) on ``inputs``."""
    outputs = {}
    with torch.no_grad():
        outputs["export"] = torch.export.load(folder / record["files"]["export"]).module()(inputs)
    if "onnx" in record["files"] and ONNX_RUNS:
        import onnxruntime

        session = onnxruntime.InferenceSession(
            str(folder / record["files"]["onnx"]), providers=["CPUExecutionProvider"]
        )
        outputs["onnx"] = torch.from_numpy(session.run(None, {"images": inputs.numpy()})[0])
    return outputs


@pytest.mark.parametrize("include_normalization", [True, False])
def test_programs_of_a_student_with_its_own_normalisation_convert_inputs_as_the_module_does(
    pretrained_style_run, include_normalization: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    root, recipe_args, checkpoint = pretrained_style_run
    monkeypatch.chdir(root)
    folder = root / f"out_{include_normalization}"
    formats = ["state_dict", "export"] + (["onnx"] if importlib.util.find_spec("onnx") else [])
    lit_kd_main(
        [
            "export",
            *recipe_args,
            "--ckpt_path",
            str(checkpoint),
            "--output_dir",
            str(folder),
            "--formats",
            *formats,
            "--include_normalization",
            str(include_normalization).lower(),
        ]
    )
    record = json.loads((folder / "student.json").read_text())
    assert record["normalization"]["included"] == include_normalization
    assert record["normalization"]["mean"] == list(CIFAR10DataModule.mean)
    assert record["network_normalization"] == {"mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD)}
    module = SupervisedModule(ImageNetNormalisedResNet())
    load_trained(module, checkpoint)
    module.convert_inputs_for_networks(CIFAR10DataModule("unused"))  # as its setup does for training and testing
    images01, batch = as_fed_to_the_module()
    with torch.no_grad():
        expected = module.eval()(batch)
    plain = ImageNetNormalisedResNet()  # the student without the conversion: far from the module
    plain.load_state_dict(module.student.state_dict())
    with torch.no_grad():
        assert (plain.eval()(batch) - expected).abs().max() > 1e-2
    outputs = exported_outputs(folder, record, program_inputs(record, images01))
    assert set(outputs) == ({"export", "onnx"} if ONNX_RUNS else {"export"})
    for file_format, output in outputs.items():
        torch.testing.assert_close(
            output, expected, rtol=0, atol=1e-4, msg=lambda text, name=file_format: f"{name}: {text}"
        )
    network = ImageNetNormalisedResNet()  # the state dict: the network alone, read in network_normalization
    network.load_state_dict(torch.load(folder / record["files"]["state_dict"], weights_only=True))
    mean = torch.tensor(record["network_normalization"]["mean"]).view(1, 3, 1, 1)
    std = torch.tensor(record["network_normalization"]["std"]).view(1, 3, 1, 1)
    with torch.no_grad():
        torch.testing.assert_close(network.eval()((images01 - mean) / std), expected, rtol=0, atol=1e-4)


@pytest.mark.parametrize("student", [ImageNetNormalisedResNet, WrapsANormalisedNetwork])
def test_exporting_a_set_up_module_converts_once_and_leaves_its_conversion_in_place(student, tmp_path: Path) -> None:
    torch.manual_seed(0)
    module = SupervisedModule(student()).eval()
    data = CIFAR10DataModule("unused")
    module.convert_inputs_for_networks(data)  # the conversion hook a set-up module carries
    images01, batch = as_fed_to_the_module()
    with torch.no_grad():
        expected = module(batch)
    formats = ("export", "onnx") if importlib.util.find_spec("onnx") else ("export",)
    for include_normalization in (True, False):
        folder = tmp_path / str(include_normalization)
        record = export(module, data, folder, formats=formats, include_normalization=include_normalization)
        for file_format, output in exported_outputs(folder, record, program_inputs(record, images01)).items():
            torch.testing.assert_close(
                output, expected, rtol=0, atol=1e-4, msg=lambda text, name=file_format: f"{name}: {text}"
            )
    if student is WrapsANormalisedNetwork:
        assert record["network_normalization"]["parts"] == {
            "backbone": {"mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD)}
        }
    with torch.no_grad():
        torch.testing.assert_close(module(batch), expected, rtol=0, atol=0)  # the module still converts, once


def test_a_checkpoint_with_non_finite_weights_is_refused(
    pretrained_style_run, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    root, recipe_args, checkpoint = pretrained_style_run
    monkeypatch.chdir(root)
    state = safe_load(checkpoint)
    state["state_dict"]["student.stages.1.0.bn1.running_var"][3] = float("nan")  # a buffer, then a later parameter
    state["state_dict"]["student.classifier.weight"][0, 0] = float("inf")
    diverged = root / "diverged.ckpt"
    torch.save(state, diverged)
    message = (
        f"checkpoint {diverged} holds non-finite weights (NaN or inf), first in 'student.stages.1.0.bn1.running_var'"
    )
    module = SupervisedModule(ImageNetNormalisedResNet())
    load_trained(module, diverged)
    with pytest.raises(ValueError, match=f"^{re.escape(message)}"):
        export(module, CIFAR10DataModule("unused"), root / "refused", checkpoint=diverged)
    with pytest.raises(SystemExit) as exited:
        lit_kd_main(["export", *recipe_args, "--ckpt_path", str(diverged), "--output_dir", str(root / "refused")])
    assert exited.value.code not in (0, None)
    assert capsys.readouterr().err.splitlines()[0].startswith(f"lit-kd: error: {message}")
    assert not (root / "refused").exists()


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
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        finder = Tuner(trainer).lr_find(
            module, datamodule=tiny_cifar(cifar_folder, batch_size=8), num_training=30, min_lr=1e-4, max_lr=1.0
        )
    # the frozen teacher is in eval mode by design: no warning about it, in the search's fit either
    assert not [w for w in caught if "in eval mode at the start of training" in str(w.message)]
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
