"""The teacher memo (lit_kd.runtime.memo): exact, keyed by (sample, view), refused when stale, shared across runs."""

from __future__ import annotations

from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch
import torch.nn.functional as F
import torchvision.transforms.v2.functional as TF
import yaml
from lightning.pytorch.callbacks import ModelCheckpoint

from lit_kd.cli import main
from lit_kd.data import CropFlip
from lit_kd.methods import AttentionTransfer, EnsembleDistillation, HintonKD
from lit_kd.runtime.memo import StaleMemoError, TeacherMemo
from tests.support.networks import TinyNet, save_state_dict
from tests.support.training import tiny_cifar, tiny_trainer


def test_each_view_id_is_the_crop_offset_and_flip_torchvision_makes() -> None:
    images = torch.randint(0, 256, (1, 3, 6, 5), dtype=torch.uint8).expand(18, -1, -1, -1)
    views = CropFlip(padding=1, horizontal_flip=True).apply(images, torch.arange(18))
    padded = F.pad(images[0], (1, 1, 1, 1))
    for view in range(18):
        offset, flipped = divmod(view, 2)
        expected = TF.crop(padded, offset // 3, offset % 3, 6, 5)
        expected = TF.horizontal_flip(expected) if flipped else expected
        assert torch.equal(views[view], expected), view
    assert len({bytes(view.flatten().tolist()) for view in views}) == 18  # 9 offsets x 2 flips, all different


def test_draws_cover_every_view_and_only_the_declared_ones() -> None:
    augmentation = CropFlip(padding=4, horizontal_flip=True)
    views = augmentation.draw(20000, torch.Generator().manual_seed(0), torch.device("cpu"))
    assert augmentation.num_views == 162 and views.unique().tolist() == list(range(162))
    assert CropFlip(padding=0, horizontal_flip=False).num_views == 1


def test_a_stale_record_fails_with_one_line_naming_what_differs(tmp_path: Path) -> None:
    path = tmp_path / "memo.safetensors"
    memo = TeacherMemo(path, {"teacher": "aaaa", "dataset": "CIFAR10DataModule"}, 4, 2, 3)
    memo.bind(torch.arange(4), torch.tensor([11, 12, 13, 14]))
    memo.save()
    with pytest.raises(StaleMemoError) as error:
        TeacherMemo(path, {"teacher": "bbbb", "dataset": "CIFAR10DataModule"}, 4, 2, 3)
    message = str(error.value)
    assert "\n" not in message and 'teacher: stored "aaaa", now "bbbb"' in message and "dataset" not in message
    with pytest.raises(StaleMemoError, match="dtype: stored float32, now float16"):
        TeacherMemo(path, {"teacher": "aaaa", "dataset": "CIFAR10DataModule"}, 4, 2, 3, dtype="float16")
    reopened = TeacherMemo(path, {"teacher": "aaaa", "dataset": "CIFAR10DataModule"}, 4, 2, 3)
    with pytest.raises(StaleMemoError, match="sample 2 holds another image"):
        reopened.bind(torch.tensor([2, 3]), torch.tensor([99, 14]))


def test_saving_merges_what_another_run_saved_meanwhile(tmp_path: Path) -> None:
    path = tmp_path / "memo.safetensors"
    first, second = (TeacherMemo(path, {"teacher": "a"}, 3, 2, 1) for _ in range(2))
    first.bind(torch.tensor([0, 1]), torch.tensor([10, 11]))
    second.bind(torch.tensor([1, 2]), torch.tensor([11, 12]))
    first.fill(torch.tensor([0]), torch.tensor([1]), torch.tensor([[1.5]]))
    second.fill(torch.tensor([2]), torch.tensor([0]), torch.tensor([[-2.0]]))
    first.save()
    second.save()
    reopened = TeacherMemo(path, {"teacher": "a"}, 3, 2, 1)
    assert reopened.entries().tolist() == [[0, 1], [2, 0]]
    values, known = reopened.lookup(torch.tensor([0, 2, 1]), torch.tensor([1, 0, 0]))
    assert known.tolist() == [True, True, False] and values[:2, 0].tolist() == [1.5, -2.0]
    assert not list(tmp_path.glob(".*.partial"))  # the temporary files are gone


def fit_kd(
    tmp_path: Path, data_dir: Path, seed: int, memo: Path | None, epochs: int = 2, **trainer_options: object
) -> HintonKD:
    """A KD run of a tiny student on 80 images, pad-1 crop and flip (18 views), batches of 16."""
    pl.seed_everything(seed)
    module = HintonKD(TinyNet(), TinyNet(width=16), teacher_checkpoint=str(tmp_path / "teacher.pt"), teacher_memo=memo)
    tiny_trainer(tmp_path, max_epochs=epochs, **trainer_options).fit(
        module, tiny_cifar(data_dir, crop_padding=1, seed=0)
    )
    return module


def weights(module: HintonKD) -> torch.Tensor:
    return torch.cat([parameter.detach().flatten() for parameter in module.student.parameters()])


def test_a_memoised_run_equals_an_uncached_one_and_a_second_run_reads_every_entry(
    tmp_path: Path, cifar_folder: Path
) -> None:
    save_state_dict(TinyNet(width=16), tmp_path / "teacher.pt")
    memo = tmp_path / "memo.safetensors"
    uncached = fit_kd(tmp_path, cifar_folder, seed=0, memo=None)
    first = fit_kd(tmp_path, cifar_folder, seed=0, memo=memo)
    assert first.teacher_memo.misses > 0 and torch.equal(weights(first), weights(uncached))
    second = fit_kd(tmp_path, cifar_folder, seed=0, memo=memo)  # the same data stream: every entry is stored
    assert second.teacher_memo.misses == 0 and second.teacher_memo.hits == 2 * 80
    assert torch.equal(weights(second), weights(uncached))
    # another run seed (student initialisation) on the same data stream: all read, and equal to its uncached run
    third = fit_kd(tmp_path, cifar_folder, seed=1, memo=memo)
    assert third.teacher_memo.misses == 0
    assert torch.equal(weights(third), weights(fit_kd(tmp_path, cifar_folder, seed=1, memo=None)))


def test_an_ensemble_memoises_its_mean_logits_and_a_memoised_run_equals_an_uncached_one(
    tmp_path: Path, cifar_folder: Path
) -> None:
    """The ensemble's memo holds what the ensemble gives (the members' mean logits), one entry per view: a run that
    reads every entry trains as one that runs the members."""
    members = [save_state_dict(TinyNet(width=width), tmp_path / f"member{width}.pt") for width in (8, 16)]

    def fit(memo: Path | None) -> EnsembleDistillation:
        pl.seed_everything(0)
        module = EnsembleDistillation(
            TinyNet(), [TinyNet(width=8), TinyNet(width=16)], [str(m) for m in members], teacher_memo=memo
        )
        tiny_trainer(tmp_path, max_epochs=2).fit(module, tiny_cifar(cifar_folder, crop_padding=1, seed=0))
        return module

    memo = tmp_path / "ensemble.safetensors"
    uncached, first, second = fit(None), fit(memo), fit(memo)
    assert first.teacher_memo.misses > 0 and torch.equal(weights(first), weights(uncached))
    assert second.teacher_memo.misses == 0 and second.teacher_memo.hits == 2 * 80
    assert torch.equal(weights(second), weights(uncached))


def test_entries_computed_in_other_batches_give_the_same_run_within_float_rounding(
    tmp_path: Path, cifar_folder: Path
) -> None:
    save_state_dict(TinyNet(width=16), tmp_path / "teacher.pt")
    memo = tmp_path / "memo.safetensors"
    fit_kd(tmp_path, cifar_folder, seed=0, memo=memo, epochs=3)
    pl.seed_everything(0)
    # another data stream (data seed 5): some keys were stored by the first run, in other batches
    module = HintonKD(TinyNet(), TinyNet(width=16), teacher_checkpoint=str(tmp_path / "teacher.pt"), teacher_memo=memo)
    tiny_trainer(tmp_path, max_epochs=2).fit(module, tiny_cifar(cifar_folder, crop_padding=1, seed=5))
    pl.seed_everything(0)
    uncached = HintonKD(TinyNet(), TinyNet(width=16), teacher_checkpoint=str(tmp_path / "teacher.pt"))
    tiny_trainer(tmp_path, max_epochs=2).fit(uncached, tiny_cifar(cifar_folder, crop_padding=1, seed=5))
    assert module.teacher_memo.hits > 0 and module.teacher_memo.misses > 0
    torch.testing.assert_close(weights(module), weights(uncached), rtol=0, atol=1e-5)


def test_a_memo_of_another_teacher_is_refused_at_setup(tmp_path: Path, cifar_folder: Path) -> None:
    save_state_dict(TinyNet(width=16), tmp_path / "teacher.pt")
    memo = tmp_path / "memo.safetensors"
    fit_kd(tmp_path, cifar_folder, seed=0, memo=memo, epochs=1)
    torch.manual_seed(123)
    save_state_dict(TinyNet(width=16), tmp_path / "teacher.pt")  # other weights under the same file name
    with pytest.raises(StaleMemoError, match=r"^teacher memo .* was built for another run \(teacher: stored"):
        fit_kd(tmp_path, cifar_folder, seed=0, memo=memo, epochs=1)


def test_a_memo_filled_in_float32_is_refused_by_a_bf16_teacher(
    tmp_path: Path, cifar_folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    save_state_dict(TinyNet(width=16), tmp_path / "teacher.pt")
    memo = tmp_path / "memo.safetensors"
    fit_kd(tmp_path, cifar_folder, seed=0, memo=memo, epochs=1)  # "auto" is "32" in the tests
    monkeypatch.setenv("LIT_KD_TEACHER_PRECISION", "bf16")  # "auto" as on a CPU with native bf16
    with pytest.raises(StaleMemoError, match=r"^teacher memo .* was built for another run \(teacher_run: stored"):
        fit_kd(tmp_path, cifar_folder, seed=0, memo=memo, epochs=1)


def test_a_resumed_memoised_run_equals_an_uninterrupted_one(tmp_path: Path, cifar_folder: Path) -> None:
    save_state_dict(TinyNet(width=16), tmp_path / "teacher.pt")
    checkpoints = ModelCheckpoint(tmp_path / "ckpt", filename="{step}", every_n_train_steps=7, save_top_k=-1)
    uninterrupted = fit_kd(
        tmp_path, cifar_folder, 0, tmp_path / "a.safetensors", 3, callbacks=[checkpoints], enable_checkpointing=True
    )
    pl.seed_everything(0)
    resumed = HintonKD(
        TinyNet(), TinyNet(width=16), teacher_checkpoint=str(tmp_path / "teacher.pt"), teacher_memo=tmp_path / "b.st"
    )
    trainer = tiny_trainer(tmp_path, max_epochs=3)
    trainer.fit(resumed, tiny_cifar(cifar_folder, crop_padding=1, seed=0), ckpt_path=tmp_path / "ckpt" / "step=7.ckpt")
    assert trainer.global_step == 15
    torch.testing.assert_close(weights(resumed), weights(uninterrupted), rtol=0, atol=1e-6)


def test_methods_whose_teacher_sees_more_than_logits_refuse_a_memo() -> None:
    with pytest.raises(ValueError, match="AttentionTransfer cannot use teacher_memo"):
        AttentionTransfer(TinyNet(), TinyNet(width=16), teacher_memo="memo.safetensors")


def test_lit_kd_teacher_memo_stores_every_view_and_a_run_then_never_runs_the_teacher(
    tmp_path: Path, cifar_folder: Path, capsys: pytest.CaptureFixture
) -> None:
    network = {"class_path": "tests.support.networks.TinyNet", "init_args": {"width": 16}}
    teacher_path = save_state_dict(TinyNet(width=16), tmp_path / "teacher.pt")
    memo = tmp_path / "memo.safetensors"
    recipe = {
        "trainer": {"accelerator": "cpu", "logger": False, "enable_progress_bar": False, "max_epochs": 1},
        "model": {
            "class_path": "lit_kd.methods.HintonKD",
            "init_args": {"student": network, "teacher": network, "teacher_checkpoint": str(teacher_path)},
        },
        "data": {
            "class_path": "lit_kd.data.CIFAR10DataModule",
            "init_args": {"data_dir": str(cifar_folder), "use_cache": False, "crop_padding": 1, "seed": 0},
        },
    }
    (tmp_path / "recipe.yaml").write_text(yaml.safe_dump(recipe))
    main(["teacher-memo", "--config", str(tmp_path / "recipe.yaml"), "--model.init_args.teacher_memo", str(memo)])
    printed = capsys.readouterr().out
    assert "80 samples x 18 views x 10 outputs in float32, 0.1 MB; 0 of 1440 entries stored" in printed
    assert "1440 of 1440 entries stored" in printed.splitlines()[-1]
    module = fit_kd(tmp_path, cifar_folder, seed=0, memo=memo)
    assert module.teacher_memo.misses == 0 and module.teacher_memo.hits == 2 * 80
    # every entry as training computes it, to float rounding (the command's batches are other than training's)
    torch.testing.assert_close(weights(module), weights(fit_kd(tmp_path, cifar_folder, 0, None)), rtol=0, atol=1e-5)
