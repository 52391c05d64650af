"""benchmarks/outcome_parity.py on tiny data: it pairs with gains.py's rows, resumes, and refuses other settings.

The "official" training loop here is a stand-in written in this test from the papers' definitions (Hinton et al.,
2015: ``T^2 KL(p_t || p_s)``; Romero et al., 2015: a regressor and a squared error on the hint maps), saved as the files
of a RepDistiller checkout (``helper/loops.py``, ``distiller_zoo/``, ``models/util.py``) and imported by path as the
benchmark imports the real one. No official code is used.
"""

from __future__ import annotations

import importlib
import json
import sys
import textwrap
import types
from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch

import lit_kd.data.base as data_base
from lit_kd.models import create_model
from lit_kd.runtime.memo import weights_hash
from tests.test_gains import gains  # noqa: F401 (the fixture)
from tests.test_gains import run as run_gains
from tests.test_parity_dfad import write_checkout as write_dfad_checkout

#: Stand-ins for the official code that outcome_parity drives once a batch (``loss_training``, ``bss_training``), in
#: the checkouts' layouts: DKD from its paper (Zhao et al., 2022, Eq. 1-7: TCKD on the binary target/non-target
#: split, NCKD on the non-target classes renormalised, both times T^2, the KD part scaled by min(epoch / warm-up, 1);
#: it records the epochs it is called with), KD + LS from its paper (Sun et al., 2024: KD at temperature T on
#: Z-scored logits, the standard deviation unbiased plus 1e-7 as logit-standardization-KD's
#: mdistiller/distillers/KD.py:7-10 computes it), DIST from its paper (Huang et al., 2022, Eq. 6-8: 1 - Pearson
#: correlation of the softened probabilities per sample and per class, times tau^2), BSS below. No official code is
#: used.
#: mdistiller's distiller base (mdistiller/distillers/_base.py), in both mdistiller-based stand-ins
DISTILLER_BASE = """
            from torch import nn


            class Distiller(nn.Module):
                def __init__(self, student, teacher):
                    super().__init__()
                    self.student, self.teacher = student, teacher

                def train(self, mode=True):
                    super().train(mode)
                    self.teacher.eval()
                    return self

                def get_learnable_parameters(self):
                    return list(self.student.parameters())

                def forward(self, **kwargs):
                    return self.forward_train(**kwargs)
        """
