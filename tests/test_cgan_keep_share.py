"""benchmarks/cgan_keep_share.py on tiny generated data: the shares it records, and a GAN its probe leaves alone."""

from __future__ import annotations

import json
import sys

import pytest
import torch

from tests.support.benchmarks import benchmark_script


@pytest.fixture
def probe(tmp_path, monkeypatch: pytest.MonkeyPatch):
    """benchmarks/cgan_keep_share.py, writing its results under tmp_path, with a zoo teacher."""
    return benchmark_script("cgan_keep_share", tmp_path, monkeypatch)


def test_the_share_is_measured_every_n_updates_without_changing_the_gan(probe, tmp_path, cifar_folder, monkeypatch):
    argv = ["cgan_keep_share.py", "--data-dir", str(cifar_folder), "--cache-dir", str(tmp_path / "cache")]
    argv += ["--gan-steps", "5", "--every", "2", "--per-label", "3", "--gan-channels", "8"]
    argv += ["--output-dir", str(tmp_path / "out"), "--partial-dir", str(tmp_path / "out"), "--seeds", "0"]
    monkeypatch.setattr(sys, "argv", argv)
    probe.main()
    result = json.loads((tmp_path / "results" / "cgan_keep_share.json").read_text())["results"]
    assert sorted(result, key=int) == ["2", "4", "5"]  # every 2 updates, and the last
    for row in result.values():
        assert row["generated"] == 30 and row["kept"] == sum(row["kept_per_class"].values())
        assert row["share"] == row["kept"] / 30
    assert not list((tmp_path / "out" / "resume").glob("*/*/*"))  # the finished GAN's checkpoints are removed
    # another GAN (other channels) is measured anew: its shares are never read from the first one's file
    monkeypatch.setattr(sys, "argv", [*argv[:-2], "--gan-channels", "4", "--seeds", "0"])
    probe.main()
    again = json.loads((tmp_path / "results" / "cgan_keep_share.json").read_text())
    assert again["settings"]["gan_channels"] == "4" and sorted(again["results"], key=int) == ["2", "4", "5"]
    assert len(list((tmp_path / "out").glob("cgan_keep_share.partial.*.json"))) == 1  # the first file, set aside

    # the measurements draw their own noise and restore the generator's mode: the GAN trains as without them
    args = probe.argparse.Namespace(data_dir=cifar_folder, cache_dir=str(tmp_path / "cache"), subset=5000)
    args.__dict__.update(weights_dir=None, teacher_checkpoint=None, gan_channels=8, val_size=0, overrides={})
    generators = []
    for callbacks in ((), ("probe",)):
        runner = probe.Runner(args, 0)
        gan, data = runner.gan()
        measured = (probe.KeepShare(runner, data, 2, 3, {}, lambda: None),) if callbacks else ()
        runner.fit(gan, "GAN", "GAN", data, measured, max_steps=4, max_epochs=-1)
        generators.append(gan.generator.state_dict())
    assert all(torch.equal(generators[0][k], generators[1][k]) for k in generators[0])
