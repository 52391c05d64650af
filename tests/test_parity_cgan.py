"""benchmarks/parity_cgan.py's adapter against hand-written cGAN-KD filters: it finds equality, and a mismatch.

The references here are a few lines written in this test from the paper's definition of the filter (keep a sample if
the teacher's cross-entropy, or absolute error, is below its rho-quantile; relabel the rest with the teacher), not the
official code. They are saved at the official paths of a stand-in "checkout" whose scripts raise if run as a whole,
and the adapter executes the statements it finds there by name and line range, as it does with the official scripts.
"""

from __future__ import annotations

import importlib
import textwrap
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
import torch

from tests.support.paths import BENCHMARKS

pytestmark = pytest.mark.usefixtures("one_thread")

CLASSIFICATION_SOURCE = '''
raise RuntimeError("a script: only the lines the adapter picks may run")

if args.dre_precnn_transform:
    transform_precnn_train = "random crop and flip (not used by this filter)"
else:
    transform_precnn_train = None

if args.filter or args.adjust:

    def fn_filter_or_adjust(fake_images, fake_labels, filter_precnn_net=filter_precnn_net, CE_cutoff_point=1e30,
                            burnin_mode=False):
        """Keep the samples whose teacher cross-entropy is below the cutoff; relabel them by the teacher."""
        mean = torch.tensor(train_means).view(1, 3, 1, 1)
        std = torch.tensor(train_stds).view(1, 3, 1, 1)
        inputs = (torch.from_numpy(fake_images).float() / 255 - mean) / std
        with torch.no_grad():
            logits = filter_precnn_net(inputs)
        fake_CE_loss = F.cross_entropy(logits, torch.from_numpy(fake_labels), reduction="none").numpy()
        if burnin_mode:
            return np.quantile(fake_CE_loss, q=QUANTILE)
        indx_sel = np.where(fake_CE_loss < CE_cutoff_point)[0]
        return fake_images[indx_sel], logits.argmax(dim=1).numpy()[indx_sel]
'''

REGRESSION_SOURCE = """
raise RuntimeError("a script: only the lines the adapter picks may run")


def fn_norm_labels(labels):
    return labels / args.max_label


def fn_denorm_labels(labels):
    return labels * args.max_label


def fn_sampleGAN_given_label(nfake, given_label, netG=netG, net_y2h=net_embed_y2h, batch_size=100):
    z = torch.randn(nfake, args.gan_dim_g)
    y = torch.full((nfake, 1), float(given_label))
    with torch.no_grad():
        images = netG(z, net_y2h(y))
    return ((images + 1) * 127.5).round().type(torch.uint8).numpy(), np.full(nfake, float(given_label))


if os.path.isfile(fake_data_h5file_fullpath) and (args.filter or args.adjust):
    raise RuntimeError("the adapter runs the else branch")
else:
    target_labels_norm = fn_norm_labels(np.sort(np.unique(labels_train)))
    fake_images, fake_labels = [], []
    for label in target_labels_norm:
        images, labels = fn_sampleGAN_given_label(args.samp_nfake_per_label, label)
        fake_images.append(images)
        fake_labels.append(np.rint(fn_denorm_labels(labels)))
    fake_images, fake_labels = np.concatenate(fake_images), np.concatenate(fake_labels)

if args.filter or args.adjust:
    filter_precnn_net = torch.load(args.samp_filter_precnn_net_ckpt_path)
    inputs = (torch.from_numpy(fake_images).float() / 255 - 0.5) / 0.5
    with torch.no_grad():
        predictions = filter_precnn_net(inputs).view(-1).numpy().astype(np.float64)
    fake_labels_pred = fn_denorm_labels(np.clip(predictions, 0, 1))
    fake_mae_loss = np.abs(fn_denorm_labels(predictions) - fake_labels)
    WHOLE_YEARS
    mae_cutoff_point = np.quantile(fake_mae_loss, q=args.samp_filter_mae_percentile_threshold)
    indx_sel = np.where(fake_mae_loss < mae_cutoff_point)[0]
    if args.adjust:
        fake_labels = fake_labels_pred[indx_sel]
    raise RuntimeError("after the relabelling: not run")
"""
#: What the official UTKFace code does and the paper does not say: predictions in whole (truncated) years.
WHOLE_YEARS = """fake_labels_pred = np.floor(fake_labels_pred)
    fake_mae_loss = np.abs(fake_labels_pred - fake_labels)"""


