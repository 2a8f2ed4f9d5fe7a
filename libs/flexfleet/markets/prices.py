"""Capacity price scenarios: parse a price history, and draw scenario days from it for a bid.

The bidder takes "a price forecast with scenarios": for each product and MTU of the delivery
day, S equally likely price paths. Without a price model of our own, the honest forecast is
history: days of the same kind (weekday or weekend) from other weeks of the same price regime,
drawn with preference for the same season. :meth:`PriceScenarios.draw_days` does that.

Input is the CSV in data/markets/prices/ (text, bytes, gzip bytes or a DataFrame; no file
I/O here). A bad file fails with :class:`PriceDataError` naming the row and the column, since
a silently skipped price row is a bid priced on a hole.
"""

from __future__ import annotations

import gzip
import io
import math
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd

REQUIRED_COLUMNS = ("mtu_start", "regime", "zone", "product", "price_eur_per_mw_h", "demand_mw")
MAX_PRICE_EUR_PER_MW_H = 10_000.0  # anything above is a unit error (SEK, EUR/MW per day ...)
DEFAULT_TZ = "Europe/Stockholm"


class PriceDataError(ValueError):
    """A price file that does not parse; the message names the row and the column."""


def _row_error(row: int, column: str, message: str) -> PriceDataError:
    # row 1 is the first data row, which is line 2 of a CSV with its header.
    return PriceDataError(f"row {row} (line {row + 1}), column {column}: {message}")


def _frame(data: str | bytes | pd.DataFrame) -> pd.DataFrame:
    if isinstance(data, pd.DataFrame):
        return data.astype(str).reset_index(drop=True)
    if isinstance(data, (bytes, bytearray, memoryview)):
        raw = bytes(data)
        if raw[:2] == b"\x1f\x8b":
            raw = gzip.decompress(raw)
        text = raw.decode("utf-8")
    elif isinstance(data, str):
        text = data
    else:
        raise TypeError(f"price data must be text, bytes or a DataFrame, got {type(data).__name__}")
    try:
        return pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False, skipinitialspace=True)
    except pd.errors.ParserError as exc:
        raise PriceDataError(f"not a readable CSV: {exc}") from None
    except pd.errors.EmptyDataError:
        raise PriceDataError("empty price file: no header and no rows") from None


def _first_bad(mask: np.ndarray) -> int | None:
    idx = np.flatnonzero(mask)
    return int(idx[0]) if idx.size else None


def _numbers(df: pd.DataFrame, rows: np.ndarray, column: str, lo: float, hi: float,
             lo_inclusive: bool) -> np.ndarray:
    text = df[column].str.strip()
    values = pd.to_numeric(text, errors="coerce").to_numpy(dtype=float)
    bad = _first_bad(~np.isfinite(values))
    if bad is not None:
        raise _row_error(int(rows[bad]), column, f"{text.iloc[bad]!r} is not a number")
    low_bad = values < lo if lo_inclusive else values <= lo
    bad = _first_bad(low_bad | (values > hi))
    if bad is not None:
        bound = f">= {lo:g}" if lo_inclusive else f"> {lo:g}"
        raise _row_error(int(rows[bad]), column,
                         f"{values[bad]:g} is out of range (must be {bound} and <= {hi:g})")
    return values


def _timestamps(df: pd.DataFrame, rows: np.ndarray, column: str = "mtu_start") -> pd.DatetimeIndex:
    text = df[column].str.strip()
    bad = _first_bad(~(text.str.endswith("Z") | text.str.endswith("+00:00")).to_numpy())
    if bad is not None:
        raise _row_error(int(rows[bad]), column, f"{text.iloc[bad]!r} must be UTC, ending in 'Z' or '+00:00'")
    ts = pd.to_datetime(text, format="ISO8601", utc=True, errors="coerce")
    bad = _first_bad(ts.isna().to_numpy())
    if bad is not None:
        raise _row_error(int(rows[bad]), column, f"{text.iloc[bad]!r} is not an ISO 8601 timestamp")
    idx = pd.DatetimeIndex(ts)
    bad = _first_bad(np.asarray((idx.minute != 0) | (idx.second != 0) | (idx.microsecond != 0)))
    if bad is not None:
        raise _row_error(int(rows[bad]), column, f"{text.iloc[bad]!r} is not the start of an hourly MTU")
    return idx


