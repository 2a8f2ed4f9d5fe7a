"""The market time grid: 15-minute MTUs, UTC inside, local time only at the edges.

Markets count delivery days in local time, so a day has 92, 96 or 100 MTUs across DST changes;
everything stored or compared is UTC, so an hour that happens twice in autumn stays two hours.
Naive datetimes are refused everywhere: a missing offset is a bug, not a default.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, tzinfo
from zoneinfo import ZoneInfo

from flexfleet.domain.errors import DomainError
from flexfleet.domain.zones import BiddingZone

MTU = timedelta(minutes=15)
MTU_SECONDS = 900


def require_aware(ts: datetime, field: str = "ts") -> datetime:
    """`ts` itself, or a DomainError when it has no UTC offset."""
    if not isinstance(ts, datetime):
        raise DomainError(field, f"must be a datetime, got {type(ts).__name__}")
    if ts.tzinfo is None or ts.utcoffset() is None:
        raise DomainError(field, f"naive datetime {ts.isoformat()} has no UTC offset; "
                                 "attach a timezone (UTC inside the platform)")
    return ts


def to_utc(ts: datetime, field: str = "ts") -> datetime:
    """The same instant in UTC."""
    return require_aware(ts, field).astimezone(UTC)


def _tz(zone: BiddingZone | str | tzinfo) -> tzinfo:
    if isinstance(zone, tzinfo):
        return zone
    if isinstance(zone, BiddingZone) or str(zone).upper() in BiddingZone.__members__:
        return BiddingZone.parse(zone).tzinfo
    try:
        return ZoneInfo(str(zone))
    except Exception:
        raise DomainError("zone", f"{zone!r} is neither a bidding zone nor an IANA timezone") from None


def to_local(ts: datetime, zone: BiddingZone | str | tzinfo, field: str = "ts") -> datetime:
    """The same instant on the wall clock of a bidding zone or IANA timezone."""
    return require_aware(ts, field).astimezone(_tz(zone))


def mtu_floor(ts: datetime, field: str = "ts") -> datetime:
    """Start (UTC) of the MTU containing `ts`. All zones served have whole-hour offsets, so the
    UTC quarter-hour is also the local one."""
    u = to_utc(ts, field)
    return u.replace(minute=u.minute - u.minute % 15, second=0, microsecond=0)


def is_mtu_start(ts: datetime, field: str = "ts") -> bool:
    return mtu_floor(ts, field) == to_utc(ts, field)


def delivery_day_bounds(day: date, zone: BiddingZone | str | tzinfo) -> tuple[datetime, datetime]:
    """UTC start and end of the local delivery day `day` (end exclusive)."""
    if isinstance(day, datetime) or not isinstance(day, date):
        raise DomainError("day", f"must be a date (a local delivery day), got {type(day).__name__}")
    tz = _tz(zone)
    start = datetime(day.year, day.month, day.day, tzinfo=tz).astimezone(UTC)
    nxt = day + timedelta(days=1)
    end = datetime(nxt.year, nxt.month, nxt.day, tzinfo=tz).astimezone(UTC)
    return start, end


def mtus_of_delivery_day(day: date, zone: BiddingZone | str | tzinfo) -> list[datetime]:
    """UTC starts of every MTU of a local delivery day: 96, or 92/100 on DST change days."""
    start, end = delivery_day_bounds(day, zone)
    n = int((end - start) / MTU)
    return [start + i * MTU for i in range(n)]


def delivery_day_of(ts: datetime, zone: BiddingZone | str | tzinfo, field: str = "ts") -> date:
    """The local delivery day an instant belongs to."""
    return to_local(ts, zone, field).date()


def parse_rfc3339(value: str, field: str = "ts") -> datetime:
    """Parse an RFC 3339 timestamp that must carry an offset (Z or +hh:mm)."""
    if not isinstance(value, str):
        raise DomainError(field, f"must be an RFC 3339 string, got {type(value).__name__}")
    try:
        ts = datetime.fromisoformat(value)
    except ValueError:
        raise DomainError(field, f"not an RFC 3339 date-time: {value[:40]!r}") from None
    return require_aware(ts, field)


def format_rfc3339(ts: datetime, field: str = "ts") -> str:
    """RFC 3339 text: 'Z' for UTC, the explicit offset otherwise; whole seconds unless needed."""
    require_aware(ts, field)
    text = ts.isoformat(timespec="seconds" if ts.microsecond == 0 else "milliseconds")
    return text[:-6] + "Z" if ts.utcoffset() == timedelta(0) and text.endswith("+00:00") else text
