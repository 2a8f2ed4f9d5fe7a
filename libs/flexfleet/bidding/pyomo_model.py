"""The cluster model written out in Pyomo, one constraint family per rule: the readable
reference for `highs_model`, which builds the same MIP from arrays. Too slow to build for a
real fleet; the equivalence test keeps the two in step."""

from __future__ import annotations

import numpy as np
import pyomo.environ as pyo

from flexfleet.bidding.cluster_model import Allocation, ClusterModel, objective_value


def formulate(model: ClusterModel) -> pyo.ConcreteModel:
    C, M, T = model.shape
    share_ok, bid_ok = model.share_mask(), model.bid_mask()
    load = model.node_load()
    share_cost = model.share_cost()
    p = pyo.ConcreteModel("cluster_bidding")
    p.S = pyo.Set(dimen=3, initialize=[(c, m, t) for c, m, t in np.argwhere(share_ok & bid_ok[None]).tolist()])
    p.B = pyo.Set(dimen=2, initialize=[(m, t) for m, t in np.argwhere(bid_ok).tolist()])
    p.share = pyo.Var(p.S, bounds=(0, 1))
    p.steps = pyo.Var(p.B, domain=pyo.NonNegativeIntegers)
    p.on = pyo.Var(p.B, domain=pyo.Binary)

    def volume(m, t):
        return float(model.step_mw[m]) * p.steps[m, t]

    def shares_of(c, t):
        return [(cc, m, tt) for (cc, m, tt) in p.S if cc == c and tt == t]

    p.value = pyo.Objective(sense=pyo.maximize, expr=(
        sum(model.hours * model.revenue[m, t] * volume(m, t) for m, t in p.B)
        - sum(share_cost[i] * p.share[i] for i in p.S)))

    p.energy = pyo.ConstraintList()   # a car's energy per direction: shares sum to 1 at most
    p.power = pyo.ConstraintList()    # a car's pair kW per side, with 0.2 C held the other way
    for c in range(C):
        for t in range(T):
            mine = shares_of(c, t)
            for d in range(2):
                same = [i for i in mine if model.direction[i[1]] == d]
                if len(same) > 1:
                    p.energy.add(sum(p.share[i] for i in same) <= 1)
                terms = [i for i in mine if model.power[i + (d,)] > 0]
                if any(model.direction[i[1]] != d for i in terms):
                    p.power.add(sum(float(model.power[i + (d,)]) * p.share[i] for i in terms) <= 1)

    p.node = pyo.ConstraintList()     # a node's limit, shared by all its cars
    for n in range(model.node_limit_kw.shape[0]):
        for t in range(T):
            for d in range(2):
                limit = float(model.node_limit_kw[n, t, d])
                terms = [i for i in p.S if model.node_of[i[0]] == n and i[2] == t and load[i + (d,)] > 0]
                if np.isfinite(limit) and terms:
                    p.node.add(sum(float(load[i + (d,)]) * p.share[i] for i in terms) <= limit)

    p.oem = pyo.ConstraintList()      # the day's OEM cap of each cluster's worst car
    for c in range(C):
        terms = [i for i in p.S if i[0] == c and model.oem[i] > 0]
        if terms:
            p.oem.add(sum(float(model.oem[i]) * p.share[i] for i in terms) <= 1)

    p.Q = pyo.RangeSet(0, model.credit_kw.shape[3] - 1)

    @p.Constraint(p.B, p.Q)
    def p90(p, m, t, q):     # in every quarter of the MTU
        credit = [i for i in p.S if i[1] == m and i[2] == t]
        return volume(m, t) <= sum(float(model.haircut[m, t, q] * model.credit_kw[i + (q,)] / 1000) * p.share[i]
                                   for i in credit)

    @p.Constraint(p.B)
    def minimum(p, m, t):
        return float(model.min_mw[m]) * p.on[m, t] <= volume(m, t)

    @p.Constraint(p.B)
    def maximum(p, m, t):
        return volume(m, t) <= float(model.vmax_mw[m, t]) * p.on[m, t]

    return p


def solve(model: ClusterModel, mip_rel_gap: float = 1e-9) -> Allocation:
    p = formulate(model)
    solver = pyo.SolverFactory("appsi_highs")
    solver.config.mip_gap = mip_rel_gap
    result = solver.solve(p)
    share = np.zeros(model.shape)
    for i in p.S:
        share[i] = pyo.value(p.share[i])
    volume = np.zeros(model.vmax_mw.shape)
    for m, t in p.B:
        volume[m, t] = round(pyo.value(p.steps[m, t])) * model.step_mw[m]
    return Allocation(share, volume, str(result.solver.termination_condition), objective_value(model, share, volume))
