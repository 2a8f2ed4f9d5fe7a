"""Re-dispatch inside a bundle: when a car leaves early or goes offline, the others take over
its share for the rest of the obligation, each within its own headroom.

Headroom of a car: the smaller of its charger/vehicle pair's kW less what it already holds for
other obligations in the same direction, and the kW it can hold for the product's endurance,
less what it holds for this obligation already. A site's limit (its fuse, its export limit) is
a limit for all its cars together: it is split among them, never handed to each (one peer's
n chargers each got a 4.2 kW site limit and drew n x 4.2 kW).

The share is spread in proportion to headroom, so every car gives the same fraction of its
spare room and none is pushed to its limit while others idle. What nobody can take is reported
as uncovered, per slot, and stays visible in the dispatch (volume minus what the cars hold):
a risk for operations, never dropped.

Pure: no I/O.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime

from flexfleet.dispatch.signals import TOLERANCE_KW, Direction, ObligationDispatch, Slot
from flexfleet.domain.errors import DomainError
from flexfleet.domain.time import to_utc


@dataclass(frozen=True)
class Capability:
    """What one car can hold for one obligation, in kW in the obligation's direction."""

    vehicle_id: str
    pair_kw: float                 # the charger/vehicle pair's rating in the direction
    other_kw: float = 0.0          # held for other obligations in the same direction meanwhile
    held_kw: float = math.inf      # what it can hold for the product's endurance

    def __post_init__(self) -> None:
        for name in ("pair_kw", "other_kw", "held_kw"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value) or value < 0:
                raise DomainError(name, f"must be a number of kW, at least 0, for {self.vehicle_id}; got {value!r}")

    @property
    def limit_kw(self) -> float:
        """The most it may hold for this obligation."""
        return max(0.0, min(self.pair_kw - self.other_kw, self.held_kw))

    @classmethod
    def of(cls, vehicle_id: str, direction: Direction, pair_up_kw: float, pair_down_kw: float,
           other_up_kw: float = 0.0, other_down_kw: float = 0.0, held_kw: float = math.inf) -> Capability:
        """From both ways of the pair: a symmetric product holds power both ways, so the tighter
        way binds."""
        free = {Direction.UP: (pair_up_kw, other_up_kw), Direction.DOWN: (pair_down_kw, other_down_kw)}
        pair, other = min((free[w] for w in direction.ways), key=lambda po: po[0] - po[1])
        return cls(vehicle_id, pair, other, held_kw)


@dataclass(frozen=True)
class Move:
    """One slot's re-dispatch: what the leaving car held, who took how much, and the rest."""

    start: datetime
    end: datetime
    share_kw: float
    taken: Mapping[str, float]
    uncovered_kw: float

    @property
    def moved_kw(self) -> float:
        return math.fsum(self.taken.values())


@dataclass(frozen=True)
class Redispatch:
    before: ObligationDispatch
    after: ObligationDispatch
    vehicle_id: str
    at: datetime
    moves: tuple[Move, ...]

    @property
    def share_kw(self) -> float:
        """The most the leaving car held at any time after `at`."""
        return max((m.share_kw for m in self.moves), default=0.0)

    @property
    def uncovered_kw(self) -> float:
        """The most kW left uncovered at any time after `at`."""
        return max((m.uncovered_kw for m in self.moves), default=0.0)


def split_at(dispatch: ObligationDispatch, at: datetime) -> ObligationDispatch:
    """The same dispatch with a slot boundary at `at` (if inside the window)."""
    slots = []
    for s in dispatch.slots:
        if s.start < at < s.end:
            slots += [Slot(s.start, at, dict(s.kw)), Slot(at, s.end, dict(s.kw))]
        else:
            slots.append(s)
    return dispatch.with_slots(slots)