LOSS_STAND_INS = {
    "mdistiller": {
        "mdistiller/distillers/_base.py": DISTILLER_BASE,
        "mdistiller/distillers/DKD.py": """
            import torch
            import torch.nn.functional as F

            from ._base import Distiller

            EPOCHS = []


            def kl(p_teacher, p_student):
                return (p_teacher * (p_teacher.log() - p_student.log())).sum(dim=1).mean()


            class DKD(Distiller):
                def __init__(self, student, teacher, cfg):
                    super().__init__(student, teacher)
                    self.cfg = cfg.DKD

                def forward_train(self, image, target, epoch):
                    EPOCHS.append(epoch)
                    c, T = self.cfg, self.cfg.T
                    logits, _ = self.student(image)
                    with torch.no_grad():
                        teacher_logits, _ = self.teacher(image)
                    gt = F.one_hot(target, logits.shape[1]).bool()
                    p_s, p_t = (logits / T).softmax(dim=1), (teacher_logits / T).softmax(dim=1)
                    b_s = torch.stack([p_s[gt], 1 - p_s[gt]], dim=1)
                    b_t = torch.stack([p_t[gt], 1 - p_t[gt]], dim=1)
                    others = lambda z: (z[~gt].view(len(z), -1) / T).softmax(dim=1)
                    tckd, nckd = kl(b_t, b_s), kl(others(teacher_logits), others(logits))
                    kd = min(epoch / c.WARMUP, 1.0) * T**2 * (c.ALPHA * tckd + c.BETA * nckd)
                    return logits, {"ce": c.CE_WEIGHT * F.cross_entropy(logits, target), "kd": kd}
        """,
    },
    # BSS: the clean-sample loss of Heo et al. (2019, Eq. 6: cross-entropy plus r times the soft cross-entropy at
    # temperature T, summed over classes and averaged over the batch) under the official schedule of r and r_bss
    # (train_BSS_distillation.py:197-198, as lit_kd.callbacks.bss.bss_weights cites it), in the script's layout: a
    # function train_attack_KD reading the script's globals, and a `for epoch` loop setting ratio and attack_ratio.
    # At one epoch r_bss is 0, so no boundary sample is made; the stand-in refuses to attack.
    "BSS_distillation": {
        "train_BSS_distillation.py": """
            def train_attack_KD(t_net, s_net, ratio, ratio_attack, epoch):
                s_net.train()
                t_net.eval()
                for inputs, targets in trainloader:
                    optimizer.zero_grad()
                    out_s, out_t = s_net(inputs), t_net(inputs)
                    soft_t = F.softmax(out_t / temperature, 1).detach()
                    loss = criterion_CE(out_s, targets)
                    loss = loss - ratio * (soft_t * F.log_softmax(out_s / temperature, 1)).sum() / len(inputs)
                    if ratio_attack > 0:
                        raise NotImplementedError("the stand-in makes no boundary sample")
                    loss.backward()
                    optimizer.step()


            for epoch in range(1, max_epoch + 1):
                ratio = max(3 * (1 - epoch / max_epoch), 0) + 1
                attack_ratio = max(2 * (1 - 4 / 3 * epoch / max_epoch), 0) + 0
                train_attack_KD(t_net, s_net, ratio, attack_ratio, epoch)
        """,
        "attacks/attack_BSS.py": """
            class AttackBSS:
                def __init__(self, **settings):
                    self.settings = settings
        """,
    },
    "logit-standardization-KD": {
        "mdistiller/distillers/_base.py": DISTILLER_BASE,
        "mdistiller/distillers/KD.py": """
            import torch
            import torch.nn.functional as F

            from ._base import Distiller


            def z_score(logits):
                return (logits - logits.mean(dim=1, keepdim=True)) / (1e-7 + logits.std(dim=1, keepdim=True))


            class KD(Distiller):
                def __init__(self, student, teacher, cfg):
                    super().__init__(student, teacher)
                    self.cfg = cfg

                def forward_train(self, image, target, epoch):
                    T, weights = self.cfg.KD.TEMPERATURE, self.cfg.KD.LOSS
                    logits, _ = self.student(image)
                    with torch.no_grad():
                        teacher_logits, _ = self.teacher(image)
                    if self.cfg.EXPERIMENT.LOGIT_STAND:
                        logits_kd, teacher_kd = z_score(logits), z_score(teacher_logits)
                    else:
                        logits_kd, teacher_kd = logits, teacher_logits
                    p_t = (teacher_kd / T).softmax(dim=1)
                    kl = (p_t * (p_t.log() - (logits_kd / T).log_softmax(dim=1))).sum(dim=1).mean()
                    ce = F.cross_entropy(logits, target)
                    return logits, {"ce": weights.CE_WEIGHT * ce, "kd": weights.KD_WEIGHT * T**2 * kl}
        """,
    },
    "DIST_KD": {
        "classification/lib/models/losses/dist_kd.py": """
            def pearson(a, b):
                a, b = a - a.mean(dim=1, keepdim=True), b - b.mean(dim=1, keepdim=True)
                return (a * b).sum(dim=1) / (a.norm(dim=1) * b.norm(dim=1))


            def dist(z_s, z_t, tau):
                y_s, y_t = (z_s / tau).softmax(dim=1), (z_t / tau).softmax(dim=1)
                inter = 1 - pearson(y_s, y_t).mean()
                intra = 1 - pearson(y_s.T, y_t.T).mean()
                return tau**2 * (inter + intra)
        """,
        "classification/lib/models/losses/kd_loss.py": """
            import torch

            from .dist_kd import dist


            class KDLoss:
                def __init__(self, student, teacher, ori_loss, kd_method, ori_loss_weight, kd_loss_weight):
                    self.student, self.teacher, self.ori_loss = student, teacher.eval(), ori_loss
                    self.tau = float(kd_method.removeprefix("dist_t"))
                    self.weights = ori_loss_weight, kd_loss_weight

                def __call__(self, x, targets):
                    with torch.no_grad():
                        teacher_logits = self.teacher(x)
                    logits = self.student(x)
                    ori, kd = self.weights
                    return ori * self.ori_loss(logits, targets) + kd * dist(logits, teacher_logits, self.tau)
        """,
    },
}

