"""No code runs from a file: every entry point that reads a torch file refuses a pickle that would run code.

Each test writes a file whose unpickling would create a marker file (the classic ``__reduce__`` -> ``os.system``
payload), hands it to one entry point, and checks that the marker was not created and that the error (or warning)
names the file. Legitimate files of every kind still load.
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
from pathlib import Path

import pytest
import torch
from helpers import RECIPES, TinyNet, fit_args, tiny_cifar, tiny_trainer
from lightning.pytorch.callbacks import ModelCheckpoint

from lit_kd.checkpointing import UntrustedCheckpointError, load_network_weights, safe_load
from lit_kd.cli import main as lit_kd_main
from lit_kd.data import CorruptDatasetError, load_synthetic_set, save_synthetic_set
from lit_kd.data.image_files import _fingerprint, list_class_images, load_images_cached
from lit_kd.methods import EnsembleDistillation, HintonKD, SupervisedModule
from lit_kd.methods.born_again import run_generations
from lit_kd.models import create_model
from lit_kd.models.pretrained import PRETRAINED_WEIGHTS
from lit_kd.synthesis import load_conditional_gan


class RunsCode:
    """Unpickling this runs ``touch <marker>``."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def evil_file(path: Path, marker: Path, payload: dict | None = None) -> Path:
    """A checkpoint-looking file (a state dict and more) that runs code when unpickled."""
    torch.save({"state_dict": TinyNet().state_dict(), **(payload or {}), "extra": RunsCode(marker)}, path)
    return path


@pytest.fixture
def marker(tmp_path: Path) -> Path:
    return tmp_path / "code_ran"


def test_teacher_checkpoint_does_not_run_code(tmp_path: Path, marker: Path) -> None:
    path = evil_file(tmp_path / "teacher.ckpt", marker)
    with pytest.raises(UntrustedCheckpointError, match="teacher_checkpoint: .*teacher.ckpt was not loaded") as error:
        HintonKD(TinyNet(), TinyNet(), teacher_checkpoint=str(path))
    assert not marker.exists()
    assert "trust_checkpoint" in str(error.value) and "LIT_KD_TRUST_CHECKPOINTS" in str(error.value)


def test_ensemble_member_does_not_run_code(tmp_path: Path, marker: Path) -> None:
    good = tmp_path / "good.pt"
    torch.save(TinyNet().state_dict(), good)
    bad = evil_file(tmp_path / "member1.pt", marker)
    with pytest.raises(UntrustedCheckpointError, match=r"teacher_checkpoints\[1\]: .*member1.pt"):
        EnsembleDistillation(TinyNet(), [TinyNet(), TinyNet()], teacher_checkpoints=[str(good), str(bad)])
    assert not marker.exists()


def test_born_again_parent_does_not_run_code(tmp_path: Path, marker: Path, cifar_folder: Path) -> None:
    parent = evil_file(tmp_path / "parent.ckpt", marker)
    with pytest.raises(UntrustedCheckpointError, match="parent.ckpt"):
        run_generations(
            RECIPES / "cifar10" / "born_again_resnet20.yaml",
            1,
            tmp_path / "generations",
            ["--data.data_dir", str(cifar_folder), "--trainer.fast_dev_run", "true"],
            teacher_checkpoint=str(parent),
        )
    assert not marker.exists()


def test_cli_prints_one_line_naming_the_file_and_how_to_opt_in(
    tmp_path: Path, marker: Path, cifar_folder: Path, capsys: pytest.CaptureFixture
) -> None:
    path = evil_file(tmp_path / "teacher.ckpt", marker)
    args = fit_args(
        "cifar10/kd_resnet56_resnet20.yaml", cifar_folder, trainer__fast_dev_run=True, model__teacher_checkpoint=path
    )
    with pytest.raises(SystemExit) as exit_info:
        lit_kd_main(args)
    assert exit_info.value.code == 2 and not marker.exists()
    message = capsys.readouterr().err
    assert f"lit-kd: error: teacher_checkpoint: {path} was not loaded" in message
    assert "Does not validate against any of the Union subtypes" not in message and len(message.splitlines()) <= 3


def test_synthesis_gan_checkpoint_does_not_run_code(tmp_path: Path, marker: Path) -> None:
    path = evil_file(tmp_path / "gan.ckpt", marker, {"conditional_gan": {}})
    with pytest.raises(UntrustedCheckpointError, match="gan.ckpt.*--trust_checkpoint"):
        load_conditional_gan(path)
    assert not marker.exists()


