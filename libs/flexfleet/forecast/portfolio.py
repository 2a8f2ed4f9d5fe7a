"""Portfolio flexibility per MTU: the distribution of the sum over vehicles of (plugged in) x (kW).

Vehicles are not independent: a holiday, a cold snap or a football final moves everyone at
once. We model that with a one-factor Gaussian copula: vehicle i is plugged in when
sqrt(rho) F + sqrt(1 - rho) e_i < Phi^-1(p_i), with F common to the fleet. Given F the vehicles
are independent and their sum is close to normal (thousands of small terms), so the portfolio is
a mixture of normals over F, integrated by Gauss-Hermite quadrature. rho is fitted on held-out
history by pinball loss (rho = 0 is the independent sum, whose quantiles are far too narrow),
then the levels are recalibrated on the same held-out history (`Calibration`).

"P90" in the TSOs' sense is the volume available with at least 90 % probability: the 10 %
quantile of this distribution (`p90_volume`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.special import ndtr, ndtri

LEVELS = (0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95)
# The 10 % quantile is the P90 volume a bid may offer. Calibration on a few weeks has sampling
# error, so it is aimed at 8 %: offered volume is then there in about 92 % of MTUs, and stays
# above the required 90 % when the fleet behaves a little differently than in calibration.
P90_TARGET_LEVEL = 0.08
RHO_ORIGINS = 8
RHO_GRID = (0.0, 0.005, 0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3)
# Gauss-Hermite nodes and weights over the fleet factor F ~ N(0, 1): every mixture over F here
# and in the bidder's exact bundle check integrates on them.
FACTOR_NODES, FACTOR_WEIGHTS = np.polynomial.hermite_e.hermegauss(16)
FACTOR_WEIGHTS = FACTOR_WEIGHTS / FACTOR_WEIGHTS.sum()


@dataclass(frozen=True)
class Calibration:
    """How the portfolio model is tied to what happened: the fleet's correlation rho, and the
    level actually asked of the model for each nominal level (quantile recalibration: if the
    model's 10 % quantile was undershot only 4 % of the time on held-out days, ask it for a
    higher one)."""

    rho: float = 0.0
    levels: tuple[float, ...] = LEVELS        # nominal
    model_levels: tuple[float, ...] = LEVELS  # what to ask the mixture for

    def quantiles(self, p: np.ndarray, kw: np.ndarray) -> np.ndarray:
        return portfolio_quantiles(p, kw, self.rho, self.model_levels)


def _conditional_moments(p: np.ndarray, kw: np.ndarray, rho: float) -> tuple[np.ndarray, np.ndarray]:
    if not 0.0 <= rho < 1.0:
        raise ValueError("rho: must be in [0, 1)")
    p = np.clip(p, 1e-6, 1 - 1e-6)
    z = ndtri(p)
    mu = np.empty((len(FACTOR_NODES), p.shape[1]))
    var = np.empty_like(mu)
    for k, f in enumerate(FACTOR_NODES):
        pk = ndtr((z - np.sqrt(rho) * f) / np.sqrt(1 - rho))
        mu[k] = (kw * pk).sum(axis=0)
        var[k] = (kw * kw * pk * (1 - pk)).sum(axis=0)
    return mu, np.sqrt(np.maximum(var, 1e-9))


def portfolio_quantiles(p: np.ndarray, kw: np.ndarray, rho: float,
                        levels: tuple[float, ...] = LEVELS) -> np.ndarray:
    """Quantiles (MTUs, levels) of sum_i Bernoulli(p_i) kw_i per MTU; p and kw are (vehicles, MTUs)."""
    mu, sd = _conditional_moments(p, kw, rho)
    return _mixture_quantiles(mu, sd, np.asarray(levels))


def portfolio_cdf(p: np.ndarray, kw: np.ndarray, rho: float, y: np.ndarray) -> np.ndarray:
    """P(portfolio <= y) per MTU: where the realised value fell in the forecast distribution."""
    mu, sd = _conditional_moments(p, kw, rho)
    return FACTOR_WEIGHTS @ ndtr((y[None, :] - mu) / sd)


def _mixture_quantiles(mu: np.ndarray, sd: np.ndarray, levels: np.ndarray) -> np.ndarray:
    """Invert sum_k w_k Phi((x - mu_k) / sd_k) = level by bisection, for every MTU and level."""
    lo = np.broadcast_to((mu - 6 * sd).min(axis=0)[:, None], (mu.shape[1], len(levels))).copy()
    hi = np.broadcast_to((mu + 6 * sd).max(axis=0)[:, None], lo.shape).copy()
    for _ in range(32):  # the bracket is a few MW wide: 32 halvings reach well below 1 W
        mid = (lo + hi) / 2
        cdf = np.einsum("k,ktl->tl", FACTOR_WEIGHTS, ndtr((mid[None] - mu[:, :, None]) / sd[:, :, None]))
        below = cdf < levels[None, :]
        lo = np.where(below, mid, lo)
        hi = np.where(below, hi, mid)
    return np.maximum((lo + hi) / 2, 0.0)


def p90_volume(quantiles: np.ndarray, levels: tuple[float, ...] = LEVELS) -> np.ndarray:
    """The volume available with 90 % probability: the 10 % quantile."""
    return quantiles[:, list(levels).index(0.1)]


def pinball(y: np.ndarray, q: np.ndarray, levels: tuple[float, ...] = LEVELS) -> np.ndarray:
    """Mean pinball loss per level; y is (n,), q is (n, levels)."""
    a = np.asarray(levels)[None, :]
    d = y[:, None] - q
    return np.maximum(a * d, (a - 1) * d).mean(axis=0)


def calibrate(cases: list[tuple[np.ndarray, np.ndarray, np.ndarray]], levels: tuple[float, ...] = LEVELS,
              rho: float | None = None, rho_grid: tuple[float, ...] = RHO_GRID,
              rho_origins: int = RHO_ORIGINS) -> Calibration:
    """Fit on held-out (p, kw, realised) cases: rho by the lowest mean pinball loss over `rho_grid`
    on `rho_origins` of the cases (unless given), then each level by where the realised values fell (their PIT values) under
    that rho."""
    if rho is None:
        # rho is one number: eight origins (1,500 MTUs) pin it down, and the level calibration
        # on every case below corrects what a slightly wrong rho does to coverage.
        sample = cases[::max(1, len(cases) // rho_origins)]
        losses = [sum(pinball(y, portfolio_quantiles(p, kw, r, levels), levels).mean() for p, kw, y in sample)
                  for r in rho_grid]
        rho = rho_grid[int(np.argmin(losses))]
    pit = np.concatenate([portfolio_cdf(p, kw, rho, y) for p, kw, y in cases])
    targets = np.array([P90_TARGET_LEVEL if a == 0.1 else a for a in levels])
    model_levels = np.clip(np.quantile(pit, targets), 0.005, 0.995)
    return Calibration(rho, tuple(levels), tuple(float(x) for x in model_levels))
