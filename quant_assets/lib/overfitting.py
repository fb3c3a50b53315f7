"""How much of a chosen backtest is selection luck: the deflated Sharpe ratio, the probability of
backtest overfitting, and Hansen's test for superior predictive ability.

* **Deflated Sharpe ratio** (Bailey and López de Prado 2014): the probability that the true
  Sharpe ratio of the chosen configuration is above ``SR0``, the Sharpe ratio the best of ``N``
  skill-less trials would show by luck, given the variance ``V`` of the trials' Sharpe ratios:
  ``SR0 = sqrt(V) ((1 - g) Zinv(1 - 1/N) + g Zinv(1 - 1/(N e)))`` (g the Euler-Mascheroni
  constant) and ``DSR = Z((SR - SR0) sqrt(T - 1) / sqrt(1 - g3 SR + (g4 - 1) / 4 SR^2))`` with
  ``SR`` per period (not annualised), ``T`` returns, ``g3`` their skewness and ``g4`` their raw
  kurtosis (3 for normal returns). 0.95 is the usual bar.
* **Probability of backtest overfitting** (Bailey, Borwein, López de Prado and Zhu 2017,
  combinatorially symmetric cross-validation): the rows of a (periods x configurations) P&L
  matrix are cut into ``S`` contiguous blocks; for each of the ``C(S, S/2)`` halves, the best
  configuration on the half (Sharpe ratio) is ranked among all configurations on the other
  half; PBO is the share of halves where it ranks at or below the median (logit <= 0).
  About 0.5 means the in-sample choice carries no information out of sample.
* **SPA** (Hansen 2005) from the ``arch`` package: the p-value of "no configuration beats the
  benchmark" (here: doing nothing), with a stationary bootstrap.
"""

from __future__ import annotations

import dataclasses
import itertools
import math

import numpy as np

EULER_GAMMA = 0.5772156649015329


def _stats():
    """``scipy.stats``, imported when first used: importing it takes about a second, and every
    run process and code-server load imports this module through the asset definitions."""
    from scipy import stats

    return stats


def expected_max_sharpe(n_trials: int, variance: float) -> float:
    """``SR0``: the expected maximum Sharpe ratio of ``n_trials`` independent skill-less trials
    whose Sharpe ratios have variance ``variance`` (per period, like the ratio it is compared to)."""
    if n_trials < 2:
        raise ValueError(f"the expected maximum needs at least 2 trials, got {n_trials}")
    if not variance >= 0:
        raise ValueError(f"the variance of the trials' Sharpe ratios must be >= 0, got {variance}")
    n = float(n_trials)
    bracket = (1 - EULER_GAMMA) * _stats().norm.ppf(1 - 1 / n) + EULER_GAMMA * _stats().norm.ppf(1 - 1 / (n * math.e))
    return math.sqrt(variance) * bracket


def probabilistic_sharpe(sharpe: float, benchmark: float, n_returns: int, skew: float = 0.0, kurtosis: float = 3.0) -> float:
    """``PSR(SR*)``: the probability that the true Sharpe ratio exceeds ``benchmark``, from ``n_returns``
    returns with per-period Sharpe ratio ``sharpe``, skewness ``skew`` and raw ``kurtosis``."""
    if n_returns < 2:
        return math.nan
    denom = 1 - skew * sharpe + (kurtosis - 1) / 4 * sharpe**2
    if not denom > 0:
        return math.nan
    return float(_stats().norm.cdf((sharpe - benchmark) * math.sqrt(n_returns - 1) / math.sqrt(denom)))


@dataclasses.dataclass(frozen=True)
class Deflated:
    dsr: float
    sharpe: float  # per period
    benchmark: float  # SR0
    trials: int
    trial_variance: float
    n_returns: int
    skew: float
    kurtosis: float

    def as_dict(self) -> dict:
        return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in dataclasses.asdict(self).items()}


def sharpe_moments(returns: np.ndarray) -> tuple[float, float, float]:
    """Per-period Sharpe ratio (sample standard deviation), skewness and raw kurtosis (population
    moments, as the paper uses them); nan where undefined."""
    r = np.asarray(returns, dtype=float)
    if r.size < 2:
        return math.nan, math.nan, math.nan
    sd = r.std(ddof=1)
    if not sd > 0:
        return math.nan, math.nan, math.nan
    sr = r.mean() / sd
    return float(sr), float(_stats().skew(r)), float(_stats().kurtosis(r, fisher=False))


def deflated_sharpe(returns: np.ndarray, n_trials: int, trial_variance: float) -> Deflated:
    """The deflated Sharpe ratio of one return series chosen among ``n_trials`` whose Sharpe
    ratios (same units: per period of ``returns``) have variance ``trial_variance``."""
    sr, g3, g4 = sharpe_moments(returns)
    sr0 = expected_max_sharpe(n_trials, trial_variance) if n_trials >= 2 else 0.0
    dsr = probabilistic_sharpe(sr, sr0, len(returns), g3, g4) if math.isfinite(sr) else math.nan
    return Deflated(dsr, sr, sr0, int(n_trials), float(trial_variance), int(len(returns)), g3, g4)


# --------------------------------------------------------------------------- PBO


@dataclasses.dataclass(frozen=True)
class PBO:
    pbo: float
    blocks: int
    combinations: int
    configurations: int
    periods: int
    logits: np.ndarray

    def as_dict(self) -> dict:
        return {
            "pbo": None if not math.isfinite(self.pbo) else self.pbo,
            "blocks": self.blocks,
            "combinations": self.combinations,
            "configurations": self.configurations,
            "periods": self.periods,
            "median_logit": float(np.median(self.logits)) if self.logits.size else None,
        }


