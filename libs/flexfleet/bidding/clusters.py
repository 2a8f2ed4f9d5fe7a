"""Group similar vehicles so the optimiser's size does not grow with the fleet.

Cars are first split by what must never be mixed: the grid node (where a node limit or a local
order makes it matter), whether the pair can discharge at all, chemistry (wear price) and
whether an OEM cap applies. Inside each group, k-means on the cars' hourly P90-credit profile
(what each can back, hour by hour and direction) puts cars that are there at the same times
together. The number of clusters is bounded; each group gets a share by its size.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

PROJECTED_DIMS = 8
KMEANS_SAMPLE = 4000
KMEANS_ROUNDS = 10


def cluster_vehicles(group_keys: list[tuple], profile: np.ndarray, active: np.ndarray, max_clusters: int,
                     seed: int = 0) -> np.ndarray:
    """Cluster label per vehicle (0..C-1), -1 for vehicles that can back nothing.

    At least one cluster per group even if that exceeds `max_clusters` (groups never mix)."""
    labels = np.full(len(group_keys), -1)
    if not active.any():
        return labels
    group = pd.factorize(pd.Series([group_keys[i] for i in np.flatnonzero(active)], dtype=object))[0]
    x = _project(profile[active], seed)
    sizes = np.bincount(group)
    quota = np.maximum(1, np.floor(max_clusters * sizes / sizes.sum())).astype(int)
    inner = np.zeros(len(group), dtype=int)
    offset = 0
    rng = np.random.default_rng(seed)
    for g in range(len(sizes)):
        members = np.flatnonzero(group == g)
        k = min(quota[g], len(members))
        inner[members] = _kmeans(x[members], k, rng) + offset
        offset += k
    labels[active] = pd.factorize(inner, sort=True)[0]     # drop clusters k-means left empty
    return labels


def _project(x: np.ndarray, seed: int) -> np.ndarray:
    """Scale each column to [0, 1] and keep the main directions (PCA on a sample)."""
    x = x / np.maximum(x.max(axis=0, keepdims=True), 1e-9)
    if x.shape[1] <= PROJECTED_DIMS or len(x) <= 2 * PROJECTED_DIMS:
        return x
    rng = np.random.default_rng(seed)
    sample = x[rng.choice(len(x), min(len(x), KMEANS_SAMPLE), replace=False)]
    mean = sample.mean(axis=0)
    _, vectors = np.linalg.eigh(np.cov(sample - mean, rowvar=False))   # ascending eigenvalues
    return (x - mean) @ vectors[:, ::-1][:, :PROJECTED_DIMS]


def _kmeans(x: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """Labels 0..k-1: k-means++ seeding and Lloyd rounds on a sample, then every point to its
    nearest centre (cost linear in the number of points)."""
    if k <= 1:
        return np.zeros(len(x), dtype=int)
    sample = x[rng.choice(len(x), min(len(x), max(KMEANS_SAMPLE, 4 * k)), replace=False)]
    centres = [sample[rng.integers(len(sample))]]
    d2 = ((sample - centres[0]) ** 2).sum(axis=1)
    for _ in range(1, k):
        if d2.sum() <= 0:
            break
        centres.append(sample[rng.choice(len(sample), p=d2 / d2.sum())])
        d2 = np.minimum(d2, ((sample - centres[-1]) ** 2).sum(axis=1))
    c = np.array(centres)
    for _ in range(KMEANS_ROUNDS):
        near = _nearest(sample, c)
        counts = np.bincount(near, minlength=len(c))
        sums = np.zeros_like(c)
        np.add.at(sums, near, sample)
        c = np.where(counts[:, None] > 0, sums / np.maximum(counts, 1)[:, None], c)
    return _nearest(x, c)


def _nearest(x: np.ndarray, centres: np.ndarray, chunk: int = 20_000) -> np.ndarray:
    out = np.empty(len(x), dtype=int)
    cc = (centres ** 2).sum(axis=1)
    for start in range(0, len(x), chunk):
        part = x[start:start + chunk]
        out[start:start + chunk] = np.argmin(cc[None, :] - 2 * part @ centres.T, axis=1)
    return out