def test_cgan_record_naming_a_class_outside_the_allowlist_is_refused(tmp_path: Path) -> None:
    """A plain-data record (loads with weights_only) that names a class lit-kd would have to import is refused."""
    record = {
        "generator": {"class_path": "subprocess.Popen", "init_args": {"args": ["true"]}},
        "discriminator": {"class_path": "lit_kd.models.ProjectionDiscriminator", "init_args": {}},
    }
    torch.save({"state_dict": {}, "conditional_gan": record}, tmp_path / "gan.ckpt")
    with pytest.raises(ValueError, match="'subprocess.Popen', which is not one of lit-kd's networks"):
        load_conditional_gan(tmp_path / "gan.ckpt")


def test_pretrained_weights_folder_does_not_run_code(tmp_path: Path, marker: Path) -> None:
    spec = PRETRAINED_WEIGHTS["cifar10_resnet20"]
    evil_file(tmp_path / spec.file_name, marker)
    with pytest.raises(ValueError, match=f"{spec.file_name} has SHA-256 .* expected {spec.sha256}"):
        spec.state_dict(tmp_path)
    assert not marker.exists()


def test_decoded_cache_does_not_run_code_and_is_decoded_again(tmp_path: Path, marker: Path, cifar_folder: Path) -> None:
    paths, _ = list_class_images(
        cifar_folder / "cifar10" / "test", [f"{c}" for c in sorted(os.listdir(cifar_folder / "cifar10" / "test"))]
    )
    cache_dir = tmp_path / "cache"
    cache_dir.mkdir()
    cache_file = cache_dir / f"split-{_fingerprint(paths)}.pt"
    torch.save({"images": RunsCode(marker)}, cache_file)
    with pytest.warns(UserWarning, match=f"{cache_file} is unreadable"):
        images = load_images_cached(paths, (32, 32), cache_dir, "split")
    assert not marker.exists()
    assert images.shape == (len(paths), 3, 32, 32)
    assert torch.equal(torch.load(cache_file, weights_only=True), images)  # replaced by the real decode


def test_synthetic_set_does_not_run_code(tmp_path: Path, marker: Path) -> None:
    folder = save_synthetic_set(
        tmp_path / "synthetic",
        torch.zeros(2, 3, 32, 32, dtype=torch.uint8),
        torch.tensor([0, 1]),
        {"task": "classification", "num_classes": 10},
    )
    torch.save(RunsCode(marker), folder / "images.pt")
    provenance = json.loads((folder / "provenance.json").read_text())
    from lit_kd.data.synthetic import file_sha256

    provenance["files"]["images"]["sha256"] = file_sha256(folder / "images.pt")  # a consistent, hostile folder
    (folder / "provenance.json").write_text(json.dumps(provenance))
    with pytest.raises(CorruptDatasetError, match=f"{folder / 'images.pt'}: refused"):
        load_synthetic_set(folder)
    assert not marker.exists()


def test_resume_from_ckpt_path_does_not_run_code(
    tmp_path: Path, marker: Path, cifar_folder: Path, capsys: pytest.CaptureFixture
) -> None:
    path = evil_file(tmp_path / "last.ckpt", marker)
    args = fit_args(
        "cifar10/vanilla_resnet20.yaml",
        cifar_folder,
        trainer__max_epochs=1,
        trainer__default_root_dir=tmp_path,
        ckpt_path=path,
    )
    with pytest.raises(SystemExit):
        lit_kd_main(args)
    assert not marker.exists()
    assert f"{path} was not loaded" in capsys.readouterr().err


# ------------------------------------------------------------------------------------------------ opting in
def legacy_checkpoint(path: Path, network: torch.nn.Module) -> Path:
    """An old-style checkpoint: the state dict beside an ``argparse.Namespace`` (harmless, needs a full unpickle)."""
    torch.save({"state_dict": network.state_dict(), "args": argparse.Namespace(lr=0.1)}, path)
    return path


