"""The gains benchmark's machinery on tiny generated data: paired differences, resumable results, W&B offline."""

from __future__ import annotations

import json
import os
import re
import signal
import statistics
import sys
import tempfile
from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch
from torch.utils._pytree import tree_leaves

from lit_kd.models import create_model
from tests.support.benchmarks import benchmark_script, fixed_teacher


@pytest.fixture
def gains(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """benchmarks/gains.py, writing its results under tmp_path, with a zoo teacher instead of the pretrained one."""
    return benchmark_script("gains", tmp_path, monkeypatch)


def run(gains, monkeypatch: pytest.MonkeyPatch, cifar_folder: Path, tmp_path: Path, *extra: str) -> dict:
    argv = [
        "gains.py",
        "--data-dir",
        str(cifar_folder),
        "--subset",
        "40",
        "--epochs",
        "1",
        "--seeds",
        "0",
        "1",
        "--rows",
        "vanilla ResNet-8",
        "Hinton KD",
        "--output-dir",
        str(tmp_path / "out"),
        "--partial-dir",
        str(tmp_path / "out"),
        "--cache-dir",
        str(tmp_path / "cache"),
        *extra,
    ]
    monkeypatch.setattr(sys, "argv", argv)
    gains.main()
    return json.loads((tmp_path / "results" / "gains.json").read_text())


def test_rows_report_the_paired_difference_to_the_baseline(gains, tmp_path, cifar_folder, monkeypatch) -> None:
    result = run(gains, monkeypatch, cifar_folder, tmp_path)
    (row,) = [r for r in result["rows"] if r["row"] == "Hinton KD"]
    per_seed = [result["results"][seed] for seed in ("0", "1")]
    differences = [100 * (r["Hinton KD"]["acc"] - r["vanilla ResNet-8"]["acc"]) for r in per_seed]
    assert row["baseline"] == "vanilla ResNet-8" and row["seeds"] == 2
    assert row["gain (points)"] == f"{statistics.mean(differences):+.2f}"
    half = 12.706 * statistics.stdev(differences) / 2**0.5  # Student's t, 1 degree of freedom
    assert (
        row["95% interval"]
        == f"[{statistics.mean(differences) - half:+.2f}, {statistics.mean(differences) + half:+.2f}]"
    )
    # a second call with the same settings finds every row done and trains nothing
    partial = tmp_path / "out" / "gains.partial.json"
    before = partial.read_text()
    run(gains, monkeypatch, cifar_folder, tmp_path)
    assert partial.read_text() == before


def test_seeds_run_side_by_side_share_the_partial_file(gains, tmp_path, cifar_folder, monkeypatch) -> None:
    """Seeds split across processes (``--seeds 0`` and ``--seeds 1``, other threads) end in one table."""
    one = run(gains, monkeypatch, cifar_folder, tmp_path)
    partial = tmp_path / "out" / "gains.partial.json"
    partial.unlink()
    for seed, threads in (("0", "1"), ("1", "2")):  # the second process starts from the first one's file
        separate = run(gains, monkeypatch, cifar_folder, tmp_path, "--seeds", seed, "--threads", threads)
    assert sorted(separate["results"]) == ["0", "1"]
    assert separate["results"]["0"]["Hinton KD"]["threads"] == 1
    assert separate["results"]["1"]["Hinton KD"]["threads"] == 2
    model = re.search(r"^model name\s*:(.*)$", Path("/proc/cpuinfo").read_text(), re.MULTILINE)
    assert separate["results"]["1"]["Hinton KD"]["cpu"] == model.group(1).strip()  # the CPU that ran the row
    for row in ("vanilla ResNet-8", "Hinton KD"):  # the same numbers as one process running both seeds
        assert separate["results"]["1"][row]["acc"] == one["results"]["1"][row]["acc"]
    # other settings start a new table rather than mixing budgets
    other = run(gains, monkeypatch, cifar_folder, tmp_path, "--seeds", "1", "--epochs", "2")
    assert sorted(other["results"]) == ["1"]


def test_cpuinfo_reads_the_first_value_of_a_field(gains, tmp_path) -> None:
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(
        "processor\t: 0\nvendor_id\t: AuthenticAMD\nmodel name\t: AMD EPYC 9R14 96-Core Processor\n"
        "vmx flags\t: ept\nflags\t\t: fpu avx2 avx512_bf16\n\nprocessor\t: 1\nmodel name\t: another\n"
    )
    assert gains.cpuinfo("model name", cpuinfo) == "AMD EPYC 9R14 96-Core Processor"
    assert gains.cpuinfo("flags", cpuinfo) == "fpu avx2 avx512_bf16"  # not "vmx flags"
    assert gains.cpuinfo("model name", tmp_path / "absent") == ""


def test_wandb_logs_every_run_grouped_by_method_and_tagged(
    gains, tmp_path, cifar_folder, monkeypatch, wandb_mode
) -> None:
    from tests.test_wandb import wandb_records

    wandb_mode("offline")
    run(gains, monkeypatch, cifar_folder, tmp_path, "--wandb", "--wandb-project", "lit-kd-gains-test")
    runs = sorted((tmp_path / "out" / "wandb").glob("offline-run-*"))
    assert len(runs) == 4  # 2 seeds x (baseline, method)
    seen = set()
    for folder in runs:
        (record,) = [
            r.run for r in wandb_records(next(folder.glob("run-*.wandb"))) if r.WhichOneof("record_type") == "run"
        ]
        seen.add((record.run_group, tuple(sorted(record.tags))))
    assert seen == {
        ("vanilla ResNet-8", ("baseline", "seed=0")),
        ("vanilla ResNet-8", ("baseline", "seed=1")),
        ("Hinton KD", ("method", "seed=0")),
        ("Hinton KD", ("method", "seed=1")),
    }


def test_each_claim_is_checked_on_its_own_pair_and_the_plateau_is_stated(gains) -> None:
    def seeds(bss: list[float]) -> dict:
        return {
            str(seed): {"Hinton KD": {"acc": 0.50}, "BSS": {"acc": 0.50 + gain / 100}, "vanilla ResNet-8": {"acc": 0.4}}
            for seed, gain in enumerate(bss)
        }

    claim, verdict = gains.agreement(seeds([2.0, 2.1, 1.9]), "BSS")  # BSS against KD, not against vanilla
    assert claim.startswith("BSS > KD") and verdict == "yes (+2.00 [+1.75, +2.25])"  # t(2) 4.303 x 0.1 / sqrt(3)
    assert gains.agreement(seeds([1.0, 2.0, 3.0]), "BSS")[1] == "not shown (+2.00 [-0.48, +4.48])"
    assert gains.agreement(seeds([-2.0, -2.1, -1.9]), "BSS")[1].startswith("no (-2.00")
    results = {"0": {"vanilla ResNet-8": {"acc": 0.600}, gains.PLATEAU_ROW: {"acc": 0.612, "epochs": 45}}}
    note = gains.plateau_note(results, {"epochs": "30"})
    assert "60.00% at 30 epochs and 61.20% at 45" in note and "+1.20 points, NOT plateaued" in note


def test_afds_cycle_of_three_is_checked_against_dml_of_the_same_three_networks(gains) -> None:
    results = {
        str(seed): {
            "AFD, cycle of 3": {"networks": {"ResNet-8": 0.70}},
            "DML": {"networks": {"ResNet-8": 0.60}},  # the pair: 10 points below, not the comparison
            "DML, 3 networks": {"networks": {"ResNet-8": dml}},
            "vanilla ResNet-8": {"acc": 0.65},
        }
        for seed, dml in enumerate([0.69, 0.70, 0.71])
    }
    claim, verdict = gains.agreement(results, "AFD, cycle of 3")
    assert claim.startswith("AFD > DML") and verdict == "not shown (+0.00 [-2.48, +2.48])"  # 4.303 x 1 / sqrt(3)
    assert gains.agreement(results, "DML, 3 networks")[1] == "yes (+5.00 [+2.52, +7.48])"
    assert "DML, 3 networks" in gains.TEACHER_FREE_ROWS


def test_every_row_the_adapted_teacher_teaches_notes_its_accuracy_and_no_other_row_does(gains) -> None:
    results = {"0": {"teacher (adapted ResNet-56)": {"acc": 0.8929}}}
    for row in ("Hinton KD", "BSS", "FitNets", "AT", "DKD", "DIST", "KD + LS", "CRD", "AMA"):
        assert gains.notes(results, ["0"], row) == "teacher 89.29%", row
    assert gains.notes(results, ["0"], "vanilla ResNet-8") == ""
    assert gains.notes(results, ["0"], "DML/ResNet-14") == ""


def test_set_runs_a_row_with_other_settings_beside_its_defaults_and_val_size_holds_images_out(
    gains, tmp_path, cifar_folder, monkeypatch
) -> None:
    """``--set "Hinton KD" temperature=1`` builds the module with T = 1 and records it under its own name; the
    default row joins the same file later, without retraining the baseline; ``--val-size`` adds held-out accuracies.
    """
    temperatures = []

    class RecordingKD(gains.HintonKD):
        def __init__(self, *args, **kwargs) -> None:
            super().__init__(*args, **kwargs)
            temperatures.append(self.temperature)

    monkeypatch.setattr(gains, "HintonKD", RecordingKD)
    held_out = ("--val-size", "10")
    first = run(gains, monkeypatch, cifar_folder, tmp_path, *held_out, "--set", "Hinton KD", "temperature=1")
    assert temperatures == [1, 1]  # both seeds
    for seed in ("0", "1"):
        assert set(first["results"][seed]) == {"vanilla ResNet-8", "Hinton KD [temperature=1]"}
        assert all(0 <= row["val_acc"] <= 1 for row in first["results"][seed].values())
    baseline = first["results"]["0"]["vanilla ResNet-8"]
    second = run(gains, monkeypatch, cifar_folder, tmp_path, *held_out)
    assert temperatures == [1, 1, 4, 4]  # the module's default, T = 4
    assert set(second["results"]["0"]) == {"vanilla ResNet-8", "Hinton KD", "Hinton KD [temperature=1]"}
    assert second["results"]["0"]["vanilla ResNet-8"] == baseline  # not retrained
    table = (tmp_path / "results" / "gains.md").read_text()
    assert "| Hinton KD [temperature=1] |" in table and "10 training images held out" in table


def test_set_refuses_rows_it_cannot_change_and_malformed_settings(gains) -> None:
    with pytest.raises(SystemExit, match="the row must be one of"):
        gains.parse_overrides([["DML", "temperature=1"]])
    with pytest.raises(SystemExit, match="KEY=VALUE"):
        gains.parse_overrides([["AT", "beta"]])
    assert gains.parse_overrides([["AT", "beta=100", "p=2.0"]]) == {"AT": {"beta": 100, "p": 2.0}}


def test_a_row_stopped_between_epochs_resumes_there_and_ends_as_an_unstopped_run(
    gains, tmp_path, cifar_folder, monkeypatch
) -> None:
    """A fit killed after its first epoch (its last.ckpt written, the row not yet recorded) continues from that epoch
    when the command is run again and ends with the weights the same row reaches unstopped, recording the step it
    resumed at and the first part's seconds; once recorded, the row's checkpoints are removed."""
    students = []

    class RecordingKD(gains.HintonKD):
        def __init__(self, *args, **kwargs) -> None:
            super().__init__(*args, **kwargs)
            students.append(self.student)

    monkeypatch.setattr(gains, "HintonKD", RecordingKD)
    budget = ("--epochs", "3", "--seeds", "0", "--rows", "Hinton KD")
    unstopped = run(gains, monkeypatch, cifar_folder, tmp_path, *budget)["results"]["0"]["Hinton KD"]
    unstopped_weights = students[-1].state_dict()
    (tmp_path / "out" / "gains.partial.json").unlink()

    class Killed(RuntimeError):
        pass

    class KilledAtSecondEpoch(gains.TrainingClock):
        state_key = "TrainingClock"  # its state is the plain clock's, for the resumed run to read

        def on_train_epoch_start(self, trainer, module) -> None:
            if trainer.current_epoch == 1:
                raise Killed

    clock = gains.TrainingClock
    monkeypatch.setattr(gains, "TrainingClock", KilledAtSecondEpoch)
    with pytest.raises(Killed):
        run(gains, monkeypatch, cifar_folder, tmp_path, *budget)
    (kept,) = (tmp_path / "out" / "resume").glob("gains-*/seed 0/Hinton KD (method)/last.ckpt")
    checkpoint = torch.load(kept, weights_only=False)
    assert checkpoint["epoch"] == 0 and checkpoint["callbacks"]["TrainingClock"]["seconds"] > 0
    checkpoint["callbacks"]["TrainingClock"]["seconds"] = 1000.0  # a first part the second cannot be mistaken for
    torch.save(checkpoint, kept)
    monkeypatch.setattr(gains, "TrainingClock", clock)
    resumed = run(gains, monkeypatch, cifar_folder, tmp_path, *budget)["results"]["0"]["Hinton KD"]
    resumed_weights = students[-1].state_dict()
    assert all(torch.equal(unstopped_weights[k], resumed_weights[k]) for k in unstopped_weights)
    assert resumed["acc"] == unstopped["acc"]
    assert resumed["resumed_at_steps"] == {"Hinton KD (method)": 1} and "resumed_at_steps" not in unstopped
    assert 1000 < resumed["seconds"] < 1000 + unstopped["seconds"] + 60  # the first part's seconds, then the second's
    assert list((tmp_path / "out" / "resume").iterdir()) == []  # nor its empty seed and settings folders


def test_a_table_takes_rows_of_its_own_teacher_only(gains, tmp_path, cifar_folder, monkeypatch) -> None:
    """A table continued with a teacher whose weights hash otherwise (re-made on another CPU, a checkpoint still being
    written) stops before any training; a teacher replaced while a row trains leaves that row unrecorded. Rows the
    adapted teacher does not teach (the vanilla baselines, the born-again and online rows) carry no hash and run
    beside any teacher."""
    run(gains, monkeypatch, cifar_folder, tmp_path, "--seeds", "0", "--rows", "vanilla ResNet-8", "Hinton KD")
    partial = tmp_path / "out" / "gains.partial.json"
    before = partial.read_text()
    assert "teacher_weights" not in json.loads(before)["results"]["0"]["vanilla ResNet-8"]
    taught_by = json.loads(before)["results"]["0"]["Hinton KD"]["teacher_weights"]

    def other_teacher(self, name: str = "cifar10_resnet56") -> torch.nn.Module:
        with torch.random.fork_rng():
            torch.manual_seed(1)
            return create_model("resnet14", 10)

    fit = gains.Runner.fit
    monkeypatch.setattr(gains.Runner, "teacher", other_teacher)
    monkeypatch.setattr(gains.Runner, "fit", lambda *args, **kwargs: pytest.fail("trained beside another teacher"))
    with pytest.raises(SystemExit, match=f"were taught by {taught_by}: re-make"):
        run(gains, monkeypatch, cifar_folder, tmp_path, "--seeds", "1", "--rows", "vanilla ResNet-8", "Hinton KD")
    assert partial.read_text() == before
    monkeypatch.setattr(gains.Runner, "fit", fit)  # a teacher-free row beside that teacher: run, and no hash
    free = run(gains, monkeypatch, cifar_folder, tmp_path, "--seeds", "1", "--rows", "vanilla ResNet-8")["results"]
    assert set(free["1"]) == {"vanilla ResNet-8"} and "teacher_weights" not in free["1"]["vanilla ResNet-8"]
    partial.write_text(before)

    class TeacherReplacedWhileTraining(gains.TrainingClock):
        def on_train_end(self, trainer, module) -> None:
            monkeypatch.setattr(gains.Runner, "teacher", other_teacher)

    monkeypatch.setattr(gains.Runner, "fit", fit)
    monkeypatch.setattr(gains.Runner, "teacher", lambda self, name="cifar10_resnet56": fixed_teacher())
    monkeypatch.setattr(gains, "TrainingClock", TeacherReplacedWhileTraining)
    with pytest.raises(SystemExit, match="changed while the row ran .*not recorded"):
        run(gains, monkeypatch, cifar_folder, tmp_path, "--seeds", "1", "--rows", "Hinton KD")
    assert partial.read_text() == before


def test_a_table_on_another_teacher_copies_the_teacher_free_rows_and_trains_the_taught_ones(
    gains, tmp_path, cifar_folder, monkeypatch
) -> None:
    """A table started on another teacher (one every CPU can load) takes the first table's teacher-free rows as they
    are, without their old teacher hash, and trains its taught rows on its own teacher; a table at other settings gives
    none, and rows the new table has are kept."""
    run(gains, monkeypatch, cifar_folder, tmp_path, "--seeds", "0", "1", "--rows", "vanilla ResNet-8", "Hinton KD")
    first = tmp_path / "out" / "gains.partial.json"
    stored = json.loads(first.read_text())
    stored["results"]["0"]["vanilla ResNet-8"]["teacher_weights"] = "0123456789abcdef"  # recorded before the rule
    first.write_text(json.dumps(stored))
    second = tmp_path / "out" / "other.partial.json"
    second.write_text(
        json.dumps(
            {"settings": {**stored["settings"], "name": "other"}, "results": {"1": {"vanilla ResNet-8": {"acc": 0.5}}}}
        )
    )

    def other_teacher(self, name: str = "cifar10_resnet56") -> torch.nn.Module:
        with torch.random.fork_rng():
            torch.manual_seed(1)
            return create_model("resnet14", 10)

    with pytest.raises(SystemExit, match=r"other settings \(epochs differ\): no row carried"):
        run(
            gains,
            monkeypatch,
            cifar_folder,
            tmp_path,
            "--name",
            "other",
            "--epochs",
            "2",
            "--teacher-free-rows-from",
            "gains",
            "--summarize-only",
        )
    assert json.loads(second.read_text())["results"] == {"1": {"vanilla ResNet-8": {"acc": 0.5}}}
    monkeypatch.setattr(gains.Runner, "teacher", other_teacher)
    monkeypatch.setattr(gains.Runner, "vanilla", lambda *args, **kwargs: pytest.fail("a copied row trained again"))
    run(gains, monkeypatch, cifar_folder, tmp_path, "--name", "other", "--teacher-free-rows-from", "gains")
    results = json.loads(second.read_text())["results"]
    assert results["1"]["vanilla ResNet-8"] == {"acc": 0.5}  # the second table's own row
    copied = results["0"]["vanilla ResNet-8"]
    recorded = {
        key: value for key, value in stored["results"]["0"]["vanilla ResNet-8"].items() if key != "teacher_weights"
    }
    assert copied == {**recorded, "carried_from": "gains"}
    for seed in ("0", "1"):  # taught again, by the second teacher
        assert "carried_from" not in results[seed]["Hinton KD"]
        assert results[seed]["Hinton KD"]["teacher_weights"] != stored["results"][seed]["Hinton KD"]["teacher_weights"]
    summary = json.loads((tmp_path / "results" / "other.json").read_text())["rows"]
    assert [row["row"] for row in summary] == ["Hinton KD"]
    table = (tmp_path / "results" / "other.md").read_text()
    assert "| Hinton KD | 0, 1 |" in table.split("against the same seeds of `gains`")[1]
    monkeypatch.setattr(gains.Runner, "adapted_teacher", lambda self: pytest.fail("the summary read the teacher"))
    run(gains, monkeypatch, cifar_folder, tmp_path, "--name", "other", "--summarize-only")


def test_rows_saved_without_replacing_leave_the_files_own_rows_as_they_are(gains, tmp_path) -> None:
    """Copied rows are merged under the file's lock without replacing a row another process wrote meanwhile."""
    partial = tmp_path / "t.partial.json"
    gains.save_seed(partial, {"epochs": "60"}, "0", {"vanilla ResNet-8": {"acc": 0.69}})
    gains.save_seed(
        partial,
        {"epochs": "60"},
        "0",
        {"vanilla ResNet-8": {"acc": 0.5, "carried_from": "first"}, "DML": {"acc": 0.7, "carried_from": "first"}},
        replace=False,
    )
    assert json.loads(partial.read_text())["results"] == {
        "0": {"vanilla ResNet-8": {"acc": 0.69}, "DML": {"acc": 0.7, "carried_from": "first"}}
    }


def test_the_taught_rows_are_compared_seed_by_seed_with_the_table_of_the_other_teacher(gains) -> None:
    def table(vanilla, kd, teacher, **more):
        return {
            str(seed): {
                "vanilla ResNet-8": {"acc": vanilla[seed]},
                "Hinton KD": {"acc": kd[seed]},
                "DML": {"acc": 0.7, "networks": {"ResNet-8": 0.7, "ResNet-14": 0.72}},
                **({"teacher (adapted ResNet-56)": {"acc": teacher}} if teacher else {}),
                **{row: {"acc": accuracies[seed]} for row, accuracies in more.items() if seed < len(accuracies)},
            }
            for seed in range(3)
        }

    ablation, teacher_free_variant = "BSS [mining.max_samples=0]", "DML [peers=3]"
    ours = table(
        [0.69, 0.68, 0.70],
        [0.75, 0.74, 0.73],
        0.893,
        BSS=[0.72],
        **{ablation: [0.70, 0.69, 0.71], teacher_free_variant: [0.7, 0.7, 0.7]},
    )
    theirs = table(
        [0.69, 0.68, 0.70],
        [0.74, 0.74, 0.72],
        0.8929,
        BSS=[0.70, 0.71, 0.72],
        **{ablation: [0.70, 0.71, 0.70], teacher_free_variant: [0.7, 0.7, 0.7]},
    )
    text = gains.teacher_comparison(ours, theirs, "first")
    assert "(its teacher: 89.29%; this table's: 89.30%)" in text
    lines = [line for line in text.splitlines() if line.startswith("| ") and not line.startswith("| row")]
    # KD: +1, 0, +1 points: mean 0.67, s 0.577, t(2) 4.303 -> half-width 1.43; the claim KD > vanilla here: +6, +6,
    # +3 (mean 5, half-width 4.30), there: +5, +6, +2 (mean 4.33, s 2.08, half-width 5.17); BSS > KD here: -3 (seed
    # 0 alone), there: -4, -3, 0 (mean -2.33, s 2.08); the ablation (a --set row, no claim of its own): 0, -2, +1
    # points (mean -0.33, s 1.53, half-width 3.79)
    assert lines == [
        "| Hinton KD | 0, 1, 2 | 74.00 | 73.33 | +0.67 | [-0.77, +2.10] | yes (+5.00 [+0.70, +9.30]) | "
        "not shown (+4.33 [-0.84, +9.50]) |",
        "| BSS | 0 | 72.00 | 70.00 | +2.00 | - | -3.00 (1 seed) | not shown (-2.33 [-7.50, +2.84]) |",
        "| BSS [mining.max_samples=0] | 0, 1, 2 | 70.00 | 70.33 | -0.33 | [-4.13, +3.46] |  |  |",
    ]  # the teacher-free DML row, and its variant, are not compared
    assert gains.teacher_comparison(ours, {"5": theirs["0"]}, "first") == ""


def test_a_row_stopped_by_sigterm_exits_143_and_resumes_to_the_unstopped_result(
    gains, tmp_path, cifar_folder, monkeypatch
) -> None:
    """A real SIGTERM during a fit (a queue stopping the run, ``kill <pid>``) ends the command with status 143, as
    ``lit-kd fit`` does, not 0; ``last.ckpt`` holds the step reached and the same command then ends as the unstopped
    run."""
    budget = ("--epochs", "3", "--seeds", "0", "--rows", "Hinton KD")
    unstopped = run(gains, monkeypatch, cifar_folder, tmp_path, *budget)["results"]["0"]["Hinton KD"]
    (tmp_path / "out" / "gains.partial.json").unlink()

    class SigtermAtSecondStep(gains.TrainingClock):
        state_key = "TrainingClock"

        def on_train_batch_end(self, trainer, *args) -> None:
            if trainer.global_step == 2:
                os.kill(os.getpid(), signal.SIGTERM)

    clock = gains.TrainingClock
    monkeypatch.setattr(gains, "TrainingClock", SigtermAtSecondStep)
    common = sys.modules["common"]
    with pytest.raises(SystemExit) as stopped:
        common.run_stoppable(lambda: run(gains, monkeypatch, cifar_folder, tmp_path, *budget))
    assert stopped.value.code == 143
    (kept,) = (tmp_path / "out" / "resume").glob("gains-*/seed 0/Hinton KD (method)/last.ckpt")
    assert torch.load(kept, weights_only=False)["global_step"] == 2
    monkeypatch.setattr(gains, "TrainingClock", clock)
    resumed = run(gains, monkeypatch, cifar_folder, tmp_path, *budget)["results"]["0"]["Hinton KD"]
    assert resumed["acc"] == unstopped["acc"] and resumed["resumed_at_steps"] == {"Hinton KD (method)": 2}


def test_the_data_free_rows_own_budget_is_recorded_with_it_and_is_not_the_tables(
    gains, tmp_path, cifar_folder, monkeypatch
) -> None:
    """DFAD at a budget of its own joins a file of rows at the table's budget (the file is not set aside), records
    that budget and states it under the table; asking for the row at another budget stops rather than mixing."""
    run(gains, monkeypatch, cifar_folder, tmp_path, "--seeds", "0")
    dfad = ("--seeds", "0", "--rows", "DFAD (no real training image)", "--dfad-batch-size", "8")
    result = run(
        gains, monkeypatch, cifar_folder, tmp_path, *dfad, "--dfad-epochs", "1", "--dfad-batches-per-epoch", "2"
    )
    rows = result["results"]["0"]
    assert {"vanilla ResNet-8", "Hinton KD", "DFAD (no real training image)"} <= set(rows)
    budget = {"dfad_epochs": "1", "dfad_batches_per_epoch": "2", "dfad_batch_size": "8"}
    assert rows["DFAD (no real training image)"]["budget"] == budget
    assert "(DFAD: 1 data-free epochs of 2 steps)" in (tmp_path / "results" / "gains.md").read_text()
    with pytest.raises(SystemExit, match="is recorded at .*'dfad_epochs': '1'"):
        run(gains, monkeypatch, cifar_folder, tmp_path, *dfad, "--dfad-epochs", "3", "--dfad-batches-per-epoch", "2")


def test_a_later_self_distillation_run_retrains_its_parent_without_rewriting_the_baselines_record(
    gains, tmp_path, cifar_folder, monkeypatch
) -> None:
    """The born-again row run by a later process retrains the seed's vanilla ResNet-8 as its parent: the baseline row
    keeps the record its own run made, and the parent's accuracy is recorded with the row (the same, as the same
    seeded run)."""
    first = run(gains, monkeypatch, cifar_folder, tmp_path, "--seeds", "0", "--rows", "vanilla ResNet-8")
    baseline = first["results"]["0"]["vanilla ResNet-8"]
    born_again = ("--seeds", "0", "--rows", "self-distillation (born-again, 1 generation)")
    later = run(gains, monkeypatch, cifar_folder, tmp_path, *born_again)
    assert later["results"]["0"]["vanilla ResNet-8"] == baseline
    row = later["results"]["0"]["self-distillation (born-again, 1 generation)"]
    assert row["parent_acc"] == baseline["acc"]
    (summary,) = [r for r in later["rows"] if r["row"].startswith("self-distillation")]
    parent = f"parent (the seed's vanilla ResNet-8, retrained) {100 * baseline['acc']:.2f}%"
    assert summary["notes"] == f"{parent}, equal to the vanilla row in 1/1"


def test_the_born_again_student_starts_from_its_own_initialisation_on_its_parents_batches(
    gains, tmp_path, cifar_folder, monkeypatch
) -> None:
    """The born-again student is initialised with seed + 1 (as ``lit-kd born-again`` seeds generation 1), not with
    its parent's initial weights, and trains on its parent's batches (the seed's subset, order and augmentation)."""
    seen: dict[str, dict] = {}

    def watched(cls):
        class Watched(cls):
            def on_train_batch_start(self, batch, batch_idx):
                if self.global_step == 0:
                    weights = {k: v.clone() for k, v in self.student.state_dict().items()}
                    seen[cls.__name__] = {"init": weights, "batch": [t.clone() for t in tree_leaves(batch)]}
                return super().on_train_batch_start(batch, batch_idx)

        return Watched

    monkeypatch.setattr(gains, "SupervisedModule", watched(gains.SupervisedModule))
    monkeypatch.setattr(gains, "SelfDistillation", watched(gains.SelfDistillation))
    rows = ("vanilla ResNet-8", gains.SELF_DISTILLATION)
    result = run(gains, monkeypatch, cifar_folder, tmp_path, "--seeds", "0", "--rows", *rows)["results"]["0"]
    assert result[gains.SELF_DISTILLATION]["student_init_seed"] == 1
    parent, student = seen["SupervisedModule"], seen["SelfDistillation"]
    pl.seed_everything(1, verbose=False)
    expected = create_model("resnet8", num_classes=10).state_dict()
    assert all(torch.equal(student["init"][k], expected[k]) for k in expected)
    assert not torch.equal(student["init"]["stem.0.weight"], parent["init"]["stem.0.weight"])
    assert all(torch.equal(a, b) for a, b in zip(student["batch"], parent["batch"], strict=True))


def test_the_born_again_row_is_paired_with_the_parent_it_distilled(gains) -> None:
    """A parent retrained on another CPU ISA ends elsewhere than the seed's vanilla row: the born-again gain and its
    claim pair the student with the parent it was distilled from (``parent_acc``); a row recorded before that field
    existed was distilled from the vanilla row itself. The ablation row (rows recorded when the student started from
    its parent's initial weights) is paired with its own parents, and is in the table, not among the ``--set`` rows."""
    sd = "self-distillation (born-again, 1 generation)"
    results = {
        "0": {"vanilla ResNet-8": {"acc": 0.6935}, sd: {"acc": 0.6985, "parent_acc": 0.6935, "seconds": 1.0}},
        "1": {"vanilla ResNet-8": {"acc": 0.6812}, sd: {"acc": 0.6777, "parent_acc": 0.6777, "seconds": 1.0}},
        "2": {"vanilla ResNet-8": {"acc": 0.6951}, sd: {"acc": 0.7001, "seconds": 1.0}},
    }
    results["0"][gains.SELF_DISTILLATION_SAME_INIT] = {"acc": 0.6900, "parent_acc": 0.6850, "seconds": 1.0}
    results["1"][gains.SELF_DISTILLATION_SAME_INIT] = {"acc": 0.6800, "parent_acc": 0.6770, "seconds": 1.0}
    row, ablation = [r for r in gains.summary(results) if r["row"].startswith("self-distillation")]
    # the ablation (the student initialised as its parent) is paired with its own parents: +0.50, +0.30
    assert (ablation["baseline %"], ablation["gain (points)"], ablation["seeds"]) == ("68.10 ± 0.57", "+0.40", 2)
    assert ablation["paper's claim"] == "" and gains.SELF_DISTILLATION_SAME_INIT not in gains.variants_table(results)
    # by hand: parents 69.35, 67.77, 69.51 (the vanilla row); differences +0.50, 0.00, +0.50
    assert row["baseline %"] == "68.88 ± 0.96"  # mean 68.8767, sample std 0.9617
    assert row["gain (points)"] == "+0.33"
    half = 4.303 * 0.288675 / 3**0.5  # Student's t (2 degrees of freedom), the differences' std
    assert row["95% interval"] == f"[{1 / 3 - half:+.2f}, {1 / 3 + half:+.2f}]" == "[-0.38, +1.05]"
    assert row["this table agrees"] == "not shown (+0.33 [-0.38, +1.05])"


def test_a_row_recorded_under_another_name_counts_as_done(gains, tmp_path) -> None:
    """The cGAN-KD row is recorded as its two results: a second run must find it done, at its own budget only."""
    args = gains.argparse.Namespace(overrides={}, gan_steps=1000, gan_channels=32, gan_per_label=1000)
    args.gan_max_per_label = 500
    runner = gains.Runner(args, 0)
    assert not gains.done(runner, "cGAN-KD (10% labels)", {})
    budget = {"gan_steps": "1000", "gan_channels": "32", "gan_per_label": "1000", "gan_max_per_label": "500"}
    runner.results = {"cGAN-KD, 10% labels, real + synthetic": {"acc": 0.5, "budget": budget}}
    assert gains.done(runner, "cGAN-KD (10% labels)", {})
    runner.results["cGAN-KD, 10% labels, real + synthetic"]["budget"] = {**budget, "gan_steps": "4000"}
    with pytest.raises(SystemExit, match="'gan_steps': '4000'"):
        gains.done(runner, "cGAN-KD (10% labels)", {})
    # a row from before budgets were recorded is read at its file's settings
    del runner.results["cGAN-KD, 10% labels, real + synthetic"]["budget"]
    assert gains.done(runner, "cGAN-KD (10% labels)", {**budget, "subset": "5000"})


def test_the_cgan_row_runs_end_to_end_once(gains, tmp_path, cifar_folder, monkeypatch) -> None:
    """The cGAN-KD row (GAN, filter, KD on real and on real + synthetic) records both results with its budget; run
    again, it is found done and nothing is retrained."""
    gan = ("--gan-steps", "4", "--gan-per-label", "5", "--gan-max-per-label", "5", "--gan-channels", "8")
    (tmp_path / "temporary").mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "temporary"))
    result = run(gains, monkeypatch, cifar_folder, tmp_path, "--seeds", "0", "--rows", "cGAN-KD (10% labels)", *gan)
    rows = result["results"]["0"]
    assert rows["cGAN-KD, 10% labels, real + synthetic"]["budget"]["gan_steps"] == "4"
    per_class = rows["cGAN-KD, 10% labels, real + synthetic"]["synthetic_per_class"]
    assert sorted(per_class, key=int) == [str(c) for c in range(10)] and max(per_class.values()) <= 5
    assert sum(per_class.values()) == rows["cGAN-KD, 10% labels, real + synthetic"]["synthetic_images"]
    assert list((tmp_path / "temporary").iterdir()) == []  # the synthetic set lived only as long as its fit
    note = gains.notes(result["results"], ["0"], "cGAN-KD, 10% labels, real + synthetic")
    assert f"{min(per_class.values())} to {max(per_class.values())} a class" in note
    # a seed whose cGAN-KD row is not done yet (the other rows of a seed land first) leaves the note as it is
    assert gains.notes({**result["results"], "1": {}}, ["0", "1"], "cGAN-KD, 10% labels, real + synthetic") == note
    assert rows["KD, 10% labels, real only"]["budget"] == rows["cGAN-KD, 10% labels, real + synthetic"]["budget"]
    partial = tmp_path / "out" / "gains.partial.json"
    before = partial.read_text()
    run(gains, monkeypatch, cifar_folder, tmp_path, "--seeds", "0", "--rows", "cGAN-KD (10% labels)", *gan)
    assert partial.read_text() == before


