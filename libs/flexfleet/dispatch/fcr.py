"""FCR response: the share of capacity the frequency asks for, the activations in an MTU, and how
each was answered against the product's time-domain requirement.

The Nordic TSOs test FCR-D with a frequency ramp to 49.0 Hz (51.0 Hz down) at 0.24 Hz/s: 7.5 s
after the ramp starts the activated power must be at least 86 % of the steady-state response,
and the energy over those 7.5 s at least 3.2 s times it; the steady state within -5 %/+20 %
(technical requirements v1.1, section 3.1.2; the numbers are catalogue data, `Product.response`).
A real disturbance is no test ramp: the frequency falls at its own pace and recovers as FCR
answers. The checks are therefore made against what the frequency asked for, so that they are
exactly the TSO's on the test ramp and a response that follows the frequency always passes:

- power: the response at each checkpoint against its share of the requirement then (FCR-D:
  response at 7.5 s >= 0.86 x required at 7.5 s);
- energy: the response energy over the first 7.5 s against the same fraction of the required
  energy that 3.2 s is of the test ramp's (an instant response to the test ramp has
  7.5 s - 1.67 s / 2 = 6.67 s x capacity: the bar is 48 % of what was asked);
- steady state: the mean response after the last checkpoint, while the activation lasts,
  against the mean requirement, at least 1 - 5 %; more than + 20 % is flagged, not charged.

Where a check fails, the share of capacity the response still proves is the TSO's capacity
reduction factor (section 3.1.2, "Reduced capacity"): the smallest of response / (0.86 x
required), energy / bar and sustained / 0.95, capped at 1. The response time reported is the
time until the response first reached the first checkpoint's share (86 %) of what was asked at
that checkpoint. Activations that never ask for `min_assessed_share` of capacity are too small to
tell from measurement error (power is accurate to 5 %) and are not assessed.

Everything is on a one-second grid (operational logs are 1 Hz); a sample holds until the next,
so the value "at 7.5 s" is the one of second 7.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from decimal import Decimal

import numpy as np

from flexfleet.markets.catalogue import (FrequencyActivation, ManualActivation, Product, ResponseRequirement)


def response_requirement(product: Product) -> ResponseRequirement | None:
    """The product's response requirement: the catalogue's, else one full-activation checkpoint
    derived from the activation's full_activation_s, else None (nothing to time)."""
    if product.response is not None:
        return product.response.value
    activation = product.activation.value
    full = getattr(activation, "full_activation_s", None)
    if isinstance(activation, (FrequencyActivation, ManualActivation)) and full is not None:
        return ResponseRequirement(checkpoints=((full, Decimal(1)),), steady_state_under=Decimal(0),
                                   steady_state_over=Decimal(1))
    return None


def band_hz(activation: FrequencyActivation) -> float:
    """Frequency change from no to full activation (FCR-D 0.4 Hz, FCR-N 0.1 Hz)."""
    (f0, s0), (f1, s1) = sorted(activation.points)[0], sorted(activation.points)[-1]
    return float(abs(f1 - f0) / abs(s1 - s0)) if s1 != s0 else 0.0


def required_share(activation: FrequencyActivation, hz: np.ndarray, direction: str, symmetric: bool) -> np.ndarray:
    """Share of capacity (0..1) asked for in `direction` at each frequency, by the product's curve.

    FCR-D curves are positive in the product's own direction; a symmetric product (FCR-N) is
    positive for up and negative for down. NaN frequency gives NaN."""
    pts = sorted(activation.points)
    raw = np.interp(hz, [float(f) for f, _ in pts], [float(s) for _, s in pts])
    raw = np.where(np.isnan(hz), np.nan, raw)
    if symmetric and direction == "down":
        raw = -raw
    return np.clip(raw, 0.0, 1.0)


@dataclass(frozen=True)
class ActivationWindow:
    """One activation on the grid: it starts at second `start` (share rises above 0), lasts until
    `end` (share back to 0, exclusive), and asks for at most `reference_share` of capacity by
    the last checkpoint."""

    start: int
    end: int
    reference_share: float
    assessed: bool


def find_activations(share: np.ndarray, share_before: float, n_mtu: int, horizon_s: float,
                     min_assessed_share: float) -> list[ActivationWindow]:
    """Activations that start inside the MTU (grid seconds 0..n_mtu-1). One already running at
    the MTU's start (share_before > 0) started in the previous MTU and is assessed there."""
    active = np.nan_to_num(share, nan=0.0) > 0
    prev = np.concatenate(([share_before > 0], active[:-1]))
    starts = np.flatnonzero(active & ~prev)
    starts = starts[starts < n_mtu]
    stops = np.flatnonzero(~active)
    out = []
    reach = int(math.floor(horizon_s)) + 1
    for s in starts:
        after = stops[stops > s]
        end = int(after[0]) if after.size else len(share)
        window = share[s:min(s + reach, len(share))]
        ref = float(np.nanmax(window)) if np.isfinite(window).any() else 0.0
        out.append(ActivationWindow(int(s), end, ref, ref >= min_assessed_share))
    return out


