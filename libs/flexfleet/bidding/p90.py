"""P90 of a bundle under the forecast's correlated portfolio model, and its linear part for the optimiser.

The forecast's model (`flexfleet.forecast.portfolio`): car i is plugged in when
sqrt(rho) F + sqrt(1 - rho) e_i < Phi^-1(p_i), F shared by the fleet. Given F the cars are
independent, so a bundle's kW is a mixture over F of sums of independent two-point variables.

For the optimiser: the bundle's low quantile is reached when F is high, and given F the
expected kW is additive over cars. So the P90 of a bundle is close to sum_i kw_i pi_i with
pi_i = P(plugged | F = F's 90 % point): a linear "credit" per car. What it leaves out is the
cars' own randomness given F, which a haircut per product and MTU puts back; every bundle the
optimiser returns is then checked with the full model and cut to what it supports.

The full model: the forecast's normal mixture (`portfolio_quantiles`), and for bundles of up to
`EXACT_MAX_VEHICLES` cars also the exact two-point sum given F, because with a handful of cars
the normal shape can promise volume that is not there. The bundle's P90 is the lower of the two.
"""

from __future__ import annotations

import numpy as np
from scipy.special import ndtr, ndtri

from flexfleet.forecast.portfolio import FACTOR_NODES, FACTOR_WEIGHTS, Calibration, portfolio_cdf, portfolio_quantiles

EXACT_MAX_VEHICLES = 64
_EXACT_BINS = 20_000       # kW grid of the exact sum: fine enough, bounded cost
_P_CLIP = 1e-6             # as the portfolio model does


def p90_level(calibration: Calibration, confidence: float) -> float:
    """The level to ask the model for so that the volume is there with `confidence`: the
    calibration's recalibrated level for the nominal 1 - confidence (interpolated if needed)."""
    nominal = 1.0 - confidence
    levels, model = np.asarray(calibration.levels), np.asarray(calibration.model_levels)
    order = np.argsort(levels)
    return float(np.interp(nominal, levels[order], model[order]))


def conditional_probability(p: np.ndarray, rho: float, factor: float | np.ndarray) -> np.ndarray:
    """P(plugged in | F = factor) for each car."""
    z = ndtri(np.clip(p, _P_CLIP, 1 - _P_CLIP))
    return ndtr((z - np.sqrt(rho) * np.asarray(factor)) / np.sqrt(1 - rho))


def credit_factor(p: np.ndarray, rho: float, level: float) -> np.ndarray:
    """pi: each car's share of its kW that counts towards the bundle's quantile at `level`
    (its plug-in probability at the fleet factor's 1 - level point); 0 where p is 0."""
    pi = conditional_probability(p, rho, ndtri(1.0 - level))
    return np.where(p > 0, pi, 0.0)


def _exact_survival(p: np.ndarray, kw: np.ndarray, rho: float) -> tuple[np.ndarray, float]:
    """P(bundle >= b * step) for each bin b, exactly given F (kW rounded down to the grid)."""
    step = max(float(kw.sum()) / _EXACT_BINS, 1e-3)
    units = np.floor(kw / step + 1e-9).astype(int)
    pk = conditional_probability(p, rho, FACTOR_NODES[:, None])          # (nodes, cars)
    pmf = np.zeros((len(FACTOR_NODES), int(units.sum()) + 1))
    pmf[:, 0] = 1.0
    top = 0
    for i, u in enumerate(units):
        if u == 0:
            continue
        shifted = np.zeros_like(pmf[:, : top + u + 1])
        shifted[:, u:] = pmf[:, : top + 1]
        pmf[:, : top + u + 1] *= (1 - pk[:, i])[:, None]
        pmf[:, : top + u + 1] += shifted * pk[:, i][:, None]
        top += u
    mixed = FACTOR_WEIGHTS @ pmf
    survival = np.cumsum(mixed[::-1])[::-1]                           # P(S >= b)
    return np.minimum(survival, 1.0), step


def bundle_p90_kw(p: np.ndarray, kw: np.ndarray, rho: float, level: float) -> float:
    """kW the bundle holds with probability 1 - level (cars with probabilities p, obligations kw)."""
    p, kw = _clean(p, kw)
    if len(p) == 0:
        return 0.0
    mixture = float(portfolio_quantiles(p[:, None], kw[:, None], rho, (level,))[0, 0])
    if len(p) > EXACT_MAX_VEHICLES:
        return mixture
    survival, step = _exact_survival(p, kw, rho)
    ok = np.flatnonzero(survival >= 1.0 - level)
    return min(mixture, float(ok[-1] * step) if len(ok) else 0.0)


def shortfall_probability(p: np.ndarray, kw: np.ndarray, rho: float,
                          volume_kw: float | np.ndarray) -> float | np.ndarray:
    """Model probability that the plugged-in bundle holds less than `volume_kw` over the MTU
    (an array of volumes gives an array)."""
    p, kw = _clean(p, kw)
    y = np.atleast_1d(np.asarray(volume_kw, dtype=np.float64))
    if len(p) == 0:
        out = np.where(y > 0, 1.0, 0.0)
    else:
        out = portfolio_cdf(p[:, None], kw[:, None], rho, y)
        if len(p) <= EXACT_MAX_VEHICLES:
            survival, step = _exact_survival(p, kw, rho)
            b = np.ceil(y / step - 1e-9).astype(int)
            exact = 1.0 - np.where(b < len(survival), survival[np.minimum(b, len(survival) - 1)], 0.0)
            out = np.maximum(out, exact)
        out = np.where(y > 0, out, 0.0)
    return float(out[0]) if np.ndim(volume_kw) == 0 else out


def sampled_shortfall_rate(p_quarters: np.ndarray, kw: np.ndarray, rho: float, volume_kw: float,
                           samples: int = 2000, seed: int = 0) -> float:
    """Share of sampled MTUs in which the bundle falls short in at least one quarter: the
    sample-based, joint-over-the-MTU check of per-quarter P90s. p_quarters is (cars, quarters),
    kw (cars,) or (cars, quarters); each car keeps one latent draw through the MTU."""
    rng = np.random.default_rng(seed)
    p_quarters = np.atleast_2d(np.asarray(p_quarters, dtype=np.float64))
    kw = np.broadcast_to(np.asarray(kw, dtype=np.float64).reshape(len(p_quarters), -1), p_quarters.shape)
    z = ndtri(np.clip(p_quarters, _P_CLIP, 1 - _P_CLIP))
    short = 0
    for chunk in np.array_split(np.arange(samples), max(1, samples // 250)):
        f = rng.standard_normal((len(chunk), 1, 1))
        e = rng.standard_normal((len(chunk), p_quarters.shape[0], 1))
        plugged = np.sqrt(rho) * f + np.sqrt(1 - rho) * e < z[None]
        held = (plugged * kw[None]).sum(axis=1).min(axis=1)
        short += int((held < volume_kw).sum())
    return short / samples


def _clean(p: np.ndarray, kw: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    p, kw = np.asarray(p, dtype=np.float64).ravel(), np.asarray(kw, dtype=np.float64).ravel()
    keep = (kw > 0) & (p > 0)
    return p[keep], kw[keep]