def test_set_reaches_the_bss_mining_callback(gains, tmp_path, cifar_folder, monkeypatch) -> None:
    """``--set BSS mining.max_samples=0``: the row's BoundarySampleMining gets it (the module does not), recorded as
    its own row."""
    built = []

    class RecordingMining(gains.BoundarySampleMining):
        def __init__(self, **kwargs) -> None:
            super().__init__(**kwargs)
            built.append(self.max_samples)

    monkeypatch.setattr(gains, "BoundarySampleMining", RecordingMining)
    result = run(
        gains,
        monkeypatch,
        cifar_folder,
        tmp_path,
        "--seeds",
        "0",
        "--rows",
        "BSS",
        "--set",
        "BSS",
        "mining.max_samples=0",
    )
    assert built == [0] and "BSS [mining.max_samples=0]" in result["results"]["0"]


def test_a_seed_saved_at_other_settings_sets_the_old_table_aside_and_a_failed_write_keeps_the_file(
    gains, tmp_path, monkeypatch
) -> None:
    """Results are never lost: rows of one seed written by processes side by side are all kept, another table's
    seeds are moved aside whole, and a write cut short (a stop, a full disk) leaves the previous file as it was."""
    partial = tmp_path / "t.partial.json"
    gains.save_seed(partial, {"epochs": "60"}, "0", {"KD": {"acc": 0.7}})
    gains.save_seed(partial, {"epochs": "60"}, "1", {"KD": {"acc": 0.6}})
    # two processes of seed 0 that read the file before either wrote (a sweep run side by side)
    gains.save_seed(partial, {"epochs": "60"}, "0", {"KD": {"acc": 0.7}, "DIST [kd_weight=1]": {"acc": 0.72}})
    gains.save_seed(partial, {"epochs": "60"}, "0", {"KD": {"acc": 0.7}, "DIST [kd_weight=4]": {"acc": 0.67}})
    stored = json.loads(partial.read_text())["results"]
    assert set(stored) == {"0", "1"} and set(stored["0"]) == {"KD", "DIST [kd_weight=1]", "DIST [kd_weight=4]"}
    before = partial.read_text()

    gains.save_seed(partial, {"epochs": "30"}, "2", {"KD": {"acc": 0.5}})
    assert json.loads(partial.read_text()) == {"settings": {"epochs": "30"}, "results": {"2": {"KD": {"acc": 0.5}}}}
    (aside,) = tmp_path.glob("t.partial.*.json")
    assert aside.read_text() == before
    # the same table on another machine: its data and its teacher's weights in other files (the hash guards those)
    paths = {"data_dir": "/elsewhere", "teacher_checkpoint": "teacher.pt", "weights_dir": "w", "cache_dir": "c"}
    before = partial.read_text()
    gains.save_seed(partial, {"epochs": "30", **paths}, "0", {"KD": {"acc": 0.4}})
    assert set(json.loads(partial.read_text())["results"]) == {"0", "2"}
    assert list(tmp_path.glob("t.partial.*.json")) == [aside]
    partial.write_text(before)

    before = partial.read_text()
    real_write = Path.write_text

    def cut_short(self: Path, text: str, *args, **kwargs) -> int:
        real_write(self, text[:10], *args, **kwargs)
        raise OSError("no space left on device")

    monkeypatch.setattr(Path, "write_text", cut_short)
    with pytest.raises(OSError, match="no space"):
        gains.save_seed(partial, {"epochs": "30"}, "0", {"KD": {"acc": 0.4}})
    monkeypatch.undo()
    assert partial.read_text() == before
    assert sorted(path.name for path in tmp_path.iterdir()) == sorted([partial.name, aside.name, "t.partial.lock"])