def redispatch(dispatch: ObligationDispatch, vehicle_id: str, at: datetime, capabilities: Mapping[str, Capability],
               site_room_kw: Mapping[str, float] | None = None, gone: Collection[str] = ()) -> Redispatch:
    """Move `vehicle_id`'s share from `at` to the end of the obligation onto the other placed cars
    of the bundle. `capabilities` by vehicle (a car without one takes nothing: unknown is not
    room); `site_room_kw`: per site, the most this obligation may hold there in total (the site's
    limit less other obligations'); `gone`: cars that left before and take nothing."""
    at = to_utc(at, "at")
    if vehicle_id not in dispatch.held_kw:
        raise DomainError("vehicle_id", f"{vehicle_id!r} is not in the bundle of obligation {dispatch.obligation_id}")
    rooms = site_room_kw or {}
    for site, room in rooms.items():
        if isinstance(room, bool) or not isinstance(room, (int, float)) or math.isnan(room):
            raise DomainError("site_room_kw", f"must be a number of kW for site {site}; got {room!r}")
    split = split_at(dispatch, at)
    takers = [v for v in sorted(split.placements) if v != vehicle_id and v not in gone]
    slots, moves = [], []
    for s in split.slots:
        share = s.kw.get(vehicle_id, 0.0)
        if s.start < at or share <= 0:
            slots.append(s)
            continue
        kw = {v: k for v, k in s.kw.items() if v != vehicle_id}
        room = _rooms(split, kw, takers, capabilities, rooms)
        total = math.fsum(room.values())
        if total >= share:
            taken = {v: min(r, share * r / total) for v, r in room.items() if r > 0}
        else:
            taken = {v: r for v, r in room.items() if r > 0}
        uncovered = max(0.0, share - math.fsum(taken.values()))
        if uncovered <= TOLERANCE_KW * max(1.0, share):
            uncovered = 0.0
        for v, extra in taken.items():
            kw[v] = kw.get(v, 0.0) + extra
        slots.append(Slot(s.start, s.end, kw))
        moves.append(Move(s.start, s.end, share, taken, uncovered))
    after = split.with_slots(slots).normalised()
    return Redispatch(dispatch, after, vehicle_id, at, tuple(moves))


def _rooms(d: ObligationDispatch, kw: Mapping[str, float], takers: list[str], capabilities: Mapping[str, Capability],
           site_room_kw: Mapping[str, float]) -> dict[str, float]:
    """Each taker's headroom in one slot, with each site's room split among its cars in
    proportion to theirs when it is the tighter bound."""
    room = {}
    for v in takers:
        cap = capabilities.get(v)
        room[v] = max(0.0, cap.limit_kw - kw.get(v, 0.0)) if cap is not None else 0.0
    by_site: dict[str, list[str]] = {}
    for v in takers:
        by_site.setdefault(d.placements[v].site_id, []).append(v)
    for site, members in by_site.items():
        if site not in site_room_kw:
            continue
        held_there = math.fsum(k for v, k in kw.items() if v in d.placements and d.placements[v].site_id == site)
        free = max(0.0, site_room_kw[site] - held_there)
        wanted = math.fsum(room[v] for v in members)
        if wanted > free:
            for v in members:
                room[v] = room[v] * free / wanted if wanted > 0 else 0.0
    return room


def peak_holdings(dispatches: Iterable[ObligationDispatch], start: datetime, end: datetime,
                  exclude: str | None = None, group: Callable[[ObligationDispatch, str], str | None] | None = None
                  ) -> dict[str, dict[Direction, float]]:
    """Per car (or per `group(dispatch, vehicle)`, e.g. its site), the most it holds at any one
    time in [start, end) for the given obligations, per one-way direction (a symmetric obligation
    holds both ways). What a re-dispatch must leave to the other obligations."""
    pieces: dict[str, list[tuple[datetime, datetime, Direction, float]]] = {}
    for d in dispatches:
        if d.obligation_id == exclude:
            continue
        for s in d.slots:
            lo, hi = max(s.start, start), min(s.end, end)
            if lo >= hi:
                continue
            for v, k in s.kw.items():
                key = group(d, v) if group is not None else v
                if key is None:
                    continue
                for way in d.direction.ways:
                    pieces.setdefault(key, []).append((lo, hi, way, k))
    out: dict[str, dict[Direction, float]] = {}
    for key, items in pieces.items():
        edges = sorted({t for lo, hi, _, _ in items for t in (lo, hi)})
        peak = {Direction.UP: 0.0, Direction.DOWN: 0.0}
        for a, b in zip(edges, edges[1:]):
            for way in peak:
                total = math.fsum(k for lo, hi, w, k in items if w is way and lo <= a and b <= hi)
                peak[way] = max(peak[way], total)
        out[key] = peak
    return out


__all__ = ["Capability", "Move", "Redispatch", "peak_holdings", "redispatch", "split_at"]
