"""Scores against the noise ceiling (toy_models.scores) and the stratified calibration cells of a sweep."""

from __future__ import annotations

import math

import numpy as np
import pytest

from zipfhead.theory.distributions import ClassificationTask
from zipfhead.toy_models.model import ModelConfig
from zipfhead.toy_models.scores import noise_ceiling, score_predictions, spearman
from zipfhead.toy_models.sweep import SweepConfig
from zipfhead.toy_models.train import TrainConfig


def test_spearman_averages_tied_ranks():
    """x = (1, 2, 2, 3) has ranks (1, 2.5, 2.5, 4); against y = (1, 2, 3, 4) the Pearson correlation of the ranks
    is 4.5 / sqrt(4.5 * 5) = sqrt(0.9) by hand. Breaking the tie either way would give 1.0 or 0.8 instead."""
    assert spearman(np.array([1, 2, 2, 3.0]), np.array([1, 2, 3, 4.0])) == pytest.approx(math.sqrt(0.9), rel=1e-12)
    assert math.isnan(spearman(np.array([1.0, 2.0]), np.array([1.0, 2.0])))  # fewer than 3 pairs
    assert math.isnan(spearman(np.array([1.0, 1.0, 1.0]), np.array([1.0, 2.0, 3.0])))  # a constant side


def _synthetic(n: int, S: int, noise: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    truth = np.geomspace(300, 3000, n)
    return truth, truth[:, None] * np.exp(noise * rng.normal(size=(n, S)))


def test_noise_ceiling_follows_the_seed_noise():
    """Seeds that scatter by 2% around steps spread over 10x rank the cells almost alike (ceiling > 0.98, median
    relative difference ~ 2% x sqrt(2) x 0.67 ~ 0.02, inside [0.005, 0.06]); seeds that are pure noise do not
    (|ceiling| < 0.5 on 20 cells: a Spearman of independent ranks has SD 1 / sqrt(19) ~ 0.23). Each bootstrap
    interval contains its point value."""
    _, quiet = _synthetic(20, 3, 0.02)
    c = noise_ceiling(quiet)
    assert c["spearman_value"] > 0.98 and c["cells"] == 20
    assert 0.005 < c["median_relative_difference_value"] < 0.06
    for key in ("spearman", "median_relative_difference"):
        assert c[key]["lo"] <= c[f"{key}_value"] <= c[key]["hi"]
    rng = np.random.default_rng(1)
    loud = 1000 * np.exp(rng.normal(size=(20, 2)))
    assert abs(noise_ceiling(loud)["spearman_value"]) < 0.5
    assert math.isnan(noise_ceiling(quiet[:, :1])["spearman"]["median"])


def test_a_perfect_predictor_reaches_the_ceiling_and_unformed_predictions_are_not_scored():
    """With the truth as prediction, the seed-mean Spearman is at least the seed-vs-seed ceiling (the mean of two
    seeds is closer to the truth than one seed is to another). A prediction whose phase says the head did not form
    is left out of the ranking, however good its step, and costs phase agreement instead."""
    truth, measured = _synthetic(16, 2, 0.15, seed=4)
    phases = [["icl", "icl"] for _ in truth]
    held = list(range(16))
    perfect = score_predictions(held, measured, phases, list(truth), ["icl"] * 16)
    assert perfect["spearman_seed_means"]["value"] >= perfect["noise_ceiling"]["spearman_value"]
    assert perfect["phase_agreement_percent"]["median"] == 100.0
    assert perfect["spearman_seed_means"]["cells"] == 16
    unformed = ["iwl"] * 4 + ["icl"] * 12
    part = score_predictions(held, measured, phases, list(truth), unformed)
    assert part["spearman_seed_means"]["cells"] == 12
    assert part["pairs_per_seed"] == [12, 12]
    assert part["phase_agreement_percent"]["median"] == 75.0
    reversed_ = score_predictions(held, measured, phases, list(truth[::-1]), ["icl"] * 16)
    assert reversed_["spearman_seed_means"]["value"] < -0.8


def test_a_cell_missing_a_seed_is_not_ranked():
    """Cells where a seed made no transition are scored per seed but not ranked (the mean would mix seeds)."""
    truth, measured = _synthetic(8, 2, 0.05)
    measured[0, 1] = np.nan
    phases = [["icl", "icl"] for _ in truth]
    phases[0][1] = "iwl"
    res = score_predictions(list(range(8)), measured, phases, list(truth), ["icl"] * 8)
    assert res["ranked_cells"] == 7 and res["noise_ceiling"]["cells"] == 7
    assert res["pairs_per_seed"] == [8, 7]


def _sweep(**kw) -> SweepConfig:
    task = ClassificationTask(K=512, N=8, D=16, L=16, B=2, p_B=1.0, alpha=0.0)
    model = ModelConfig(n_ctx=17, d_vocab=32, d_vocab_out=16)
    axes = (("K", (64, 128, 256, 512, 1024, 2048, 4096, 8192)), ("p_B", (0.5, 0.75, 1.0)))
    return SweepConfig("t", task, model, TrainConfig(steps=10), axes, **kw)


def test_stratified_calibration_cells_cover_the_axes_and_the_transitions():
    """24 cells, transitions only at K >= 512 (15 cells): 6 calibration cells, at least ceil(0.6 x 6) = 4 of them
    transitioning and at least one not; both ends of K and every p_B among them; the choice is deterministic."""
    cfg = _sweep()
    made = np.array([k >= 512 for k in (64, 128, 256, 512, 1024, 2048, 4096, 8192) for _ in range(3)])
    cells = cfg.calibration_cells(made)
    assert len(cells) == 6 and cells == cfg.calibration_cells(made)
    assert made[cells].sum() >= 4 and (~made[cells]).sum() >= 1
    chosen = [cfg.cells()[c] for c in cells]
    assert {c["p_B"] for c in chosen} == {0.5, 0.75, 1.0}
    assert min(c["K"] for c in chosen) <= 128 and max(c["K"] for c in chosen) == 8192
    with pytest.raises(ValueError, match="one flag per cell"):
        cfg.calibration_cells(made[:5])
    with pytest.raises(ValueError, match="calibration = 'half'"):
        _sweep(calibration="half")