def test_the_ensemble_row_memoises_its_own_teachers_and_trains_as_without_the_memo(
    gains, tmp_path, cifar_folder, monkeypatch
) -> None:
    """The ensemble row's memo is its own file (not the adapted teacher's); a run that reads it ends as one that
    recomputes the members (``--no-teacher-memo``)."""
    row = ("--seeds", "0", "--rows", "ensemble distillation")
    first = run(gains, monkeypatch, cifar_folder, tmp_path, *row)["results"]["0"]["ensemble distillation"]
    out = tmp_path / "out"
    assert [path.name for path in out.glob("*.safetensors")] == [
        "teacher_memo_cifar10_resnet20_32_44_56_ensemble.safetensors"
    ]
    (out / "gains.partial.json").unlink()  # the same seed again: every view it draws is in the memo now
    again = run(gains, monkeypatch, cifar_folder, tmp_path, *row)["results"]["0"]["ensemble distillation"]
    uncached = tmp_path / "uncached"
    unmemoised = run(
        gains,
        monkeypatch,
        cifar_folder,
        tmp_path,
        *row,
        "--no-teacher-memo",
        "--output-dir",
        str(uncached),
        "--partial-dir",
        str(uncached),
    )["results"]["0"]["ensemble distillation"]
    assert not list(uncached.glob("*.safetensors"))
    assert first["acc"] == again["acc"] == unmemoised["acc"]
    assert first["ensemble_acc"] == unmemoised["ensemble_acc"]