STAND_IN = {
    "helper/loops.py": '''
        import torch


        def train_distill(epoch, train_loader, module_list, criterion_list, optimizer, opt):
            """gamma CE + alpha KD (+ beta hint loss on the regressed map), one optimiser step per batch."""
            for module in module_list:
                module.train()
            student, teacher = module_list[0], module_list[-1].eval()
            total = 0.0
            for images, targets, indices in train_loader:
                features, logits = student(images, is_feat=True)
                with torch.no_grad():
                    teacher_features, teacher_logits = teacher(images, is_feat=True)
                loss = opt.gamma * criterion_list[0](logits, targets)
                loss = loss + opt.alpha * criterion_list[1](logits, teacher_logits)
                if opt.distill == "hint":
                    hint = module_list[1](features[opt.hint_layer])
                    loss = loss + opt.beta * criterion_list[2](hint, teacher_features[opt.hint_layer])
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                total += float(loss)
            return 0.0, total / len(train_loader)
    ''',
    "distiller_zoo/KD.py": """
        import torch
        from torch import nn


        class DistillKL(nn.Module):
            def __init__(self, T):
                super().__init__()
                self.T = T

            def forward(self, student_logits, teacher_logits):
                log_p_student = torch.log_softmax(student_logits / self.T, dim=1)
                p_teacher = torch.softmax(teacher_logits / self.T, dim=1)
                return self.T**2 * (p_teacher * (torch.log(p_teacher) - log_p_student)).sum(dim=1).mean()
    """,
    "distiller_zoo/FitNet.py": """
        from torch import nn


        class HintLoss(nn.Module):
            def forward(self, student_map, teacher_map):
                return ((student_map - teacher_map) ** 2).mean()
    """,
    "models/util.py": """
        from torch import nn


        class ConvReg(nn.Module):
            def __init__(self, s_shape, t_shape):
                super().__init__()
                self.conv = nn.Conv2d(s_shape[1], t_shape[1], kernel_size=1)
                self.bn = nn.BatchNorm2d(t_shape[1])

            def forward(self, x):
                return self.bn(self.conv(x)).relu()
    """,
}
METHODS = ("Hinton KD", "FitNets")
METHOD_CLASSES = {"Hinton KD": "HintonKD", "FitNets": "FitNets"}  # their modules' names in gains.py


def recording(cls: type, built: list[torch.nn.Module]) -> type:
    """``cls``, keeping the student of every instance in ``built`` (lit-kd's methods: ``.student``; for
    SupervisedModule, the network it is given)."""

    class Recording(cls):
        def __init__(self, *args, **kwargs) -> None:
            super().__init__(*args, **kwargs)
            built.append(self.student)

    Recording.__name__ = cls.__name__
    return Recording


def recorded_students(gains, outcome, monkeypatch, classes) -> dict[str, list[torch.nn.Module]]:  # noqa: F811
    """The students trained by gains.py's rows of ``classes`` ("lit-kd") and tested by outcome_parity's official
    runs ("official"), each in the order the runs finish."""
    students: dict[str, list[torch.nn.Module]] = {"lit-kd": [], "official": []}
    for cls in classes:
        monkeypatch.setattr(gains, cls.__name__, recording(cls, students["lit-kd"]))
    monkeypatch.setattr(outcome, "SupervisedModule", recording(outcome.SupervisedModule, students["official"]))
    return students


def max_difference(a: torch.nn.Module, b: torch.nn.Module) -> float:
    """The largest absolute difference between two networks' same-named parameters and floating-point buffers."""
    tensors = b.state_dict()
    return max(float((v - tensors[k]).abs().max()) for k, v in a.state_dict().items() if v.is_floating_point())


@pytest.fixture
def outcome(gains):  # noqa: F811 (test_gains.py's fixture: benchmarks/ importable, results under tmp_path)
    """benchmarks/outcome_parity.py, beside gains.py as test_gains.py sets it up (a zoo teacher for the pretrained)."""
    return importlib.import_module("outcome_parity")


@pytest.fixture
def checkout(tmp_path: Path) -> Path:
    """A stand-in RepDistiller checkout holding the hand-written loop and criteria."""
    root = tmp_path / "RepDistiller"
    for relative, source in STAND_IN.items():
        (root / relative).parent.mkdir(parents=True, exist_ok=True)
        (root / relative).write_text(textwrap.dedent(source))
    return root