def test_legacy_pickle_loads_only_with_the_opt_in_and_a_warning_naming_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = TinyNet()
    path = legacy_checkpoint(tmp_path / "old.pth", source)
    with pytest.raises(UntrustedCheckpointError, match="old.pth was not loaded"):
        HintonKD(TinyNet(), TinyNet(), teacher_checkpoint=str(path))
    with pytest.warns(UserWarning, match="old.pth with a full unpickle"):
        module = HintonKD(TinyNet(), TinyNet(), teacher_checkpoint=str(path), trust_checkpoint=True)
    assert torch.equal(module.teacher.classifier.weight, source.classifier.weight)
    monkeypatch.setenv("LIT_KD_TRUST_CHECKPOINTS", "1")
    with pytest.warns(UserWarning, match="old.pth with a full unpickle"):
        HintonKD(TinyNet(), TinyNet(), teacher_checkpoint=str(path))


def test_truncated_file_is_named(tmp_path: Path) -> None:
    path = tmp_path / "cut.ckpt"
    torch.save(TinyNet().state_dict(), path)
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(ValueError, match="cut.ckpt is not a readable torch.save file"):
        safe_load(path)


# ------------------------------------------------------------------------------------------ legitimate files
def test_lightning_and_lit_kd_checkpoints_load_safely(tmp_path: Path, cifar_folder: Path) -> None:
    """A checkpoint with optimiser, MultiStepLR, callback and hyperparameter state loads with weights_only=True."""
    network = TinyNet()

    def optimizer(parameters):
        return torch.optim.SGD(parameters, lr=0.1, momentum=0.9)

    def scheduler(optim):
        return torch.optim.lr_scheduler.MultiStepLR(optim, milestones=[1, 2])

    module = SupervisedModule(network, optimizer=optimizer, lr_scheduler=scheduler)
    checkpoints = ModelCheckpoint(tmp_path, filename="best", monitor="val/acc", mode="max", save_last=True)
    trainer = tiny_trainer(tmp_path, callbacks=[checkpoints], enable_checkpointing=True, limit_train_batches=2)
    trainer.fit(module, tiny_cifar(cifar_folder))
    for name in ("best.ckpt", "last.ckpt"):
        checkpoint = safe_load(tmp_path / name)
        assert {"state_dict", "optimizer_states", "lr_schedulers", "callbacks"} <= checkpoint.keys()
        teacher = TinyNet()
        assert load_network_weights(teacher, tmp_path / name) == "student."
        assert torch.equal(teacher.classifier.weight, network.classifier.weight)


def test_cli_checkpoint_with_hyperparameters_loads_safely(
    tmp_path: Path, cifar_folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    args = fit_args(
        "cifar10/vanilla_resnet20.yaml",
        cifar_folder,
        "--trainer.callbacks+=ModelCheckpoint",
        trainer__callbacks__dirpath=tmp_path / "ck",
        data__batch_size=16,
        trainer__max_epochs=1,
        trainer__limit_train_batches=1,
        trainer__limit_val_batches=1,
        trainer__default_root_dir=tmp_path,
    )
    monkeypatch.chdir(tmp_path)
    lit_kd_main(args)
    (path,) = (tmp_path / "ck").glob("*.ckpt")
    assert "hyper_parameters" in safe_load(path)
    network = create_model("resnet20", num_classes=10)
    assert load_network_weights(network, path) == "student."


@pytest.mark.parametrize("wrapper", ["module.", "_orig_mod.", "model.module.", "student._orig_mod."])
def test_wrapper_prefixed_state_dicts_load(tmp_path: Path, wrapper: str) -> None:
    source = TinyNet()
    torch.save({wrapper + key: value for key, value in source.state_dict().items()}, tmp_path / "w.pt")
    target = TinyNet()
    load_network_weights(target, tmp_path / "w.pt")
    for key, value in source.state_dict().items():
        assert torch.equal(target.state_dict()[key], value), key


def test_compiled_and_data_parallel_models_save_loadable_checkpoints(tmp_path: Path) -> None:
    source = TinyNet()
    torch.save(torch.nn.DataParallel(source).state_dict(), tmp_path / "dp.pt")
    assert next(iter(torch.load(tmp_path / "dp.pt", weights_only=True))).startswith("module.")
    target = TinyNet()
    load_network_weights(target, tmp_path / "dp.pt")
    assert torch.equal(target.classifier.bias, source.classifier.bias)


def test_refusal_is_an_unpickling_error_subclass(tmp_path: Path, marker: Path) -> None:
    """Callers that already catch ``pickle.UnpicklingError`` (as torch's own refusal) keep working."""
    with pytest.raises(pickle.UnpicklingError):
        safe_load(evil_file(tmp_path / "x.pt", marker))
    assert not marker.exists()