@dataclass(frozen=True)
class ResponseScores:
    """How each row (the pool, or one site) answered one activation; arrays of one value per row.

    reference_kw: required at the first checkpoint; power_kw: the response then; power_ratio:
    the response over its share of the requirement at the first checkpoint; energy_kws and
    energy_ratio: the response energy over energy_within_s and its ratio to the bar (NaN when the
    product sets none); steady_ratio: mean response / mean requirement after the last
    checkpoint (NaN if the activation ended before); response_time_s: seconds until the response
    first reached the first checkpoint's share of the reference (NaN: never); proven: the
    capacity share the response proves (0..1)."""

    reference_kw: np.ndarray
    power_kw: np.ndarray
    energy_kws: np.ndarray
    required_energy_kws: np.ndarray
    power_ratio: np.ndarray
    energy_ratio: np.ndarray
    steady_ratio: np.ndarray
    response_time_s: np.ndarray
    proven: np.ndarray
    over_delivery: np.ndarray


def ramp_energy_s(requirement: ResponseRequirement, band_hz: float) -> float | None:
    """Seconds x capacity an instant response gathers over energy_within_s of the TSO's test ramp
    (FCR-D: full activation after 0.4 Hz / 0.24 Hz/s = 1.67 s, so 7.5 - 0.83 = 6.67 s); None
    when the product sets no energy requirement. Without a ramp, the test is taken as a step."""
    if requirement.energy_within_s is None:
        return None
    w = float(requirement.energy_within_s)
    if requirement.test_ramp_hz_per_s is None or band_hz <= 0:
        return w
    full = band_hz / float(requirement.test_ramp_hz_per_s)
    return w - full / 2 if full <= w else w * w / (2 * full)


def _window_sum(values: np.ndarray, k: int, seconds: float) -> np.ndarray:
    """Integral over [k, k + seconds) of one-second steps (last axis), the last one in part."""
    whole = int(math.floor(seconds))
    out = values[..., k:k + whole].sum(axis=-1)
    if whole < seconds and k + whole < values.shape[-1]:
        out = out + (seconds - whole) * values[..., k + whole]
    return out


def score_activation(response_kw: np.ndarray, required_kw: np.ndarray, share: np.ndarray,
                     window: ActivationWindow, requirement: ResponseRequirement, band_hz: float,
                     min_assessed_share: float) -> ResponseScores:
    """Score one activation for every row of `response_kw` (rows x grid seconds) whose capacity
    is `required_kw` (one per row); `share` is the required share of capacity per grid second."""
    rows, n = response_kw.shape
    k = window.start
    safe = np.nan_to_num(share, nan=0.0)
    ratios, refs, values = [], [], []
    for seconds, need in requirement.checkpoints:
        j = k + int(math.floor(float(seconds)))
        asked = safe[j] if j < n else 0.0
        value = response_kw[:, j] if j < n else np.full(rows, np.nan)
        ref = required_kw * asked
        # A checkpoint the frequency has already left (under the assessed share) says nothing.
        ratio = value / (float(need) * ref) if asked >= min_assessed_share else np.full(rows, np.nan)
        ratios.append(ratio)
        refs.append(ref)
        values.append(value)
    ideal = ramp_energy_s(requirement, band_hz)
    if ideal is not None:
        w = float(requirement.energy_within_s)
        energy = _window_sum(response_kw, k, w)
        asked_energy = required_kw * float(_window_sum(safe, k, w))
        bar = float(requirement.min_energy_s) / ideal * asked_energy
        energy_ratio = energy / np.where(bar > 0, bar, np.nan)
    else:
        energy = bar = energy_ratio = np.full(rows, np.nan)
    last = k + int(math.ceil(float(requirement.checkpoints[-1][0])))
    span = np.arange(last, min(window.end, n))
    span = span[safe[span] >= min_assessed_share] if span.size else span
    if span.size:
        asked = required_kw * float(safe[span].sum())
        steady = response_kw[:, span].sum(axis=1) / np.where(asked > 0, asked, np.nan)
    else:
        steady = np.full(rows, np.nan)
    under = float(requirement.steady_state_under)
    candidates = np.vstack([*ratios, energy_ratio, steady / (1 - under)])
    candidates = np.where(np.isnan(candidates), np.inf, candidates)
    proven = candidates.min(axis=0)
    proven = np.clip(np.where(np.isfinite(proven), proven, 0.0), 0.0, 1.0)   # nothing measurable proves nothing
    first_share = float(requirement.checkpoints[0][1])
    # Time to 86 % of what was asked at 7.5 s; if the frequency was back by then, of the peak.
    timing_ref = refs[0] if np.isfinite(ratios[0]).any() else required_kw * window.reference_share
    stop = min(max(window.end, k + 1), n)
    reached = response_kw[:, k:stop] >= (first_share * timing_ref)[:, None] - 1e-9
    reached &= (timing_ref > 0)[:, None]
    response_time = np.where(reached.any(axis=1), np.argmax(reached, axis=1).astype(float), np.nan)
    over = steady > 1 + float(requirement.steady_state_over)
    return ResponseScores(refs[0], values[0], energy, np.broadcast_to(bar, (rows,)).astype(float), ratios[0],
                          energy_ratio, steady, response_time, proven, over)
