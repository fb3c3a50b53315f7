"""A counter-based random generator for the numba kernels.

``uniform(seed, a, b, c)`` is a pure function of its four integers (a splitmix64 hash), so a
kernel draws the same number for the same (client, instrument, day, purpose) whatever the thread
that evaluates it and whatever else was drawn before: parallel loops stay deterministic and no
large arrays of pre-drawn numbers are needed.
"""

from __future__ import annotations

import numpy as np
from numba import njit

_GAMMA = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_S30 = np.uint64(30)
_S27 = np.uint64(27)
_S31 = np.uint64(31)
_S11 = np.uint64(11)
_INV53 = 1.0 / 9007199254740992.0  # 2**-53


@njit(cache=True, inline="always")
def _mix(x):
    x = (x ^ (x >> _S30)) * _M1
    x = (x ^ (x >> _S27)) * _M2
    return x ^ (x >> _S31)


@njit(cache=True, inline="always")
def hash4(seed, a, b, c):
    h = _mix(np.uint64(seed) + _GAMMA)
    h = _mix(h ^ (np.uint64(a) + _GAMMA))
    h = _mix(h ^ (np.uint64(b) + _GAMMA))
    return _mix(h ^ (np.uint64(c) + _GAMMA))


@njit(cache=True, inline="always")
def uniform(seed, a, b, c):
    """A float in [0, 1) determined by the four non-negative integers."""
    return np.float64(hash4(seed, a, b, c) >> _S11) * _INV53


@njit(cache=True, inline="always")
def randint(seed, a, b, c, lo, hi):
    """An integer in [lo, hi] (inclusive)."""
    return lo + np.int64(uniform(seed, a, b, c) * (hi - lo + 1))
