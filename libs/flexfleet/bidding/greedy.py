"""Plans without a solver, on the cluster model.

`solve`: the fallback when HiGHS runs out of time. Bids are filled in order of expected margin
per MW; each takes the cheapest clusters first, as much of each as every row of the model still
allows, and is kept only if it reaches the product's minimum. Feasible by construction.

`top_up`: after a solve, capacity no bid uses is added to the bundles as spare backing. The
optimiser backs each volume with just enough P90; spare cars lower the chance of falling short
(and the expected penalty) at no cost, since activation energy, and so wear, follows the volume.
"""

from __future__ import annotations

import numpy as np

from flexfleet.bidding.cluster_model import Allocation, ClusterModel, objective_value


class _Room:
    """What the model's rows still allow each cluster, as shares are taken."""

    def __init__(self, model: ClusterModel, share: np.ndarray | None = None) -> None:
        self.model = model
        share = np.zeros(model.shape) if share is None else share
        d = model.direction
        self.load = model.node_load()
        self.energy_left = np.stack([1 - share[:, d == k].sum(axis=1) for k in range(2)], axis=2)   # (C, T, 2)
        self.power_used = (model.power * share[..., None]).sum(axis=1)                             # (C, T, 2)
        self.oem_left = 1 - (model.oem * share).sum(axis=(1, 2))
        self.node_left = model.node_limit_kw.astype(float).copy()
        for n in range(len(self.node_left)):
            self.node_left[n] -= (self.load[model.node_of == n] * share[model.node_of == n, ..., None]).sum(axis=(0, 1))

    def most(self, c: int, m: int, t: int) -> float:
        """The largest share cluster c could still add to market m in MTU t."""
        model = self.model
        s = min(1.0, self.energy_left[c, t, model.direction[m]])
        for side in range(2):
            if model.power[c, m, t, side] > 0:
                s = min(s, (1 - self.power_used[c, t, side]) / model.power[c, m, t, side])
            node = model.node_of[c]
            if node >= 0 and self.load[c, m, t, side] > 0 and np.isfinite(self.node_left[node, t, side]):
                s = min(s, self.node_left[node, t, side] / self.load[c, m, t, side])
        if model.oem[c, m, t] > 0:
            s = min(s, self.oem_left[c] / model.oem[c, m, t])
        return max(s, 0.0)

    def take(self, c: int, m: int, t: int, s: float) -> None:
        """Use (s > 0) or give back (s < 0) a share."""
        model = self.model
        self.energy_left[c, t, model.direction[m]] -= s
        self.power_used[c, t] += s * model.power[c, m, t]
        self.oem_left[c] -= s * model.oem[c, m, t]
        node = model.node_of[c]
        if node >= 0:
            self.node_left[node, t] -= s * self.load[c, m, t]


def solve(model: ClusterModel) -> Allocation:
    C, M, T = model.shape
    share = np.zeros(model.shape)
    volume = np.zeros((M, T))
    room = _Room(model)
    ok = model.share_mask()
    margin = model.revenue[None] - model.acceptance[None] * model.cost                 # (C, M, T)
    bids = np.argwhere(model.bid_mask())
    best = [margin[:, m, t][ok[:, m, t]].max(initial=0.0) for m, t in bids]
    for m, t in bids[np.argsort(-np.asarray(best), kind="stable")] if len(bids) else []:
        need_kw = model.vmax_mw[m, t] * 1000
        got_kw = np.zeros(model.credit_kw.shape[3])                                    # per quarter
        taken: list[tuple[int, float]] = []
        for c in np.argsort(model.cost[:, m, t], kind="stable"):
            per_share = model.haircut[m, t] * model.credit_kw[c, m, t]                 # (Q,)
            short = need_kw - got_kw > 1e-9
            if not short.any():
                break
            helps = short & (per_share > 0)
            if not ok[c, m, t] or margin[c, m, t] <= 0 or not helps.any():
                continue
            s = min(room.most(c, m, t), float(((need_kw - got_kw[helps]) / per_share[helps]).max()))
            if s <= 1e-12:
                continue
            taken.append((c, s))
            got_kw += s * per_share
            room.take(c, m, t, s)
        step = model.step_mw[m]
        v = np.floor(min(got_kw.min() / 1000, model.vmax_mw[m, t]) / step + 1e-9) * step
        if v > 0 and v >= model.min_mw[m] - 1e-9:
            volume[m, t] = v
            for c, s in taken:
                share[c, m, t] = s
        else:
            for c, s in taken:
                room.take(c, m, t, -s)
    return Allocation(share, volume, "greedy", objective_value(model, share, volume))


def top_up(model: ClusterModel, allocation: Allocation) -> Allocation:
    """The same volumes, with every share no bid needs added to the bids as spare backing
    (bids worth most first; within a bid, clusters already in it first, then the cheapest)."""
    share = allocation.share.copy()
    room = _Room(model, share)
    ok = model.share_mask()
    bids = np.argwhere(allocation.volume_mw > 0)
    worth = [allocation.volume_mw[m, t] * model.revenue[m, t] for m, t in bids]
    for m, t in bids[np.argsort(-np.asarray(worth), kind="stable")] if len(bids) else []:
        order = np.lexsort((model.cost[:, m, t], share[:, m, t] <= 0))
        for c in order:
            if not ok[c, m, t]:
                continue
            s = min(room.most(c, m, t), 1.0 - share[c, m, t])
            if s > 1e-9:
                share[c, m, t] += s
                room.take(c, m, t, s)
    return Allocation(share, allocation.volume_mw, allocation.status, allocation.objective)
