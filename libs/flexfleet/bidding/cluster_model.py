"""The cluster-level bidding model: the data both formulations (highspy and Pyomo) and the
greedy fallback solve, and how a solution is scored and checked.

Decision: s[c, m, t] in [0, 1], the share of its held kW that every car of cluster c gives to
market m in MTU t (the same share for all members, so a cluster's allocation is feasible for
each of its cars by construction), and the bid volume V[m, t] = step_m x n[m, t], n integer,
with an on/off y[m, t] so that V is 0 or at least the minimum bid.

    maximise   sum_mt hours (revenue_mt V_mt - acceptance_mt sum_c cost_cmt haircut_mt credit_cmt s_cmt)
    subject to
      share     sum_{m in direction d} s_cmt <= 1              (each car's energy for direction d)
      power     sum_m power_cmt,side s_cmt <= 1                 (each car's pair kW, incl. 0.2 C the other way)
      node      sum_{c at node} sum_m load_cmt,side s_cmt <= limit_node,t,side   (the node's kW, split)
      oem       sum_mt oem_cmt s_cmt <= 1                        (the day's OEM cap, per car)
      p90       V_mt <= haircut_mtq sum_c credit_cmtq s_cmt       (linear P90 in each quarter q, checked after)
      rules     min_m y_mt <= V_mt <= vmax_mt y_mt, V_mt = step_m n_mt

credit and capacity are in kW, volumes in MW. A car's share s backs s x its held kW in each
quarter of the MTU (credit, per quarter, as the TSO counts the bundle's sum quarter by quarter);
its obligation, and so capacity, power, node load and OEM use, is s x its best quarter's held
kW. power and oem hold each cluster's worst member, so that a row met by the cluster is met by
every car in it.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

EPSILON_EUR_PER_MW = 1e-4   # a tie-break: never hold more than the volumes need
SIDES = ("up", "down")


@dataclass(frozen=True)
class ClusterModel:
    """Arrays: C clusters, M markets, T MTUs, N constrained nodes; side 0 up, 1 down."""

    hours: float
    direction: np.ndarray      # (M,) 0 up, 1 down
    opposite: np.ndarray       # (C, M) share of C held the other way (0 for one-way cars)
    min_mw: np.ndarray         # (M,)
    step_mw: np.ndarray        # (M,)
    vmax_mw: np.ndarray        # (M, T) most a bid may offer (order size, or what the pool could back)
    revenue: np.ndarray        # (M, T) expected revenue EUR per MW h
    acceptance: np.ndarray     # (M, T)
    haircut: np.ndarray        # (M, T, Q) per quarter of the MTU
    capacity_kw: np.ndarray    # (C, M, T) sum of members' held kW (their best quarter)
    credit_kw: np.ndarray      # (C, M, T, Q) sum of members' held kW x P90 credit factor, per quarter
    cost: np.ndarray           # (C, M, T) EUR per MW h when accepted (wear and expected penalty)
    power: np.ndarray          # (C, M, T, 2) worst member's kW per share over its pair kW
    node_of: np.ndarray        # (C,) index of the cluster's constrained node, -1 none
    node_limit_kw: np.ndarray  # (N, T, 2)
    oem: np.ndarray            # (C, M, T) worst member's share of its day OEM cap per unit share

    @property
    def shape(self) -> tuple[int, int, int]:
        return self.capacity_kw.shape  # type: ignore[return-value]

    def mtu_block(self, t: int, oem_budget: np.ndarray) -> ClusterModel:
        """MTU t alone, each cluster allowed `oem_budget[c]` of its day OEM cap there."""
        def at(a: np.ndarray, axis: int) -> np.ndarray:
            return np.take(a, [t], axis=axis)

        coef, budget = at(self.oem, 2), oem_budget[:, None, None]
        left = budget > 1e-9
        oem = np.where(left, coef / np.where(left, budget, 1.0), 0.0)
        blocked = (coef > 0) & ~left                  # a cap with nothing left here: hold nothing
        credit = np.where(blocked[..., None], 0.0, at(self.credit_kw, 2))
        return replace(self, vmax_mw=at(self.vmax_mw, 1), revenue=at(self.revenue, 1),
                       acceptance=at(self.acceptance, 1), haircut=at(self.haircut, 1),
                       capacity_kw=at(self.capacity_kw, 2), credit_kw=credit, cost=at(self.cost, 2),
                       power=at(self.power, 2),
                       oem=np.where(blocked, 0.0, oem), node_limit_kw=at(self.node_limit_kw, 1))

    def share_mask(self) -> np.ndarray:
        """(C, M, T) where a share variable exists: the cluster can hold something there."""
        return (self.capacity_kw > 0) & (self.credit_kw > 0).any(axis=3)

    def bid_mask(self) -> np.ndarray:
        """(M, T) where a bid variable exists: a minimum bid fits and some cluster could earn."""
        margin = self.revenue[None] - self.acceptance[None] * self.cost
        earns = ((margin > 0) & self.share_mask()).any(axis=0)
        return earns & (self.vmax_mw >= self.min_mw[:, None] - 1e-9)

    def node_load(self) -> np.ndarray:
        """(C, M, T, 2) kW a unit share puts on the cluster's node, per side."""
        own = (self.direction[:, None] == np.arange(2)[None, :]).astype(float)      # (M, 2)
        factor = own[None] + (1 - own[None]) * self.opposite[:, :, None]              # (C, M, 2)
        return self.capacity_kw[..., None] * factor[:, :, None, :]

    def share_cost(self) -> np.ndarray:
        """(C, M, T) EUR the objective charges per unit share (on the quarters' mean credit:
        activation energy, and so wear, follows the volume the share backs)."""
        credit_mw = (self.haircut[None] * self.credit_kw).mean(axis=3) / 1000
        return self.hours * self.acceptance[None] * self.cost * credit_mw + \
            EPSILON_EUR_PER_MW * self.capacity_kw / 1000


