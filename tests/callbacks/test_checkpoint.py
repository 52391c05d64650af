"""``last.ckpt`` holds the last weights, a SIGTERM stops with a non-zero status and a resumable ``last.ckpt``, and a
checkpoint folder belongs to one run (issue 27, items 3, 7 and 9)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from lit_kd.callbacks.checkpoint import LOCK_NAME
from lit_kd.checkpointing import safe_load
from lit_kd.cli import main as lit_kd_main
from lit_kd.lightning_cli import LitKDCLI
from tests.support.paths import RECIPES, REPO_ROOT
from tests.support.training import fit_args

RECIPE = "cifar10/vanilla_resnet8.yaml"  # monitor: val/acc, save_last: true, dirpath checkpoints/cifar10/...
FOLDER = Path("checkpoints/cifar10/vanilla_resnet8")


def run_args(
    cifar_folder: Path,
    root: Path,
    *options: str,
    folder: Path = FOLDER,
    checkpoint: dict | None = None,
    sigterm_at: int | None = None,
    **settings,
) -> list[str]:
    """4 training batches an epoch, validation after each; the recipe's checkpoint callback with ``checkpoint``'s
    changes (and a SIGTERM after step ``sigterm_at``); ``settings`` override (``trainer__max_steps=6``)."""
    callbacks = [
        {
            "class_path": "lit_kd.callbacks.ResumableCheckpoint",
            "init_args": {
                "dirpath": str(folder),
                "filename": "best",
                "monitor": "val/acc",
                "mode": "max",
                "save_last": True,
                **(checkpoint or {}),
            },
        }
    ]
    if sigterm_at is not None:
        callbacks.append({"class_path": "tests.support.training.SigtermAtStep", "init_args": {"step": sigterm_at}})
    root.mkdir(parents=True, exist_ok=True)
    extra = root / f"callbacks_{len(list(root.glob('callbacks_*.yaml')))}.yaml"
    extra.write_text(yaml.safe_dump({"trainer": {"callbacks": callbacks}}))
    defaults = dict(
        data__batch_size=16,
        data__use_cache=False,
        trainer__max_epochs=3,
        trainer__limit_train_batches=4,
        trainer__limit_val_batches=1,
        trainer__default_root_dir=root,
        trainer__enable_progress_bar=False,
    )
    defaults.update(settings)
    return fit_args(RECIPE, cifar_folder, "--config", str(extra), *options, **defaults)


def student_weights(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {key: value for key, value in state_dict.items() if key.startswith("student.")}


@pytest.fixture
def in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_last_checkpoint_holds_the_final_weights_when_the_run_ends_between_validations(
    in_tmp: Path, cifar_folder: Path
) -> None:
    """6 steps of 4 per epoch: the run ends mid-epoch, after the last validation (Lightning 2.6 left step 4)."""
    cli = LitKDCLI(args=run_args(cifar_folder, in_tmp, trainer__max_steps=6))
    last = safe_load(FOLDER / "last.ckpt")
    assert last["global_step"] == 6
    final = student_weights(cli.model.state_dict())
    for key, value in student_weights(last["state_dict"]).items():
        assert torch.equal(value, final[key]), key
    best = safe_load(FOLDER / "best.ckpt")
    assert best["global_step"] == 4  # best.ckpt is still the best validated epoch


def test_last_checkpoint_follows_every_epoch_even_when_validation_does_not_improve(
    in_tmp: Path, cifar_folder: Path
) -> None:
    """``monitor`` on a metric that can only get worse (mode min on accuracy from 0 is still 'improving' once):
    the top-k file stops moving after epoch 1, ``last.ckpt`` keeps moving."""
    cli = LitKDCLI(args=run_args(cifar_folder, in_tmp, checkpoint={"monitor": "epoch", "mode": "min"}))
    assert safe_load(FOLDER / "best.ckpt")["global_step"] == 4  # epoch 0 is the minimum of 'epoch'
    last = safe_load(FOLDER / "last.ckpt")
    assert last["global_step"] == 12 and last["epoch"] == 2
    final = student_weights(cli.model.state_dict())
    assert all(torch.equal(value, final[key]) for key, value in student_weights(last["state_dict"]).items())


def test_sigterm_stops_with_status_143_and_a_last_checkpoint_that_resumes_exactly(
    in_tmp: Path, cifar_folder: Path, capsys: pytest.CaptureFixture
) -> None:
    uninterrupted = LitKDCLI(args=run_args(cifar_folder, in_tmp / "a", folder=in_tmp / "a", trainer__max_steps=10))
    expected = student_weights(uninterrupted.model.state_dict())

    folder = in_tmp / "b"
    with pytest.raises(SystemExit) as stopped:
        lit_kd_main(run_args(cifar_folder, folder, folder=folder, sigterm_at=6, trainer__max_steps=10))
    assert stopped.value.code == 143
    assert "stopped by SIGTERM" in capsys.readouterr().err
    assert safe_load(folder / "last.ckpt")["global_step"] == 6
    assert not (folder / LOCK_NAME).exists()

    resumed = LitKDCLI(
        args=run_args(cifar_folder, folder, folder=folder, trainer__max_steps=10, ckpt_path=folder / "last.ckpt")
    )
    assert resumed.trainer.global_step == 10
    for key, value in student_weights(resumed.model.state_dict()).items():
        assert torch.equal(value, expected[key]), key


def test_sigterm_exit_status_from_a_real_process(in_tmp: Path, cifar_folder: Path) -> None:
    """``lit-kd fit ... && lit-kd test ...`` must not go on: the shell sees a non-zero status."""
    args = run_args(cifar_folder, in_tmp, sigterm_at=2, trainer__max_steps=8)
    environment = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    done = subprocess.run(
        [sys.executable, "-m", "lit_kd", *args], env=environment, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 143, done.stderr[-2000:]
    assert safe_load(FOLDER / "last.ckpt")["global_step"] == 2


def test_a_fresh_run_refuses_a_folder_with_an_earlier_runs_checkpoints(
    in_tmp: Path, cifar_folder: Path, capsys: pytest.CaptureFixture
) -> None:
    lit_kd_main(run_args(cifar_folder, in_tmp, trainer__max_epochs=1))
    before = safe_load(FOLDER / "best.ckpt")["state_dict"]
    with pytest.raises(SystemExit) as refused:
        lit_kd_main(run_args(cifar_folder, in_tmp, trainer__max_epochs=1))
    assert refused.value.code == 2
    message = capsys.readouterr().err
    assert f"{FOLDER} holds an earlier run's checkpoints (best.ckpt, last.ckpt)" in message
    assert sorted(path.name for path in FOLDER.glob("*.ckpt")) == ["best.ckpt", "last.ckpt"]  # no best-v1.ckpt
    assert all(torch.equal(value, before[key]) for key, value in safe_load(FOLDER / "best.ckpt")["state_dict"].items())
    # opting in replaces them (still no -v1 file)
    lit_kd_main(run_args(cifar_folder, in_tmp, checkpoint={"overwrite": True}, trainer__max_epochs=1))
    assert sorted(path.name for path in FOLDER.glob("*.ckpt")) == ["best.ckpt", "last.ckpt"]


def test_a_folder_in_use_by_a_live_process_is_refused(
    in_tmp: Path, cifar_folder: Path, capsys: pytest.CaptureFixture
) -> None:
    FOLDER.mkdir(parents=True)
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (FOLDER / LOCK_NAME).write_text(str(other.pid))
        with pytest.raises(SystemExit):
            lit_kd_main(run_args(cifar_folder, in_tmp, trainer__max_epochs=1))
        assert f"in use by another running process (pid {other.pid}" in capsys.readouterr().err
        assert not list(FOLDER.glob("*.ckpt"))
    finally:
        other.kill()
        other.wait()
    # the lock of a process that is gone is taken over
    lit_kd_main(run_args(cifar_folder, in_tmp, trainer__max_epochs=1))
    assert (FOLDER / "last.ckpt").is_file() and not (FOLDER / LOCK_NAME).exists()


def test_partial_files_of_killed_runs_are_removed(in_tmp: Path, cifar_folder: Path) -> None:
    FOLDER.mkdir(parents=True)
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    stale = FOLDER / f".last.ckpt.{gone.pid}.partial"
    stale.write_bytes(b"PK half")
    os.utime(stale, (0, 0))
    fresh = FOLDER / f".last.ckpt.{os.getpid() + 10**6}.partial"  # no such process, but written just now
    fresh.write_bytes(b"PK")
    lit_kd_main(run_args(cifar_folder, in_tmp, checkpoint={"overwrite": True}, trainer__max_epochs=1))
    assert not stale.exists() and fresh.exists()


def test_every_recipe_checkpoints_with_the_resumable_callback() -> None:
    """Issue 27, 3: under Lightning's own ModelCheckpoint (monitor + save_last) a recipe's last.ckpt held the best
    epoch. Every recipe that writes checkpoints uses ResumableCheckpoint."""
    recipes = sorted(RECIPES.rglob("*.yaml"))
    checkpointing = 0
    for recipe in recipes:
        callbacks = (yaml.safe_load(recipe.read_text()).get("trainer") or {}).get("callbacks") or []
        for callback in callbacks:
            if callback["class_path"].endswith("Checkpoint"):
                assert callback["class_path"] == "lit_kd.callbacks.ResumableCheckpoint", recipe
                checkpointing += 1
    assert checkpointing >= 40