def run(
    outcome,
    monkeypatch,
    cifar_folder: Path,
    tmp_path: Path,
    checkout: Path,
    lit_kd: Path,
    *extra: str,
    references: tuple[str, ...] = (),
    methods: tuple[str, ...] = METHODS,
    seeds: tuple[str, ...] = ("0", "1"),
) -> dict:
    references = references or (f"RepDistiller={checkout}",)
    argv = ["outcome_parity.py", "--data-dir", str(cifar_folder), "--reference", *references]
    argv += ["--subset", "40", "--epochs", "1", "--seeds", *seeds, "--methods", *methods]
    argv += ["--lit-kd-results", str(lit_kd), "--partial-dir", str(tmp_path / "out"), "--cache-dir"]
    argv += [str(tmp_path / "cache"), *extra]
    monkeypatch.setattr(sys, "argv", argv)
    outcome.main()
    return json.loads((tmp_path / "results" / "outcome_parity.json").read_text())


def test_pairs_with_gains_rows_resumes_and_refuses_other_settings(
    outcome,
    gains,  # noqa: F811 (the fixture)
    tmp_path,
    cifar_folder,
    monkeypatch,
    checkout,
) -> None:
    students = recorded_students(gains, outcome, monkeypatch, [getattr(gains, METHOD_CLASSES[n]) for n in METHODS])
    lit_kd = run_gains(gains, monkeypatch, cifar_folder, tmp_path, "--rows", *METHODS)["results"]
    lit_file = tmp_path / "out" / "gains.partial.json"
    result = run(outcome, monkeypatch, cifar_folder, tmp_path, checkout, lit_file)
    # both sides ran (method, seed) in the same order; the same initial weights, batches and loss give the same step
    order = [(name, seed) for name in METHODS for seed in (0, 1)]
    for (name, seed), lit_student, official_student in zip(
        order, students["lit-kd"], students["official"], strict=True
    ):
        pl.seed_everything(seed, verbose=False)
        moved = max_difference(lit_student, create_model("resnet8", 10))  # from the initial weights
        # float32 rounding only (FitNets' hint weight of 100 amplifies it: benchmarks/results/parity.md)
        assert max_difference(lit_student, official_student) < 1e-2 * moved, (name, seed)
    runs = result["results"]
    for name in METHODS:
        (row,) = [r for r in result["rows"] if r["method"] == name]
        assert row["seeds paired"] == "0, 1" and row["not paired"] == "-"
        for seed in ("0", "1"):
            assert abs(runs[seed][name]["acc"] - lit_kd[seed][name]["acc"]) <= 1 / 40  # at most 1 test image
            assert runs[seed][name]["teacher_weights"] == lit_kd[seed][name]["teacher_weights"]
            pl.seed_everything(int(seed), verbose=False)
            assert runs[seed][name]["student_init"] == weights_hash(create_model("resnet8", 10))  # as gains.py's
        assert runs["0"][name]["subset_hash"] != runs["1"][name]["subset_hash"]  # each seed draws its own subset
        assert runs["0"][name]["subset_verified"]
        hint_lines = {18, 19} if name == "FitNets" else set()  # the stand-in loop's body ran, the hint for FitNets
        assert set(runs["0"][name]["official_lines"]["helper/loops.py"]) == set(range(7, 25)) - {18, 19} | hint_lines
    assert "models/util.py" in runs["0"]["FitNets"]["official_lines"]  # ConvReg built and run
    assert runs["0"]["FitNets"]["flags"] == {
        "distill": "hint",
        "gamma": 1.0,
        "alpha": 0.0,
        "beta": 100.0,
        "kd_T": 4.0,
        "hint_layer": 2,
    }
    differences = [100 * (lit_kd[s]["Hinton KD"]["acc"] - runs[s]["Hinton KD"]["acc"]) for s in ("0", "1")]
    (hinton,) = [r for r in result["rows"] if r["method"] == "Hinton KD"]
    assert hinton["lit-kd − official (points)"] == f"{sum(differences) / 2:+.2f}"
    assert (tmp_path / "results" / "outcome_parity.md").read_text().count("helper/loops.py") >= 2

    # a second call finds every run done and trains nothing
    partial = tmp_path / "out" / "outcome_parity.partial.json"
    before = partial.read_text()
    monkeypatch.setattr(outcome, "official_run", lambda *args: pytest.fail("a finished run was trained again"))
    run(outcome, monkeypatch, cifar_folder, tmp_path, checkout, lit_file)
    assert partial.read_text() == before

    # gains.py's results at another budget: refused before anything runs
    other = tmp_path / "other.partial.json"
    stored = json.loads(lit_file.read_text())
    other.write_text(json.dumps({**stored, "settings": {**stored["settings"], "epochs": "2"}}))
    with pytest.raises(SystemExit, match="epochs: 2 vs 1"):
        run(outcome, monkeypatch, cifar_folder, tmp_path, checkout, other)
    # another teacher for one seed's row: that seed is not paired
    stored["results"]["1"]["Hinton KD"]["teacher_weights"] = "0123456789abcdef"
    other.write_text(json.dumps(stored))
    result = run(outcome, monkeypatch, cifar_folder, tmp_path, checkout, other, "--summarize-only")
    (hinton,) = [r for r in result["rows"] if r["method"] == "Hinton KD"]
    assert hinton["seeds paired"] == "0" and hinton["95% interval"] == "-" and hinton["target met"] == "not measured"
    assert hinton["not paired"].startswith("seed 1: teacher differs: 0123456789abcdef vs ")


