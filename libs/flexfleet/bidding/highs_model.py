"""The cluster model built straight from numpy arrays into HiGHS: milliseconds to build where a
modelling layer takes seconds. `pyomo_model` states the same model readably; a test holds the
two to the same optimum."""

from __future__ import annotations

import time

import highspy
import numpy as np
from scipy.sparse import coo_matrix

from flexfleet.bidding.cluster_model import Allocation, ClusterModel, objective_value

_INF = highspy.kHighsInf


class _Rows:
    """Constraint rows collected as coordinates, each with an upper bound (lower is -inf)."""

    def __init__(self) -> None:
        self.rows: list[np.ndarray] = []
        self.cols: list[np.ndarray] = []
        self.vals: list[np.ndarray] = []
        self.upper: list[np.ndarray] = []
        self.count = 0

    def add_grouped(self, keys: np.ndarray, cols: np.ndarray, vals: np.ndarray, upper_of_key, keep=None) -> None:
        """One row per distinct key: sum of vals x column over the entries with that key."""
        if len(keys) == 0:
            return
        uniq, inverse = np.unique(keys, return_inverse=True)
        wanted = np.ones(len(uniq), dtype=bool) if keep is None else keep(uniq, inverse)
        remap = np.full(len(uniq), -1)
        remap[wanted] = np.arange(wanted.sum()) + self.count
        row = remap[inverse]
        take = row >= 0
        self.rows.append(row[take])
        self.cols.append(cols[take])
        self.vals.append(vals[take])
        self.upper.append(np.asarray(upper_of_key(uniq[wanted]), dtype=np.float64))
        self.count += int(wanted.sum())

    def add(self, row_index: np.ndarray, cols: np.ndarray, vals: np.ndarray) -> None:
        """Entries of rows already counted by `new_rows`."""
        self.rows.append(row_index)
        self.cols.append(cols)
        self.vals.append(vals)

    def new_rows(self, upper: np.ndarray) -> np.ndarray:
        idx = np.arange(len(upper)) + self.count
        self.upper.append(np.asarray(upper, dtype=np.float64))
        self.count += len(upper)
        return idx


