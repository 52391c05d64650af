from __future__ import annotations

from pathlib import Path

import lightning.pytorch as pl
import torch

from lit_kd.data import normalize
from lit_kd.methods import HintonKD
from tests.support.networks import TinyNet, save_state_dict
from tests.support.training import tiny_cifar, tiny_trainer


class RecordPerRank(pl.Callback):
    """Writes, per rank, the targets and teacher-memo keys of every training batch and the final student weights."""

    def __init__(self, out_dir: Path) -> None:
        self.out_dir = out_dir
        self.batches: list[torch.Tensor] = []
        self.keys: list[torch.Tensor] = []

    def on_train_batch_start(self, trainer, module, batch, batch_idx) -> None:
        self.batches.append(batch[1].clone())
        self.keys.append(torch.stack([batch[2].cpu(), batch[3].cpu()], dim=1))  # (sample index, view)

    def on_train_end(self, trainer, module) -> None:
        weights = torch.cat([p.detach().flatten() for p in module.student.parameters()])
        record = {"targets": torch.cat(self.batches), "keys": torch.cat(self.keys), "weights": weights}
        torch.save({**record, "world_size": trainer.world_size}, self.out_dir / f"rank{trainer.global_rank}.pt")


def test_kd_with_two_cpu_processes_shards_data_keeps_ranks_in_sync_and_shares_the_teacher_memo(
    tmp_path: Path, cifar_folder: Path
) -> None:
    teacher = TinyNet(width=16)
    teacher_path = str(save_state_dict(teacher, tmp_path / "teacher.pt"))
    memo = tmp_path / "memo.safetensors"
    pl.seed_everything(0)
    module = HintonKD(TinyNet(), TinyNet(width=16), teacher_checkpoint=teacher_path, teacher_memo=memo)
    trainer = tiny_trainer(tmp_path, strategy="ddp_spawn", devices=2, max_epochs=2, callbacks=[RecordPerRank(tmp_path)])
    data = tiny_cifar(cifar_folder, batch_size=8, crop_padding=1, seed=0)
    trainer.fit(module, data)
    ranks = [torch.load(tmp_path / f"rank{r}.pt") for r in (0, 1)]
    assert ranks[0]["world_size"] == 2
    # 80 images over 2 ranks in batches of 8: 5 steps an epoch on each rank, 2 epochs
    assert len(ranks[0]["targets"]) == len(ranks[1]["targets"]) == 80
    assert not torch.equal(ranks[0]["targets"], ranks[1]["targets"])  # different shards
    assert torch.equal(ranks[0]["weights"], ranks[1]["weights"])  # gradients were all-reduced
    final = torch.cat([p.detach().flatten() for p in module.student.parameters()])
    assert torch.equal(final, ranks[0]["weights"])  # the main process got the trained weights back

    # the memo file holds exactly the entries both ranks drew, each the teacher's output on that view
    data.setup("fit")
    sources = data.train_sources
    drawn = {(int(sources[index]), int(view)) for index, view in torch.cat([r["keys"] for r in ranks]).tolist()}
    module.num_classes = 10  # set at setup, which ran in the spawned processes
    stored = module.open_teacher_memo(data, "32-true")
    assert {tuple(key) for key in stored.entries().tolist()} == drawn
    samples, views = torch.tensor(sorted(drawn)).T
    position = torch.argsort(sources)[samples]  # each sample's index in the training set
    images = normalize(data.augmentation.apply(data.train_set.images[position], views), data.mean, data.std)
    with torch.no_grad():
        expected = teacher.eval()(images)
    torch.testing.assert_close(stored.lookup(samples, views)[0], expected, rtol=0, atol=1e-5)