def default_blocks(periods: int, most: int = 16) -> int:
    """``S``: ``most`` blocks, or fewer when there are too few periods for 2 in each (even, >= 2;
    0 when there are fewer than 4 periods)."""
    s = min(most, periods // 2)
    s -= s % 2
    return s if s >= 2 else 0


def _sharpe(sums: np.ndarray, squares: np.ndarray, counts: np.ndarray) -> np.ndarray:
    n = counts[:, None].astype(float)
    mean = sums / n
    var = (squares - n * mean**2) / np.maximum(n - 1, 1)
    sd = np.sqrt(np.maximum(var, 0))
    with np.errstate(divide="ignore", invalid="ignore"):
        out = np.where(sd > 1e-12 * np.maximum(np.abs(mean), 1e-300), mean / sd, np.sign(mean) * np.inf)
    out[mean == 0] = 0.0
    return out


METRICS = ("sharpe", "total")


def pbo_cscv(matrix: np.ndarray, blocks: int | None = None, chunk: int = 256, metric: str = "sharpe") -> PBO:
    """PBO of choosing the best column of ``matrix`` (periods x configurations, rows in time
    order and synchronous) by ``metric`` -- ``"sharpe"`` (mean / sample standard deviation of
    the half's rows) or ``"total"`` (their sum) -- by combinatorially symmetric cross-validation."""
    if metric not in METRICS:
        raise ValueError(f"metric must be one of {METRICS}, got {metric!r}")
    m = np.asarray(matrix, dtype=float)
    t, n = m.shape
    s = default_blocks(t) if blocks is None else int(blocks)
    if n < 2 or s < 2 or s % 2 or t < s:
        return PBO(math.nan, s, 0, n, t, np.empty(0))
    parts = np.array_split(np.arange(t), s)
    sums = np.stack([m[p].sum(axis=0) for p in parts])
    squares = np.stack([(m[p] ** 2).sum(axis=0) for p in parts])
    counts = np.array([len(p) for p in parts], dtype=float)
    combos = np.array(list(itertools.combinations(range(s), s // 2)))
    total_s, total_q, total_c = sums.sum(axis=0), squares.sum(axis=0), counts.sum()
    logits = np.empty(combos.shape[0])
    for a in range(0, combos.shape[0], chunk):
        pick = np.zeros((min(chunk, combos.shape[0] - a), s))
        np.put_along_axis(pick, combos[a : a + chunk], 1.0, axis=1)
        is_s, is_q, is_c = pick @ sums, pick @ squares, pick @ counts
        if metric == "sharpe":
            in_sample = _sharpe(is_s, is_q, is_c)
            out_sample = _sharpe(total_s - is_s, total_q - is_q, total_c - is_c)
        else:
            in_sample, out_sample = is_s, total_s - is_s
        best = np.argmax(in_sample, axis=1)  # ties: the first column
        chosen = out_sample[np.arange(best.size), best][:, None]
        below = (out_sample < chosen).sum(axis=1)
        equal = (out_sample == chosen).sum(axis=1)
        rank = below + (equal + 1) / 2.0  # 1..n, average rank for ties
        w = rank / (n + 1)
        logits[a : a + best.size] = np.log(w / (1 - w))
    return PBO(float((logits <= 0).mean()), s, int(combos.shape[0]), n, t, logits)


def pbo_reference(matrix: np.ndarray, blocks: int, metric: str = "sharpe") -> float:
    """The algorithm as written, one half at a time (a slow reference for tests)."""
    m = np.asarray(matrix, dtype=float)
    t, n = m.shape
    parts = np.array_split(np.arange(t), blocks)
    overfit = total = 0
    for combo in itertools.combinations(range(blocks), blocks // 2):
        rows_in = np.concatenate([parts[i] for i in combo])
        rows_out = np.concatenate([parts[i] for i in range(blocks) if i not in combo])

        def sr(rows):
            x = m[rows]
            if metric == "total":
                return x.sum(axis=0)
            out = []
            for j in range(n):
                col = x[:, j]
                sd = col.std(ddof=1)
                mu = col.mean()
                out.append(0.0 if mu == 0 else (mu / sd if sd > 1e-12 * abs(mu) else math.copysign(math.inf, mu)))
            return np.array(out)

        ins, outs = sr(rows_in), sr(rows_out)
        best = int(np.argmax(ins))
        rank = (outs < outs[best]).sum() + ((outs == outs[best]).sum() + 1) / 2.0
        w = rank / (n + 1)
        overfit += math.log(w / (1 - w)) <= 0
        total += 1
    return overfit / total


# --------------------------------------------------------------------------- SPA


def spa_pvalue(returns: np.ndarray, reps: int = 1000, block_size: int | None = None, seed: int = 0) -> dict:
    """Hansen's SPA test of "no configuration beats doing nothing" over a (periods x
    configurations) return matrix (``arch.bootstrap.SPA``, stationary bootstrap; losses are the
    negated returns, the benchmark's loss is 0). Returns the consistent, lower and upper p-values."""
    from arch.bootstrap import SPA

    r = np.asarray(returns, dtype=float)
    t = r.shape[0]
    if t < 4 or r.shape[1] < 1:
        return {"spa_pvalue": None, "spa_pvalue_lower": None, "spa_pvalue_upper": None, "periods": t}
    block = block_size or max(1, int(round(t ** (1 / 3))))
    spa = SPA(np.zeros(t), -r, reps=reps, block_size=block, bootstrap="stationary", seed=seed)
    spa.compute()
    p = spa.pvalues
    return {
        "spa_pvalue": float(p["consistent"]),
        "spa_pvalue_lower": float(p["lower"]),
        "spa_pvalue_upper": float(p["upper"]),
        "periods": t,
        "block_size": block,
        "reps": reps,
    }
