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
from typing import Any

import pytest
import torch
from lightning.pytorch.callbacks import ModelCheckpoint

from lit_kd.born_again import run_generations
from lit_kd.checkpointing import UntrustedCheckpointError, load_network_weights, safe_load
from lit_kd.cli import main as lit_kd_main
from lit_kd.data import CorruptDatasetError, load_synthetic_set, save_synthetic_set
from lit_kd.data.image_files import _fingerprint, list_class_images, load_images_cached
from lit_kd.lightning_cli import LitKDCLI
from lit_kd.methods import EnsembleDistillation, HintonKD, SupervisedModule
from lit_kd.models import create_model
from lit_kd.models.pretrained import PRETRAINED_WEIGHTS
from lit_kd.synthesis import load_conditional_gan
from tests.support.networks import TinyNet, save_state_dict
from tests.support.paths import RECIPES
from tests.support.training import fit_args, tiny_cifar, tiny_trainer


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
    assert "LIT_KD_TRUST_CHECKPOINTS=1" in str(error.value) and "trust_checkpoint" not in str(error.value)


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
    with pytest.raises(UntrustedCheckpointError, match="gan.ckpt.*LIT_KD_TRUST_CHECKPOINTS=1"):
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
    with pytest.raises(ValueError, match="trust_checkpoint is no longer a setting.*LIT_KD_TRUST_CHECKPOINTS=1"):
        HintonKD(TinyNet(), TinyNet(), teacher_checkpoint=str(path), trust_checkpoint=True)
    monkeypatch.setenv("LIT_KD_TRUST_CHECKPOINTS", "1")
    with pytest.warns(UserWarning, match="old.pth with a full unpickle"):
        module = HintonKD(TinyNet(), TinyNet(), teacher_checkpoint=str(path))
    assert torch.equal(module.teacher.classifier.weight, source.classifier.weight)


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


# ------------------------------------------------------------------- checkpoints that look safe (issue 27, 1-2, 8)
@pytest.fixture(scope="module")
def kd_run(tmp_path_factory: pytest.TempPathFactory, cifar_folder: Path) -> dict[str, Any]:
    """A genuine Hinton KD checkpoint (2 steps of ``lit-kd fit``, ResNet-8s), its teacher and the run's arguments.

    Each test runs its commands in its own working directory (:func:`in_tmp`), so the recipe's relative checkpoint
    folder is its own.
    """
    root = tmp_path_factory.mktemp("kd_run")
    teacher = save_state_dict(create_model("resnet8", num_classes=10), root / "teacher.pt")
    args = fit_args(
        "cifar10/kd_resnet56_resnet20.yaml",
        cifar_folder,
        data__batch_size=16,
        data__use_cache=False,
        trainer__max_epochs=1,
        trainer__limit_train_batches=2,
        trainer__limit_val_batches=1,
        trainer__enable_progress_bar=False,
        model__teacher_checkpoint=teacher,
        model__teacher__init_args__depth=8,
        model__student__init_args__depth=8,
    )
    here = os.getcwd()
    os.chdir(root)
    try:
        lit_kd_main([*args, "--trainer.default_root_dir", str(root)])
    finally:
        os.chdir(here)
    return {"args": args, "teacher": teacher, "checkpoint": root / KD_FOLDER / "last.ckpt"}


@pytest.fixture
def in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    return tmp_path


KD_FOLDER = Path("checkpoints/cifar10/kd_resnet56_resnet20")


def crafted(kd_run: dict[str, Any], marker: Path, path: Path) -> Path:
    """The genuine checkpoint, with hyperparameters that ask to trust a teacher file that runs code."""
    checkpoint = safe_load(kd_run["checkpoint"])
    evil = path.with_name("evil_teacher.ckpt")  # a teacher that fits, and runs code when unpickled
    torch.save({"state_dict": create_model("resnet8", num_classes=10).state_dict(), "extra": RunsCode(marker)}, evil)
    checkpoint["hyper_parameters"].update(trust_checkpoint=True, teacher_checkpoint=str(evil))
    torch.save(checkpoint, path)
    assert safe_load(path)["hyper_parameters"]["trust_checkpoint"] is True  # it loads safely: plain data
    return path


def with_options(args: list[str], subcommand: str, *options: str) -> list[str]:
    return [subcommand, *args[1:], *options]


#: Every command that takes ``--ckpt_path``. A new entry point that reads a checkpoint belongs here.
CKPT_PATH_COMMANDS = {
    "test": (),
    "validate": (),
    "predict": (),
    "fit": ("--trainer.max_epochs", "2"),
}


