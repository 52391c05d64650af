from __future__ import annotations

from pathlib import Path

import lightning.pytorch as pl
import torch

from lit_kd.methods import HintonKD
from tests.support.networks import TinyNet, save_state_dict
from tests.support.training import tiny_cifar, tiny_trainer


class RecordPerRank(pl.Callback):
    """Writes, per rank, the images of every training batch and the final student weights."""

    def __init__(self, out_dir: Path) -> None:
        self.out_dir = out_dir
        self.batches: list[torch.Tensor] = []

    def on_train_batch_start(self, trainer, module, batch, batch_idx) -> None:
        self.batches.append(batch[1].clone())

    def on_train_end(self, trainer, module) -> None:
        weights = torch.cat([p.detach().flatten() for p in module.student.parameters()])
        torch.save(
            {"targets": torch.cat(self.batches), "weights": weights, "world_size": trainer.world_size},
            self.out_dir / f"rank{trainer.global_rank}.pt",
        )


def test_kd_with_two_cpu_processes_shards_data_and_keeps_ranks_in_sync(tmp_path: Path, cifar_folder: Path) -> None:
    teacher_path = str(save_state_dict(TinyNet(width=16), tmp_path / "teacher.pt"))
    pl.seed_everything(0)
    module = HintonKD(TinyNet(), TinyNet(width=16), teacher_checkpoint=teacher_path)
    trainer = tiny_trainer(tmp_path, strategy="ddp_spawn", devices=2, max_epochs=2, callbacks=[RecordPerRank(tmp_path)])
    trainer.fit(module, tiny_cifar(cifar_folder, batch_size=8))
    ranks = [torch.load(tmp_path / f"rank{r}.pt") for r in (0, 1)]
    assert ranks[0]["world_size"] == 2
    # 80 images over 2 ranks in batches of 8: 5 steps an epoch on each rank, 2 epochs
    assert len(ranks[0]["targets"]) == len(ranks[1]["targets"]) == 80
    assert not torch.equal(ranks[0]["targets"], ranks[1]["targets"])  # different shards
    assert torch.equal(ranks[0]["weights"], ranks[1]["weights"])  # gradients were all-reduced
    final = torch.cat([p.detach().flatten() for p in module.student.parameters()])
    assert torch.equal(final, ranks[0]["weights"])  # the main process got the trained weights back