REFERENCES = {
    "BSS": "BSS_distillation",
    "DKD": "mdistiller",
    "DIST": "DIST_KD",
    "KD + LS": "logit-standardization-KD",
}


def test_official_per_batch_losses_train_the_student_lit_kd_trains(
    outcome,
    gains,  # noqa: F811 (the fixture)
    tmp_path,
    cifar_folder,
    monkeypatch,
    checkout,
) -> None:
    """BSS, DKD, DIST and KD + LS: BSS's official training function (once a batch, its schedule) and the official
    loss objects, called in outcome_parity's loop, train the same student from the same start and batches as
    gains.py's rows (to float32 rounding); DKD reads the epoch counted from 1."""
    roots = {}
    for name, files in LOSS_STAND_INS.items():
        roots[name] = tmp_path / name
        for relative, source in files.items():
            (roots[name] / relative).parent.mkdir(parents=True, exist_ok=True)
            (roots[name] / relative).write_text(textwrap.dedent(source))
    methods = ("BSS", "DKD", "DIST", "KD + LS")
    classes = (gains.BSSDistillation, gains.DecoupledKD, gains.DISTDistillation, gains.HintonKD)
    students = recorded_students(gains, outcome, monkeypatch, classes)
    run_gains(gains, monkeypatch, cifar_folder, tmp_path, "--rows", *methods, "--seeds", "0")
    lit_file = tmp_path / "out" / "gains.partial.json"
    references = tuple(f"{name}={root}" for name, root in roots.items())
    with pytest.raises(SystemExit, match="--reference mdistiller=DIR"):  # a method's checkout not named
        run(
            outcome, monkeypatch, cifar_folder, tmp_path, checkout, lit_file, references=references[1:], methods=methods
        )
    result = run(
        outcome,
        monkeypatch,
        cifar_folder,
        tmp_path,
        checkout,
        lit_file,
        references=references,
        methods=methods,
        seeds=("0",),
    )
    for name, lit_student, official_student in zip(methods, students["lit-kd"], students["official"], strict=True):
        pl.seed_everything(0, verbose=False)
        moved = max_difference(lit_student, create_model("resnet8", 10))
        # float32 rounding only (seen: 2e-4 of the step, DIST 1.1e-3: its correlations amplify rounding most,
        # benchmarks/results/parity.md)
        assert max_difference(lit_student, official_student) < (5e-3 if name == "DIST" else 1e-3) * moved, name
        run_record = result["results"]["0"][name]
        assert run_record["reference"] == REFERENCES[name]
        assert run_record["official_lines"], name  # the stand-in's loss code ran
    bss = result["results"]["0"]["BSS"]
    # the stand-in's function ran but for its refusal to attack, and the schedule's two lines
    assert set(bss["official_lines"]["train_BSS_distillation.py"]) == set(range(3, 15)) - {12} | {18, 19}
    assert bss["one_base_sample_batches"] == 0
    dkd = sys.modules[outcome.import_official(roots["mdistiller"], "mdistiller/distillers/DKD.py").__name__]
    assert set(dkd.EPOCHS) == {1}  # the one epoch, counted from 1 as mdistiller's trainer counts
    assert {row["method"]: row["seeds paired"] for row in result["rows"]} == dict.fromkeys(methods, "0")