@pytest.mark.parametrize("subcommand", sorted(CKPT_PATH_COMMANDS))
def test_checkpoint_hyperparameters_cannot_switch_trust_on(
    subcommand: str, kd_run: dict[str, Any], marker: Path, in_tmp: Path, tmp_path: Path
) -> None:
    """Issue 27, 1: a file that loads safely but whose stored hyperparameters say ``trust_checkpoint: true`` and name
    a teacher pickle that runs code (LightningCLI merged them over the recipe) runs nothing: the configuration's own
    teacher is used."""
    path = crafted(kd_run, marker, tmp_path / "crafted.ckpt")
    lit_kd_main(with_options(kd_run["args"], subcommand, "--ckpt_path", str(path), *CKPT_PATH_COMMANDS[subcommand]))
    assert not marker.exists()


def test_load_from_checkpoint_refuses_stored_trust(kd_run: dict[str, Any], marker: Path, tmp_path: Path) -> None:
    path = crafted(kd_run, marker, tmp_path / "crafted.ckpt")
    with pytest.raises(ValueError, match="trust_checkpoint is no longer a setting"):
        HintonKD.load_from_checkpoint(path, student=create_model("resnet20", 10), teacher=create_model("resnet56", 10))
    assert not marker.exists()


def test_trust_is_not_a_setting_a_checkpoint_can_carry(kd_run: dict[str, Any], in_tmp: Path) -> None:
    """Issue 27, 1 (the innocent variant): a run trained with ``--model.trust_checkpoint true`` passed trust on to
    everyone who tested or resumed its checkpoint. Trust is no longer a setting, so no checkpoint stores it."""
    assert "trust_checkpoint" not in safe_load(kd_run["checkpoint"])["hyper_parameters"]
    with pytest.raises(SystemExit) as refused:
        lit_kd_main([*kd_run["args"], "--model.trust_checkpoint", "true"])
    assert refused.value.code != 0