@pytest.fixture(scope="module")
def parity_cgan() -> Iterator[ModuleType]:
    with pytest.MonkeyPatch.context() as patch:
        patch.syspath_prepend(str(BENCHMARKS))
        yield importlib.import_module("parity_cgan")


@pytest.fixture(scope="module")
def classification(parity_cgan: ModuleType):
    """A small problem and lit-kd's filter of it set as the paper's (rho = 0.7, no confidence floor or agreement)."""
    with torch.random.fork_rng():
        problem = parity_cgan.make_classification_problem(seed=0, per_label=16, teacher="resnet8")
        lit = parity_cgan.run_lit_kd(problem, min_confidence=0.0, require_agreement=False, keep_quantile=0.7)
    return problem, lit


@pytest.fixture(scope="module")
def regression_problem(parity_cgan: ModuleType):
    with torch.random.fork_rng():
        return parity_cgan.make_regression_problem(seed=0, max_age=20, per_label=5, calibration_per_age=3)


def classification_checkout(root: Path, quantile: str) -> Path:
    folder = root / "CIFAR-100" / "make_fake_datasets"
    folder.mkdir(parents=True)
    (folder / "main.py").write_text(textwrap.dedent(CLASSIFICATION_SOURCE).replace("QUANTILE", quantile))
    (folder / "utils.py").write_text('raise RuntimeError("not run")\n\n\nclass IMGs_dataset:\n    pass\n')
    return root


def regression_checkout(root: Path, whole_years: bool) -> Path:
    folder = root / "UTKFace"
    folder.mkdir(parents=True)
    source = textwrap.dedent(REGRESSION_SOURCE).replace("WHOLE_YEARS", WHOLE_YEARS if whole_years else "pass")
    (folder / "generate_synthetic_data.py").write_text(source)
    (folder / "utils.py").write_text('raise RuntimeError("not run")\n\n\nclass IMGs_dataset:\n    pass\n')
    return root


def filter_classification(parity_cgan: ModuleType, checkout: Path, classification) -> tuple[dict, dict]:
    problem, lit = classification
    images, labels = lit.images.numpy(), lit.labels.numpy().astype(np.int64)
    with torch.random.fork_rng():
        official = parity_cgan.official_filter_pooled(checkout, problem, images, labels, 0.7, augment=False)
    return official, parity_cgan.compare_filters(lit, official, labels, 0.7)


def test_the_adapter_finds_the_same_classification_filter_equal(parity_cgan, classification, tmp_path) -> None:
    checkout = classification_checkout(tmp_path, "args.samp_filter_ce_percentile_threshold")
    official, result = filter_classification(parity_cgan, checkout, classification)
    assert result["samples"] == 160
    assert 0 < result["kept_lit_kd"] < result["samples"]  # it kept some and dropped some
    assert result["kept_disagreements"] == 0 and result["target_mismatches"] == 0
    assert result["max_abs_score_diff"] < 1e-5
    assert abs(result["cutoff_lit_kd"] - result["cutoff_official"]) < 1e-5
    # the teacher relabelled some kept samples: the targets are the teacher's, not the conditioning labels
    _, lit = classification
    assert (lit.targets[lit.kept] != lit.labels.numpy()[lit.kept]).any()
    # the stand-in's filter body and transform block ran; its first line (raise) did not
    main = "CIFAR-100/make_fake_datasets/main.py"
    assert set(range(14, 24)) <= official["lines"][main] and 2 not in official["lines"][main]
    assert f"{main}:11-23 (def fn_filter_or_adjust)" in official["executed"]


def test_the_adapter_finds_another_threshold_different(parity_cgan, classification, tmp_path) -> None:
    checkout = classification_checkout(tmp_path, "0.5")
    _, result = filter_classification(parity_cgan, checkout, classification)
    assert result["kept_disagreements"] >= 0.1 * result["samples"]
    assert result["kept_by_official_only"] == 0 < result["kept_by_lit_kd_only"]
    assert result["cutoff_official"] < result["cutoff_lit_kd"] - 1e-3