def test_dfads_official_loop_trains_the_student_lit_kd_trains_and_pairs_on_its_own_budget(
    outcome,
    gains,  # noqa: F811 (the fixture)
    tmp_path,
    cifar_folder,
    monkeypatch,
    checkout,
) -> None:
    """DFAD's official ``train()`` (a stand-in from the paper, tests/test_parity_dfad.py), once per data-free epoch
    with the row's latent batches, trains the same student as gains.py's DFAD row from the same start (in float64:
    float32 rounding grows fast in DFAD's adversarial updates); it pairs with the row only at the row's own data-free
    budget."""
    root = write_dfad_checkout(tmp_path / "DFAD", "l1_loss")
    name, budget = "DFAD (no real training image)", ["--dfad-epochs", "2", "--dfad-batches-per-epoch", "12"]
    budget += ["--dfad-batch-size", "4"]
    students = recorded_students(gains, outcome, monkeypatch, [gains.DataFreeAdversarialDistillation])
    lit_file = tmp_path / "out" / "gains.partial.json"
    reference = (f"Data-Free-Adversarial-Distillation={root}",)
    common = dict(references=reference, methods=(name,), seeds=("0",))
    normalize = data_base.normalize  # the test images in the default dtype too
    monkeypatch.setattr(data_base, "normalize", lambda *args: normalize(*args).to(torch.get_default_dtype()))
    torch.set_default_dtype(torch.float64)  # DFAD amplifies float32 rounding fast (benchmarks/results/parity.md)
    try:
        run_gains(gains, monkeypatch, cifar_folder, tmp_path, "--rows", name, "--seeds", "0", *budget)
        result = run(outcome, monkeypatch, cifar_folder, tmp_path, checkout, lit_file, *budget, **common)
    finally:
        torch.set_default_dtype(torch.float32)
    lit_student, official_student = students["lit-kd"][0], students["official"][0]
    pl.seed_everything(0, verbose=False)
    moved = max_difference(lit_student, create_model("resnet8", 10))
    assert moved > 1e-3  # 24 updates moved the student
    assert max_difference(lit_student, official_student) < 1e-9 * moved  # float64: the same computation
    record = result["results"]["0"][name]
    assert record["official_lines"]["DFAD_cifar.py"] and record["flags"]["epoch_itrs"] == 2  # 12 / (5 + 1)
    assert len(record["train_loss_per_epoch"]) == 2
    assert [row["seeds paired"] for row in result["rows"]] == ["0"]
    report = (tmp_path / "results" / "outcome_parity.md").read_text()
    assert "its runs' own budget is 2 data-free epochs of 12 updates, batch 4" in report
    # the same official run against a row of another data-free budget: kept, not paired
    other = json.loads(lit_file.read_text())
    other["results"]["0"][name]["budget"]["dfad_epochs"] = "3"
    lit_file.write_text(json.dumps(other))
    rows = outcome.summary(json.loads((tmp_path / "out" / "outcome_parity.partial.json").read_text()), other)
    assert rows[0]["seeds paired"] == "-" and "budget differs" in rows[0]["not paired"]


#: A BSS script whose base samples are the samples labelled 0 (the official test of both networks being right is
#: beside the point here), reaching the official lines 113-114 (``attack_idx = attack_flag.nonzero().squeeze()``,
#: then ``attack_idx.shape[0]``) whenever ``ratio_attack > 0``; its loss is the cross-entropy alone. A batch with two
#: samples labelled 2 raises another IndexError there (a class index out of range).
ONE_BASE_SAMPLE_SCRIPT = """
    def train_attack_KD(t_net, s_net, ratio, ratio_attack, epoch):
        s_net.train()
        t_net.eval()
        for inputs, targets in trainloader:
            optimizer.zero_grad()
            out_s = s_net(inputs)
            loss = criterion_CE(out_s, targets)
            if ratio_attack > 0:
                attack_idx = (targets == 0).nonzero().squeeze()
                if attack_idx.shape[0] > attack_size:
                    attack_idx = attack_idx[:attack_size]
                out_s[:, 1 + int((targets == 2).sum())]
            loss.backward()
            optimizer.step()


    for epoch in range(1, max_epoch + 1):
        ratio = max(3 * (1 - epoch / max_epoch), 0) + 1
        attack_ratio = max(2 * (1 - 4 / 3 * epoch / max_epoch), 0) + 0
"""


class Batches(list):
    """Batches of ``(images, targets, indices)`` for one epoch, as outcome_parity's TrainingEpoch gives them."""

    epoch = 0