@dataclass(frozen=True)
class Allocation:
    """A solution: shares (C, M, T), volumes (M, T) in MW, and how it was found."""

    share: np.ndarray
    volume_mw: np.ndarray
    status: str
    objective: float


def objective_value(model: ClusterModel, share: np.ndarray, volume_mw: np.ndarray) -> float:
    return float(model.hours * (model.revenue * volume_mw).sum() - (model.share_cost() * share).sum())


def violations(model: ClusterModel, share: np.ndarray, volume_mw: np.ndarray, tol: float = 1e-6) -> list[str]:
    """Every constraint of the model the solution breaks (empty: feasible)."""
    out: list[str] = []
    if (share < -tol).any() or (share > 1 + tol).any() or (share[~model.share_mask()] > tol).any():
        out.append("share out of [0, 1] or where the cluster holds nothing")
    for d in range(2):
        used = share[:, model.direction == d].sum(axis=1)
        if (used > 1 + tol).any():
            out.append(f"share: {SIDES[d]} shares above 1")
    if ((model.power * share[..., None]).sum(axis=1) > 1 + tol).any():
        out.append("power: a cluster's pair kW exceeded")
    if ((model.oem * share).sum(axis=(1, 2)) > 1 + tol).any():
        out.append("oem: a cluster's OEM cap exceeded")
    load = (model.node_load() * share[..., None]).sum(axis=1)                     # (C, T, 2)
    for n in range(model.node_limit_kw.shape[0]):
        if (load[model.node_of == n].sum(axis=0) > model.node_limit_kw[n] * (1 + tol) + tol).any():
            out.append(f"node {n}: limit exceeded")
    credit = model.haircut * (model.credit_kw * share[..., None]).sum(axis=0) / 1000        # (M, T, Q)
    if (volume_mw[..., None] > credit + tol).any():
        out.append("p90: volume above the linear P90 credit")
    on = volume_mw > tol
    steps = volume_mw / model.step_mw[:, None]
    if (np.abs(steps - np.round(steps)) > 1e-6).any():
        out.append("rules: volume off the step")
    if (on & (volume_mw < model.min_mw[:, None] - tol)).any() or (volume_mw > model.vmax_mw + tol).any():
        out.append("rules: volume below the minimum or above the maximum")
    return out