def test_lightning_weights_only_false_is_refused(
    kd_run: dict[str, Any], marker: Path, in_tmp: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    """Issue 27, 2: ``--ckpt_path last --weights_only false`` does not unpickle; the one switch is the environment."""
    (tmp_path / KD_FOLDER).mkdir(parents=True)
    torch.save({**safe_load(kd_run["checkpoint"]), "extra": RunsCode(marker)}, tmp_path / KD_FOLDER / "last.ckpt")
    with pytest.raises(SystemExit) as refused:
        lit_kd_main(
            with_options(
                kd_run["args"], "fit", "--ckpt_path", "last", "--weights_only", "false", "--trainer.max_epochs", "2"
            )
        )
    assert refused.value.code == 2 and not marker.exists()
    assert "LIT_KD_TRUST_CHECKPOINTS=1" in capsys.readouterr().err


def test_resume_applies_command_line_settings_and_names_them(
    kd_run: dict[str, Any], in_tmp: Path, tmp_path: Path
) -> None:
    """Issue 27, 8: ``--model.temperature`` on resume is used, and a warning names the change."""
    args = with_options(
        kd_run["args"],
        "fit",
        "--ckpt_path",
        str(kd_run["checkpoint"]),
        "--trainer.max_epochs",
        "2",
        "--model.temperature",
        "2.5",
    )
    with pytest.warns(UserWarning, match=r"no longer an exact continuation: temperature=2.5 \(was 4.0\)"):
        cli = LitKDCLI(args=args)
    assert cli.model.temperature == 2.5 and cli.trainer.current_epoch == 2


def test_a_stored_teacher_path_from_another_machine_can_be_overridden(
    kd_run: dict[str, Any], in_tmp: Path, tmp_path: Path
) -> None:
    """Issue 27, 8: the checkpoint stored a teacher path that does not exist here; the command line's is used."""
    checkpoint = safe_load(kd_run["checkpoint"])
    checkpoint["hyper_parameters"]["teacher_checkpoint"] = "/cluster/home/someone/teacher.ckpt"
    moved = tmp_path / "moved.ckpt"
    torch.save(checkpoint, moved)
    cli = LitKDCLI(args=with_options(kd_run["args"], "test", "--ckpt_path", str(moved)))
    assert cli.model.hparams.teacher_checkpoint == str(kd_run["teacher"])


def test_resuming_another_methods_checkpoint_is_refused(
    kd_run: dict[str, Any], cifar_folder: Path, in_tmp: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    args = fit_args(
        "cifar10/at_resnet56_resnet20.yaml",
        cifar_folder,
        model__teacher_checkpoint=kd_run["teacher"],
        ckpt_path=kd_run["checkpoint"],
    )
    with pytest.raises(SystemExit):
        lit_kd_main(args)
    assert "was trained by lit_kd.methods.HintonKD, the configuration builds" in capsys.readouterr().err


@pytest.mark.parametrize("content", ["state_dict", "text", "nan"])
def test_ckpt_path_that_is_no_usable_checkpoint_is_one_line(
    content: str, kd_run: dict[str, Any], in_tmp: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    """Issue 27, 9-10: a plain state dict (was a bare KeyError), a text file (was 'Python objects that can run
    code ... trust it'), NaN weights (tested at 10% with exit 0)."""
    path = tmp_path / f"{content}.ckpt"
    if content == "state_dict":
        torch.save(create_model("resnet8", 10).state_dict(), path)
        expected = "is not a Lightning checkpoint"
    elif content == "text":
        path.write_text("epoch: 3\nweights: see the other file\n")
        expected = "is not a torch.save file"
    else:
        checkpoint = safe_load(kd_run["checkpoint"])
        checkpoint["state_dict"]["student.classifier.weight"].fill_(float("nan"))
        torch.save(checkpoint, path)
        expected = "holds non-finite weights (NaN or inf), first in 'student.classifier.weight'"
    with pytest.raises(SystemExit) as refused:
        lit_kd_main(with_options(kd_run["args"], "test", "--ckpt_path", str(path)))
    message = capsys.readouterr().err
    assert refused.value.code == 2 and expected in message and len(message.strip().splitlines()) == 2
    assert "trust" not in message.split("\n")[0]


def test_a_deeper_networks_weights_do_not_load_into_a_shallower_teacher(tmp_path: Path) -> None:
    """Issue 27, 4: ResNet-20 weights fitted a ResNet-8 (extra keys ignored), which then scored 10%."""
    path = save_state_dict(create_model("resnet20", num_classes=10), tmp_path / "resnet20.pt")
    for depth in ("resnet8", "resnet14"):
        with pytest.raises(
            ValueError,
            match=r"teacher_checkpoint: .*resnet20.pt does not fit CifarResNet: it holds "
            r"\d+ weights that the network does not have .*'stages\.0\.\d\.",
        ):
            HintonKD(create_model("resnet8", 10), create_model(depth, 10), teacher_checkpoint=str(path))
    HintonKD(create_model("resnet8", 10), create_model("resnet20", 10), teacher_checkpoint=str(path))  # the fit


@pytest.mark.parametrize("setting", ["learning_rate", "temperature"])
@pytest.mark.parametrize("value", [-0.1, float("nan")])
def test_negative_or_nan_rates_and_temperatures_are_refused(setting: str, value: float) -> None:
    with pytest.raises(ValueError, match=setting):
        HintonKD(TinyNet(), TinyNet(), **{setting: value})


def test_a_nan_teacher_is_refused_at_construction(tmp_path: Path) -> None:
    """Issue 27, 10: was a 114-line traceback blaming the learning rate."""
    teacher = TinyNet()
    with torch.no_grad():
        teacher.classifier.weight.fill_(float("nan"))
    path = save_state_dict(teacher, tmp_path / "nan.pt")
    with pytest.raises(ValueError, match=r"nan.pt holds non-finite weights .*'classifier.weight'"):
        HintonKD(TinyNet(), TinyNet(), teacher_checkpoint=str(path))


def test_cgan_record_naming_another_lit_kd_network_is_refused(tmp_path: Path) -> None:
    """Issue 27, 9: a record naming ``PretrainedNetwork`` with ``weights_dir``/``download`` made synthesis create
    that folder and attempt a download; only generators and discriminators may be named."""
    target = tmp_path / "made_by_the_record"
    record = {
        "generator": {
            "class_path": "lit_kd.models.pretrained.PretrainedNetwork",
            "init_args": {"name": "cifar10_resnet20", "weights_dir": str(target), "download": True},
        },
        "discriminator": {"class_path": "lit_kd.models.gan.ProjectionDiscriminator", "init_args": {}},
    }
    torch.save({"state_dict": {}, "conditional_gan": record}, tmp_path / "gan.ckpt")
    with pytest.raises(ValueError, match="PretrainedNetwork', which is not one of lit-kd's networks"):
        load_conditional_gan(tmp_path / "gan.ckpt")
    assert not target.exists()


def test_a_misspelt_option_is_a_short_error(in_tmp: Path, cifar_folder: Path, capsys: pytest.CaptureFixture) -> None:
    """Issue 27, 10: parser errors ran 50-60 lines (argparse's usage listed every option first)."""
    with pytest.raises(SystemExit) as refused:
        lit_kd_main(fit_args("cifar10/vanilla_resnet8.yaml", cifar_folder, model__init_args__temperatur=3))
    message = capsys.readouterr().err
    assert refused.value.code == 2 and "Option 'temperatur' is not accepted" in message
    assert len(message.strip().splitlines()) <= 12