def test_the_adapter_finds_the_same_regression_filter_equal(parity_cgan, regression_problem, tmp_path) -> None:
    checkout = regression_checkout(tmp_path, whole_years=False)
    with torch.random.fork_rng():
        results, lines, executed, skipped = parity_cgan.run_regression(checkout, regression_problem, 0.7)
    alike, generation = results["filter_set_alike"], results["generation"]
    assert alike["samples"] == 100 and 0 < alike["kept_lit_kd"] < 100
    assert alike["kept_disagreements"] == 0
    assert alike["max_abs_target_diff_years"] < 1e-4
    assert abs(alike["cutoff_lit_kd_years"] - alike["cutoff_official_years"]) < 1e-4
    # the latents reached the stand-in's sampler: the same images up to the generator's rounding
    assert generation["latents_drawn"] == 100 and generation["max_abs_pixel_diff"] <= 1
    assert generation["pixels_differing"] < 1e-3 * generation["pixels_compared"]
    # the statement loading a network was left out, and so was everything after the relabelling
    script = "UTKFace/generate_synthetic_data.py"
    assert any(entry.startswith(f"{script}:33 ") for entry in skipped)
    assert any(entry.startswith(f"{script}:44-44 ") for entry in skipped)
    assert 33 not in lines[script] and 44 not in lines[script] and 2 not in lines[script]
    assert {24, 27, 34, 38, 40, 41, 43} <= lines[script]


def test_the_adapter_finds_whole_years_different(parity_cgan, regression_problem, tmp_path) -> None:
    checkout = regression_checkout(tmp_path, whole_years=True)
    with torch.random.fork_rng():
        results, *_ = parity_cgan.run_regression(checkout, regression_problem, 0.7)
    alike = results["filter_set_alike"]
    assert alike["kept_disagreements"] > 0 and alike["kept_by_official_only"] == 0  # ties at a whole-year cutoff
    assert alike["max_abs_target_diff_years"] > 0.5 and alike["official_targets_equal_floor_of_lit_kd"]
    # ... and says why: lit-kd's own mask, given the whole-year predictions, keeps what the stand-in kept
    assert alike["lit_kd_mask_on_official_integer_errors_disagreements"] == 0


def test_latents_are_served_in_order_and_discarded_rows_given_back(parity_cgan) -> None:
    streams = {0: torch.arange(12.0).view(6, 2), 1: -torch.arange(12.0).view(6, 2)}
    feed = parity_cgan.LatentFeed(streams)

    def official(nfake, given_label, batch_size=4):  # draws whole batches, keeps the first nfake
        drawn = torch.cat([feed.randn(batch_size, 2) for _ in range(-(-nfake // batch_size))])
        return drawn[:nfake]

    sample = feed.sampler(official, int)
    assert sample(1, 0).tolist() == [[0.0, 1.0]]
    assert sample(2, 1).tolist() == [[-0.0, -1.0], [-2.0, -3.0]]
    assert sample(1, 0).tolist() == [[2.0, 3.0]]  # the 3 rows drawn past nfake were given back
    assert feed.log == [(0, 0, 1), (1, 0, 2), (0, 1, 2)]
    with pytest.raises(RuntimeError, match="more latents"):
        sample(5, 0)  # a batch of 4 past row 2 and another past row 6


def test_the_parity_table_shows_a_filter_row(parity_cgan) -> None:
    parity = importlib.import_module("parity")
    columns = ["official code that ran", "max abs weight diff", "float32 noise floor", "float64 weight diff"]
    columns += ["first loss lit-kd", "first loss official", "first-step grad diff", "defaults"]
    cells = dict.fromkeys(columns, "-") | {"max abs weight diff": "n/a; kept: 0/10 differ"}
    row = {"method": "filter", "status": "compared", "summary_cells": cells, "verdict": "match when set alike"}
    table = parity.summary_table([row, {"method": "DFAD", "status": "not in this pass"}])
    assert "| filter | - | n/a; kept: 0/10 differ | - | - | - | - | - | - | match when set alike |" in table
    assert table.splitlines()[-1].endswith("| not in this pass |")
    assert parity.verdict(row) == "match when set alike"