@dataclass(frozen=True, eq=False)
class PriceScenarios:
    """Capacity prices and TSO demand as arrays (scenarios, products, MTUs) with weights.

    A parsed history is one scenario (the realised series); :meth:`draw_days` turns it into S
    scenario days for a delivery day. ``source_days`` says which history day each scenario is
    (empty for a full history), so a backtest can check it never peeked at the day it bids.
    """

    regime: str
    zone: str
    product_ids: tuple[str, ...]
    mtu_starts: tuple[datetime, ...]  # UTC
    prices: np.ndarray  # EUR/MW/h, shape (S, P, T)
    demand_mw: np.ndarray  # shape (S, P, T)
    weights: np.ndarray  # shape (S,), sums to 1
    mtu_minutes: int = 60
    source_days: tuple[date, ...] = ()

    def __post_init__(self) -> None:
        s, p, t = self.prices.shape
        if p != len(self.product_ids) or t != len(self.mtu_starts):
            raise ValueError(f"prices shape {self.prices.shape} does not match "
                             f"{len(self.product_ids)} products x {len(self.mtu_starts)} MTUs")
        if self.demand_mw.shape != self.prices.shape:
            raise ValueError(f"demand_mw shape {self.demand_mw.shape} != prices shape {self.prices.shape}")
        if self.weights.shape != (s,) or np.any(self.weights < 0) or not math.isclose(self.weights.sum(), 1.0):
            raise ValueError("weights: need one non-negative weight per scenario, summing to 1")
        if self.source_days and len(self.source_days) != s:
            raise ValueError("source_days: one per scenario when given")

    @property
    def n_scenarios(self) -> int:
        return int(self.prices.shape[0])

    def product_index(self, product_id: str) -> int:
        try:
            return self.product_ids.index(product_id)
        except ValueError:
            raise KeyError(f"no prices for {product_id!r} (have {list(self.product_ids)})") from None

    def price(self, product_id: str) -> np.ndarray:
        """Prices of one product, shape (S, T)."""
        return self.prices[:, self.product_index(product_id), :]

    def demand(self, product_id: str) -> np.ndarray:
        return self.demand_mw[:, self.product_index(product_id), :]

    def expected_price(self, product_id: str) -> np.ndarray:
        """Weighted mean price per MTU, shape (T,)."""
        return self.weights @ self.price(product_id)

    def mtu_index(self, mtu_start: datetime) -> int:
        u = mtu_start.astimezone(UTC)
        i = self._positions().get(u)
        if i is None:
            raise KeyError(f"MTU {u.isoformat()} is not in the {self.regime} price data")
        return i

    def _positions(self) -> dict[datetime, int]:
        cache = self.__dict__.get("_pos")
        if cache is None:
            cache = {t: i for i, t in enumerate(self.mtu_starts)}
            object.__setattr__(self, "_pos", cache)
        return cache

    def on_grid(self, mtu_minutes: int) -> PriceScenarios:
        """The same prices on a finer MTU grid (e.g. 15 min): each MTU's price repeated."""
        if mtu_minutes <= 0 or self.mtu_minutes % mtu_minutes:
            raise ValueError(f"mtu_minutes: {mtu_minutes} must divide {self.mtu_minutes}")
        k = self.mtu_minutes // mtu_minutes
        starts = tuple(t + timedelta(minutes=mtu_minutes * j) for t in self.mtu_starts for j in range(k))
        return PriceScenarios(self.regime, self.zone, self.product_ids, starts,
                              np.repeat(self.prices, k, axis=2), np.repeat(self.demand_mw, k, axis=2),
                              self.weights, mtu_minutes, self.source_days)

    # ------------------------------------------------------------------ scenario days

    def _day_table(self, tz: ZoneInfo) -> tuple[list[date], np.ndarray, np.ndarray]:
        """Complete local days of scenario 0 as (days, prices (D, P, 24), demand (D, P, 24))."""
        key = f"_days_{tz.key}"
        cached = self.__dict__.get(key)
        if cached is not None:
            return cached
        local = pd.DatetimeIndex(list(self.mtu_starts)).tz_convert(tz)
        frame = pd.DataFrame({"day": local.date, "hour": local.hour, "i": np.arange(len(local))})
        frame = frame.drop_duplicates(["day", "hour"], keep="first")  # autumn: first 02:00
        days, prices, demand = [], [], []
        for day, g in frame.groupby("day", sort=True):
            hours = g["hour"].to_numpy()
            n_local = _day_hours(day, tz)
            if len(g) < min(n_local, 24):
                continue  # incomplete day at an edge of the data
            pos = np.full(24, -1)
            pos[hours] = g["i"].to_numpy()
            for h in range(24):  # spring: 02:00 does not exist, repeat 01:00
                if pos[h] < 0:
                    pos[h] = pos[h - 1]
            days.append(day)
            prices.append(self.prices[0][:, pos])
            demand.append(self.demand_mw[0][:, pos])
        table = (days, np.stack(prices) if prices else np.zeros((0, len(self.product_ids), 24)),
                 np.stack(demand) if demand else np.zeros((0, len(self.product_ids), 24)))
        object.__setattr__(self, key, table)
        return table

    def days(self, tz: str = DEFAULT_TZ) -> list[date]:
        """Local days with a price for every hour and product."""
        return list(self._day_table(ZoneInfo(tz))[0])

    def day(self, day: date, tz: str = DEFAULT_TZ) -> PriceScenarios:
        """The realised series of one history day as a single scenario."""
        z = ZoneInfo(tz)
        days, _, _ = self._day_table(z)
        if day not in days:
            raise KeyError(f"{day} is not a complete day of the {self.regime} price data")
        return self._assemble(day, z, [days.index(day)], np.ones(1))

    def draw_days(
        self,
        day: date,
        n: int,
        *,
        seed: int | Sequence[int] = 0,
        tz: str = DEFAULT_TZ,
        before: date | None = None,
        holidays: Collection[date] = (),
        season_days: float = 45.0,
    ) -> PriceScenarios:
        """S = ``n`` scenario days for delivery ``day``, drawn from this history.

        Candidates are complete history days of the same type as ``day`` (weekday, or
        weekend/holiday), never ``day`` itself and, with ``before``, only days before it (no
        look-ahead in a backtest). They are drawn without replacement where possible, with
        weight exp(-d / season_days) for d days between their day of year and ``day``'s, so
        winter bids see winter prices. Hours map by local wall-clock hour, so 23- and 25-hour
        days get 23 and 25 MTUs. Weights are equal.
        """
        if n < 1:
            raise ValueError("n: need at least one scenario")
        z = ZoneInfo(tz)
        days, _, _ = self._day_table(z)
        hol = set(holidays)

        def kind(d: date) -> bool:
            return d.weekday() >= 5 or d in hol

        cand = [i for i, d in enumerate(days)
                if d != day and kind(d) == kind(day) and (before is None or d < before)]
        if not cand:
            raise ValueError(f"no history day of the same type as {day} in the {self.regime} data"
                             + (f" before {before}" if before else ""))
        doy = day.timetuple().tm_yday
        dist = np.array([abs(days[i].timetuple().tm_yday - doy) for i in cand], dtype=float)
        dist = np.minimum(dist, 365.0 - dist)
        w = np.exp(-dist / season_days)
        rng = np.random.default_rng(seed)
        pick = rng.choice(len(cand), size=n, replace=n > len(cand), p=w / w.sum())
        return self._assemble(day, z, [cand[k] for k in pick], np.full(n, 1.0 / n))

    def _assemble(self, day: date, tz: ZoneInfo, rows: list[int], weights: np.ndarray) -> PriceScenarios:
        days, prices, demand = self._day_table(tz)
        start = datetime.combine(day, datetime.min.time(), tz).astimezone(UTC)
        n_hours = _day_hours(day, tz)
        starts = tuple(start + timedelta(hours=h) for h in range(n_hours))
        wall = [t.astimezone(tz).hour for t in starts]
        return PriceScenarios(
            regime=self.regime, zone=self.zone, product_ids=self.product_ids, mtu_starts=starts,
            prices=prices[rows][:, :, wall], demand_mw=demand[rows][:, :, wall],
            weights=weights, mtu_minutes=self.mtu_minutes,
            source_days=tuple(days[r] for r in rows),
        )