def test_bss_batches_with_exactly_one_base_sample_train_without_their_attack(outcome, tmp_path) -> None:
    """Where the official BSS code raises on a single base sample, outcome_parity's bss_training trains that batch as
    the official code does without the attack, from the BN statistics before the failed call, and counts it; any
    other IndexError still ends the run."""
    root = tmp_path / "BSS_distillation"
    (root / "attacks").mkdir(parents=True)
    (root / "train_BSS_distillation.py").write_text(textwrap.dedent(ONE_BASE_SAMPLE_SCRIPT))
    (root / "attacks/attack_BSS.py").write_text(
        textwrap.dedent(LOSS_STAND_INS["BSS_distillation"]["attacks/attack_BSS.py"])
    )
    generator = torch.Generator().manual_seed(0)
    images = torch.randn(2, 4, 4, 2, generator=generator)  # two batches of four samples
    one, two = torch.tensor([0, 1, 2, 1]), torch.tensor([0, 0, 1, 2])  # one base sample; two

    def student_after(epochs: int, batches: list) -> torch.nn.Module:
        torch.manual_seed(0)
        student = torch.nn.Sequential(torch.nn.BatchNorm1d(4), torch.nn.Flatten(), torch.nn.Linear(4 * 2, 3))
        module = types.SimpleNamespace(temperature=3.0, student=student)
        data = types.SimpleNamespace(mean=None, std=None)
        training = outcome.bss_training(root, None, module, torch.nn.Identity(), data, epochs)
        optimizer = torch.optim.SGD(student.parameters(), lr=0.1)
        training.epoch(Batches((images[i], targets, None) for i, targets in batches), optimizer)
        return student, training.counts["one_base_sample_batches"]

    # epoch 1 of 2 attacks (r_bss = 2/3): the batch of one base sample falls back, that of two does not
    attacked, count = student_after(2, [(0, one), (1, two)])
    assert count == 1
    # epoch 1 of 1 attacks nothing (r_bss = 0): the same steps, BN statistics included, as the fallback's
    clean, count = student_after(1, [(0, one), (1, two)])
    assert count == 0
    assert max_difference(attacked, clean) == 0
    with pytest.raises(IndexError):  # another IndexError of the official code is not taken for that case
        student_after(2, [(0, torch.tensor([0, 0, 2, 2]))])


class Stop(Exception):
    """Stands for the end of a session between two epochs."""


def test_a_run_stopped_between_epochs_resumes_there_and_ends_as_an_unstopped_run(
    outcome,
    gains,  # noqa: F811 (the fixture)
    tmp_path,
    cifar_folder,
    monkeypatch,
    checkout,
) -> None:
    students = []
    monkeypatch.setattr(outcome, "SupervisedModule", recording(outcome.SupervisedModule, students))
    # 3 epochs of one step each, stopped after the first: the second runs on the restored state, and the third on
    # the schedule's state as the second left it
    run_gains(gains, monkeypatch, cifar_folder, tmp_path, "--rows", "Hinton KD", "--seeds", "0", "--epochs", "3")
    lit_file = tmp_path / "out" / "gains.partial.json"

    def official(folder: str) -> dict:
        options = ("--epochs", "3", "--partial-dir", str(tmp_path / folder), "--output-dir", str(tmp_path / folder))
        result = run(
            outcome,
            monkeypatch,
            cifar_folder,
            tmp_path,
            checkout,
            lit_file,
            *options,
            seeds=("0",),
            methods=("Hinton KD",),
        )
        return result["results"]["0"]["Hinton KD"]

    students.clear()  # the official runs' students only
    unstopped = official("unstopped")
    save_state = outcome.save_state

    def save_then_stop(path, state):
        save_state(path, state)
        raise Stop

    monkeypatch.setattr(outcome, "save_state", save_then_stop)
    with pytest.raises(Stop):  # stopped after its first epoch
        official("stopped")
    (state,) = (tmp_path / "stopped" / "resume").rglob("Hinton KD.pt")
    monkeypatch.setattr(outcome, "save_state", save_state)
    resumed = official("stopped")
    assert len(students) == 2 and max_difference(students[1], students[0]) == 0  # the unstopped run's last weights
    assert resumed["acc"] == unstopped["acc"] and resumed["train_loss_per_epoch"] == unstopped["train_loss_per_epoch"]
    assert resumed["resumed_at_epoch"] == 1 and unstopped["resumed_at_epoch"] is None
    assert resumed["official_lines"] == unstopped["official_lines"]  # the first epoch's trace, kept with the state
    assert not state.exists()  # removed once the run is recorded
