"""Deflated Sharpe ratio, PBO and SPA against published worked examples and slow references."""

import itertools
import math

import numpy as np
import pytest
from scipy import stats

from quant_assets.lib import overfitting as of

# Bailey and López de Prado (2014), pp. 9-10: 250 periods a year, SR 2.5 and V 1/2 annualised.
SR_DAY = 2.5 / math.sqrt(250)
V_DAY = 0.5 / 250


def test_expected_maximum_of_100_standard_normal_trials():
    assert of.expected_max_sharpe(100, 1.0) == pytest.approx(2.5306028932016846, abs=1e-12)
    assert of.expected_max_sharpe(100, V_DAY) == pytest.approx(0.11317200186513214, abs=1e-14)
    with pytest.raises(ValueError, match="at least 2"):
        of.expected_max_sharpe(1, 1.0)


@pytest.mark.parametrize(
    "trials, skew, kurt, want",
    [
        (100, -3.0, 10.0, 0.9003968344493903),
        (46, -3.0, 10.0, 0.9505017068755787),
        (88, 0.0, 3.0, 0.9504908166760139),
        (100, 0.0, 3.0, 0.9427705859565294),
    ],
)
def test_deflated_sharpe_paper_example(trials, skew, kurt, want):
    sr0 = of.expected_max_sharpe(trials, V_DAY)
    assert of.probabilistic_sharpe(SR_DAY, sr0, 1250, skew, kurt) == pytest.approx(want, abs=1e-12)


def test_deflated_sharpe_from_returns_uses_raw_kurtosis_and_sample_sd():
    rng = np.random.default_rng(1)
    r = rng.standard_t(5, 400) * 0.01 + 0.002
    d = of.deflated_sharpe(r, 500, 0.01)
    sr = r.mean() / r.std(ddof=1)
    g4 = float(np.mean((r - r.mean()) ** 4) / np.mean((r - r.mean()) ** 2) ** 2)
    assert d.sharpe == pytest.approx(sr, rel=1e-12) and d.kurtosis == pytest.approx(g4, rel=1e-12)
    z = (sr - of.expected_max_sharpe(500, 0.01)) * math.sqrt(399) / math.sqrt(1 - d.skew * sr + (g4 - 1) / 4 * sr**2)
    assert d.dsr == pytest.approx(stats.norm.cdf(z), abs=1e-14)
    # More trials: a higher bar, a lower DSR.
    assert of.deflated_sharpe(r, 5000, 0.01).dsr < d.dsr < of.deflated_sharpe(r, 5, 0.01).dsr
    assert math.isnan(of.deflated_sharpe(np.array([0.1]), 10, 0.01).dsr)


def test_pbo_counts_and_the_reference():
    assert math.comb(16, 8) == 12_870 and math.comb(12, 6) == 924
    rng = np.random.default_rng(7)
    m = rng.normal(0, 1, (48, 9))
    for blocks in (4, 6, 8):
        fast = of.pbo_cscv(m, blocks)
        assert fast.combinations == math.comb(blocks, blocks // 2)
        assert fast.pbo == pytest.approx(of.pbo_reference(m, blocks), abs=1e-15)
        by_total = of.pbo_cscv(m, blocks, metric="total")
        assert by_total.pbo == pytest.approx(of.pbo_reference(m, blocks, metric="total"), abs=1e-15)
    with pytest.raises(ValueError, match="metric"):
        of.pbo_cscv(m, 4, metric="calmar")


def test_pbo_on_constructed_cases():
    rng = np.random.default_rng(3)
    # A column that dominates on every block: never overfit.
    noise = rng.normal(0, 1, (160, 20))
    dominant = noise.copy()
    dominant[:, 4] = np.abs(noise[:, 4]) + 0.5
    assert of.pbo_cscv(dominant, 8).pbo == 0.0
    # Identical columns: the choice ranks at the median, a logit of 0, counted as overfit.
    same = np.repeat(rng.normal(0, 1, (64, 1)), 5, axis=1)
    assert of.pbo_cscv(same, 8).pbo == 1.0
    # Pure noise: about one half, over many worlds.
    values = [of.pbo_cscv(np.random.default_rng(s).normal(0, 1, (200, 50)), 10).pbo for s in range(20)]
    assert 0.35 < float(np.mean(values)) < 0.65
    # Too few periods: undefined, said so.
    tiny = of.pbo_cscv(rng.normal(0, 1, (3, 4)))
    assert math.isnan(tiny.pbo) and tiny.as_dict()["pbo"] is None
    assert of.default_blocks(40) == 16 and of.default_blocks(13) == 6 and of.default_blocks(3) == 0


def test_spa_finds_a_real_edge_and_not_noise():
    rng = np.random.default_rng(11)
    noise = rng.normal(0, 0.01, (500, 30))
    assert of.spa_pvalue(noise, seed=1)["spa_pvalue"] > 0.1
    edged = noise.copy()
    edged[:, 7] += 0.004
    assert of.spa_pvalue(edged, seed=1)["spa_pvalue"] < 0.01
    assert of.spa_pvalue(noise[:2])["spa_pvalue"] is None


def test_pbo_logit_matches_definition_on_a_tiny_matrix():
    # One block per half of a 4 x 3 matrix, worked by hand from the algorithm.
    m = np.array([[1.0, 0.0, 0.1], [0.9, 0.1, 0.2], [-1.0, 0.2, 0.3], [-0.8, 0.3, 0.31]])
    res = of.pbo_cscv(m, 2)
    # Half {0} (rows 0-1): column 0 is best in sample (Sharpe 13.4); out of sample (rows 2-3) its
    # Sharpe -6.4 ranks 1 of 3: w = 1/4.
    # Half {1} (rows 2-3): column 2 is best (43.1); out of sample (2.1 against 13.4 and 0.7) it ranks
    # 2 of 3: w = 1/2, a logit of exactly 0, which counts as overfit.
    assert res.combinations == 2
    assert res.logits.tolist() == pytest.approx([math.log(0.25 / 0.75), 0.0], abs=1e-15)
    assert res.pbo == 1.0
    assert list(itertools.combinations(range(2), 1)) == [(0,), (1,)]