def _day_hours(day: date, tz: ZoneInfo) -> int:
    start = datetime.combine(day, datetime.min.time(), tz)
    end = datetime.combine(day + timedelta(days=1), datetime.min.time(), tz)
    return int((end.astimezone(UTC) - start.astimezone(UTC)) / timedelta(hours=1))


def parse_price_scenarios(
    data: str | bytes | pd.DataFrame,
    *,
    regime: str | None = None,
    known_products: Collection[str] | None = None,
) -> PriceScenarios:
    """Parse hourly capacity prices and demand (columns in ``REQUIRED_COLUMNS``) for one regime.

    The file may hold several regimes; then ``regime`` picks one. Every product must cover
    the same hours, every hour once. ``known_products`` (e.g. the catalogue's ids) rejects
    unknown product names instead of carrying them into a bid.
    """
    df = _frame(data)
    missing = [c for c in REQUIRED_COLUMNS if c not in df.columns]
    if missing:
        raise PriceDataError(f"missing column(s) {missing}; the header has {list(df.columns)}")
    if df.empty:
        raise PriceDataError("no data rows")
    for col in ("regime", "zone", "product"):
        bad = _first_bad((df[col].str.strip() == "").to_numpy())
        if bad is not None:
            raise _row_error(bad + 1, col, "empty")
    rows = np.arange(1, len(df) + 1)
    regimes = sorted(df["regime"].str.strip().unique())
    if regime is None:
        if len(regimes) > 1:
            raise PriceDataError(f"column regime: several regimes {regimes}; pass regime= to pick one")
        regime = regimes[0]
    keep = (df["regime"].str.strip() == regime).to_numpy()
    if not keep.any():
        raise PriceDataError(f"column regime: no rows for regime {regime!r} (have {regimes})")
    df, rows = df[keep].reset_index(drop=True), rows[keep]

    def err(i: int, col: str, msg: str) -> PriceDataError:
        return _row_error(int(rows[i]), col, msg)

    ts = _timestamps(df, rows)
    price = _numbers(df, rows, "price_eur_per_mw_h", 0.0, MAX_PRICE_EUR_PER_MW_H, lo_inclusive=True)
    demand = _numbers(df, rows, "demand_mw", 0.0, 100_000.0, lo_inclusive=False)

    zones = sorted(df["zone"].str.strip().unique())
    if len(zones) > 1:
        i = int(np.flatnonzero((df["zone"].str.strip() != zones[0]).to_numpy())[0])
        raise err(i, "zone", f"{df['zone'].iloc[i]!r}: one regime must be one zone (also {zones[0]!r})")
    products_col = df["product"].str.strip()
    if known_products is not None:
        unknown = ~products_col.isin(set(known_products)).to_numpy()
        i = _first_bad(unknown)
        if i is not None:
            raise err(i, "product", f"unknown product {products_col.iloc[i]!r}")

    key = pd.DataFrame({"p": products_col, "t": ts})
    dup = key.duplicated().to_numpy()
    i = _first_bad(dup)
    if i is not None:
        raise err(i, "mtu_start", f"{df['mtu_start'].iloc[i]!r} appears twice for {products_col.iloc[i]!r}")

    product_ids = tuple(dict.fromkeys(products_col))  # file order
    all_t = pd.DatetimeIndex(sorted(set(ts)))
    t_pos = pd.Index(all_t).get_indexer(ts)
    p_pos = pd.Index(product_ids).get_indexer(products_col)
    P, T = len(product_ids), len(all_t)
    filled = np.zeros((P, T), dtype=bool)
    filled[p_pos, t_pos] = True
    if not filled.all():
        pi, ti = map(int, np.argwhere(~filled)[0])
        raise PriceDataError(f"column mtu_start: {product_ids[pi]!r} has no row for "
                             f"{all_t[ti].strftime('%Y-%m-%dT%H:%M:%SZ')} (other products do)")
    prices = np.zeros((1, P, T))
    demands = np.zeros((1, P, T))
    prices[0, p_pos, t_pos] = price
    demands[0, p_pos, t_pos] = demand
    starts = tuple(t.to_pydatetime() for t in all_t)
    return PriceScenarios(regime, zones[0], product_ids, starts, prices, demands, np.ones(1))