def build(model: ClusterModel) -> tuple[highspy.HighsLp, np.ndarray, np.ndarray]:
    """The MIP, and the (c, m, t) of each share column and the (m, t) of each bid."""
    C, M, T = model.shape
    bids = np.argwhere(model.bid_mask())                              # (B, 2) m, t
    has_bid = model.bid_mask()
    shares = np.argwhere(model.share_mask() & has_bid[None])          # (S, 3) c, m, t
    c, m, t = shares.T
    S, B = len(shares), len(bids)
    col_s = np.arange(S)
    col_n, col_y = S + np.arange(B), S + B + np.arange(B)
    direction = model.direction[m]
    rows = _Rows()

    # each car's energy per direction: shares of a direction sum to at most 1
    rows.add_grouped((c * T + t) * 2 + direction, col_s, np.ones(S), lambda k: np.ones(len(k)),
                     keep=lambda uniq, inv: np.bincount(inv) > 1)
    # each car's pair kW per side, where 0.2 C held the other way makes it bind
    for side in range(2):
        coef = model.power[c, m, t, side]
        other = (direction != side) & (coef > 0)
        key = c * T + t
        rows.add_grouped(key[coef > 0], col_s[coef > 0], coef[coef > 0], lambda k: np.ones(len(k)),
                         keep=lambda uniq, inv, o=other[coef > 0]: np.bincount(inv, weights=o) > 0)
    # grid nodes: one row per node, MTU and side, shared by every cluster behind it
    node = model.node_of[c]
    load = model.node_load()[c, m, t]                                 # (S, 2)
    for side in range(2):
        at = node >= 0
        limit = np.full(len(node), np.inf)
        limit[at] = model.node_limit_kw[node[at], t[at], side]
        sel = at & np.isfinite(limit) & (load[:, side] > 0)
        rows.add_grouped(node[sel] * T + t[sel], col_s[sel], load[sel, side],
                         lambda k, s=side: model.node_limit_kw[k // T, k % T, s])
    # the day's OEM cap per cluster
    oem = model.oem[c, m, t]
    rows.add_grouped(c[oem > 0], col_s[oem > 0], oem[oem > 0], lambda k: np.ones(len(k)))
    # bids: V <= linear P90 credit in each quarter; min y <= V <= vmax y
    if B:
        bm, bt = bids.T
        step = model.step_mw[bm]
        bid_of = np.full((M, T), -1)
        bid_of[bm, bt] = np.arange(B)
        Q = model.credit_kw.shape[3]
        credit = rows.new_rows(np.zeros(B * Q)).reshape(B, Q)
        for q in range(Q):
            coef = model.haircut[m, t, q] * model.credit_kw[c, m, t, q] / 1000
            rows.add(credit[:, q], col_n, step)
            rows.add(credit[bid_of[m, t], q][coef > 0], col_s[coef > 0], -coef[coef > 0])
        low = rows.new_rows(np.zeros(B))
        rows.add(low, col_y, model.min_mw[bm])
        rows.add(low, col_n, -step)
        high = rows.new_rows(np.zeros(B))
        rows.add(high, col_n, step)
        rows.add(high, col_y, -model.vmax_mw[bm, bt])

    n_col = S + 2 * B
    cost = np.concatenate([-model.share_cost()[c, m, t], model.hours * model.revenue[tuple(bids.T)] *
                           model.step_mw[bids[:, 0]] if B else np.zeros(0), np.zeros(B)])
    upper_n = np.floor(model.vmax_mw[tuple(bids.T)] / model.step_mw[bids[:, 0]] + 1e-9) if B else np.zeros(0)
    lp = highspy.HighsLp()
    lp.num_col_, lp.num_row_ = n_col, rows.count
    lp.col_cost_ = cost
    lp.col_lower_ = np.zeros(n_col)
    lp.col_upper_ = np.concatenate([np.ones(S), upper_n, np.ones(B)])
    lp.row_lower_ = np.full(rows.count, -_INF)
    lp.row_upper_ = np.concatenate(rows.upper) if rows.upper else np.zeros(0)
    if rows.rows:
        a = coo_matrix((np.concatenate(rows.vals), (np.concatenate(rows.rows), np.concatenate(rows.cols))),
                       shape=(rows.count, n_col)).tocsc()
        a.sum_duplicates()
        lp.a_matrix_.format_ = highspy.MatrixFormat.kColwise
        lp.a_matrix_.start_ = a.indptr
        lp.a_matrix_.index_ = a.indices
        lp.a_matrix_.value_ = a.data
    lp.a_matrix_.num_col_, lp.a_matrix_.num_row_ = n_col, rows.count
    lp.sense_ = highspy.ObjSense.kMaximize
    lp.integrality_ = [highspy.HighsVarType.kContinuous] * S + [highspy.HighsVarType.kInteger] * (2 * B)
    return lp, shares, bids


def solve(model: ClusterModel, time_limit_s: float, mip_rel_gap: float = 1e-4,
          method: str = "per_mtu") -> Allocation | None:
    """Best allocation HiGHS finds within the time limit; None when it has no feasible one, so
    the caller falls back. "per_mtu" (default) solves each MTU's MIP on its own, "monolithic"
    the whole day at once (exact, but its branch and bound over a day's worth of volumes is
    slow at fleet scale)."""
    if method == "monolithic":
        return solve_monolithic(model, time_limit_s, mip_rel_gap)
    return solve_per_mtu(model, time_limit_s, mip_rel_gap)


def solve_monolithic(model: ClusterModel, time_limit_s: float, mip_rel_gap: float = 1e-4) -> Allocation | None:
    lp, shares, bids = build(model)
    found = _run(lp, time_limit_s, mip_rel_gap)
    return None if found is None else _allocation(model, found[0], shares, bids, found[1])


def solve_per_mtu(model: ClusterModel, time_limit_s: float, mip_rel_gap: float = 1e-4) -> Allocation | None:
    """One MIP per MTU, in order: only the day's OEM caps couple the MTUs. The LP relaxation of
    the whole day reserves each cluster's cap for the later MTUs; each MTU may use whatever is
    not reserved for later, so what rounding leaves over carries forward. Without OEM caps this
    is the day's optimum; with them, a feasible plan close to it. An MTU HiGHS cannot solve in
    its time gets the greedy plan."""
    from flexfleet.bidding import greedy

    started = time.perf_counter()
    C, M, T = model.shape
    reserved = _oem_reserved(model, time_limit_s / 4)                   # (C, T)
    later = np.cumsum(reserved[:, ::-1], axis=1)[:, ::-1] - reserved     # reserved after t
    share, volume = np.zeros(model.shape), np.zeros((M, T))
    labels = []
    for t in range(T):
        used = (model.oem[:, :, :t] * share[:, :, :t]).sum(axis=(1, 2))
        budget = np.maximum(1.0 - used - later[:, t], 0.0)
        block = model.mtu_block(t, budget)
        lp, shares, bids = build(block)
        left = time_limit_s - (time.perf_counter() - started)
        found = _run(lp, left / (T - t), mip_rel_gap) if left > 0 else None
        if found is None:
            part, label = greedy.solve(block), "greedy_fallback"
        else:
            part, label = _allocation(block, found[0], shares, bids, found[1]), found[1]
        share[:, :, t], volume[:, t] = part.share[:, :, 0], part.volume_mw[:, 0]
        labels.append(label)
    status = next((s for s in ("greedy_fallback", "time_limit") if s in labels), "optimal")
    return Allocation(share, volume, status, objective_value(model, share, volume))


def _oem_reserved(model: ClusterModel, time_limit_s: float) -> np.ndarray:
    """(C, T) share of each cluster's day OEM cap the day's LP relaxation uses in each MTU (0 if
    the LP finds nothing in time: each MTU then takes what is left, first come)."""
    C, M, T = model.shape
    if not (model.oem > 0).any():
        return np.zeros((C, T))
    lp, shares, bids = build(model)
    lp.integrality_ = []
    found = _run(lp, time_limit_s, 0.0)
    if found is None:
        return np.zeros((C, T))
    s = np.zeros(model.shape)
    s[tuple(shares.T)] = found[0][: len(shares)]
    return np.minimum((model.oem * s).sum(axis=1), 1.0)


def _run(lp: highspy.HighsLp, time_limit_s: float, mip_rel_gap: float) -> tuple[np.ndarray, str] | None:
    if lp.num_col_ == 0:     # nothing to decide (no bid possible in this MTU)
        return np.zeros(0), "optimal"
    h = highspy.Highs()
    h.setOptionValue("output_flag", False)
    h.setOptionValue("time_limit", max(float(time_limit_s), 1e-3))
    h.setOptionValue("mip_rel_gap", mip_rel_gap)
    h.passModel(lp)
    h.run()
    status = h.getModelStatus()
    if status == highspy.HighsModelStatus.kOptimal:
        label = "optimal"
    elif status in (highspy.HighsModelStatus.kTimeLimit, highspy.HighsModelStatus.kInterrupt) \
            and h.getInfo().primal_solution_status == 2:
        label = "time_limit"
    else:
        return None
    return np.asarray(h.getSolution().col_value), label


def _allocation(model: ClusterModel, x: np.ndarray, shares: np.ndarray, bids: np.ndarray, label: str) -> Allocation:
    S, B = len(shares), len(bids)
    share = np.zeros(model.shape)
    share[tuple(shares.T)] = np.clip(x[:S], 0.0, 1.0)
    volume = np.zeros(model.vmax_mw.shape)
    if B:
        n = np.round(x[S:S + B])
        volume[tuple(bids.T)] = n * model.step_mw[bids[:, 0]]
        volume[volume < model.min_mw[:, None] - 1e-9] = 0.0
    volume = np.round(volume, 9)
    return Allocation(share, volume, label, objective_value(model, share, volume))
