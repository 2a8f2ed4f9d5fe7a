"""Market product catalogue: typed, sourced rules parsed from data (no file I/O here).

Every rule value is wrapped in :class:`Sourced` so that the bidder, the UI and an auditor can
see where a number came from, when it was checked, and whether it was actually verified
against the issuing TSO's text. A typo in a rule file fails loudly, naming product and field,
because a silently ignored key in market rules is a bid rejected (or a penalty) later.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping
from decimal import Decimal
from enum import StrEnum
from typing import Annotated, Any, Generic, Literal, TypeVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

T = TypeVar("T")

BIDDING_ZONES: frozenset[str] = frozenset(
    {"SE1", "SE2", "SE3", "SE4", "NO1", "NO2", "NO3", "NO4", "NO5", "FI", "DK1", "DK2"}
)


class CatalogueError(ValueError):
    """A rule file that does not parse; the message names the product and the field."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class Source(_Strict):
    """A public document a rule value was taken from."""

    title: str
    issuer: str
    version: str  # version and/or publication date as the issuer states it
    url: str

    @field_validator("url")
    @classmethod
    def _public_url(cls, v: str) -> str:
        if not v.startswith("https://") and not v.startswith("http://"):
            raise ValueError("source url must be a public http(s) URL")
        return v


class Sourced(_Strict, Generic[T]):
    """A rule value with its provenance: source key, date checked, and whether verified."""

    value: T
    source: str
    checked: dt.date
    verified: bool
    note: str = ""

    @model_validator(mode="after")
    def _unverified_needs_reason(self) -> Sourced[T]:
        if not self.verified and not self.note.strip():
            raise ValueError("verified: false needs a note saying why")
        return self


class ProductType(StrEnum):
    FCR_D_UP = "FCR-D-up"
    FCR_D_DOWN = "FCR-D-down"
    FCR_N = "FCR-N"
    MFRR_CAPACITY = "mFRR-capacity"
    MFRR_ENERGY = "mFRR-energy"
    LOCAL_FLEX = "local-flex"


class FrequencyActivation(_Strict):
    """Automatic activation: share of capacity (0..1) linear between (Hz, share) points."""

    kind: Literal["frequency"]
    points: tuple[tuple[Decimal, Decimal], ...] = Field(min_length=2)
    full_activation_s: Decimal | None = None

    def share_at(self, frequency_hz: Decimal) -> Decimal:
        """Activated share of capacity at a frequency (clamped outside the curve)."""
        pts = sorted(self.points)
        if frequency_hz <= pts[0][0]:
            return pts[0][1]
        if frequency_hz >= pts[-1][0]:
            return pts[-1][1]
        for (f0, s0), (f1, s1) in zip(pts, pts[1:]):
            if f0 <= frequency_hz <= f1:
                return s0 + (s1 - s0) * (frequency_hz - f0) / (f1 - f0)
        raise AssertionError("unreachable")


class ManualActivation(_Strict):
    """Activation on TSO instruction, complete within ``full_activation_s``."""

    kind: Literal["manual"]
    full_activation_s: Decimal


class OrderActivation(_Strict):
    """Local flexibility: a DSO buy order at a grid node for a time window."""

    kind: Literal["dso_order"]
    order_types: tuple[str, ...]



Activation = Annotated[
    FrequencyActivation | ManualActivation | OrderActivation, Field(discriminator="kind")
]


class FixedGateClosure(_Strict):
    """Gate closure at a local wall-clock time, ``days_before`` the delivery day."""

    kind: Literal["fixed"]
    days_before: int = Field(ge=0)
    local_time: dt.time
    timezone: str

    @field_validator("timezone")
    @classmethod
    def _tz(cls, v: str) -> str:
        try:
            ZoneInfo(v)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown IANA timezone {v!r}") from exc
        return v


class RelativeGateClosure(_Strict):
    """Gate closure a fixed time before the start of each MTU (continuous markets)."""

    kind: Literal["before_mtu"]
    minutes_before: int = Field(gt=0)


GateClosure = Annotated[FixedGateClosure | RelativeGateClosure, Field(discriminator="kind")]


class Auction(_Strict):
    name: str
    gate_closure: Sourced[GateClosure]


class Endurance(_Strict):
    """Limited-energy-reservoir (LER) dimensioning for a product."""

    min_full_activation_minutes: Decimal
    power_reserve_factor: Decimal  # power to hold per MW sold (e.g. 1.34 for FCR-N LER)
    opposite_direction_share: Decimal  # share of C held the other way for SoC recovery
    ler_threshold_hours: Decimal | None = None  # below this full-activation time: LER rules


class ResponseRequirement(_Strict):
    """How fast and how fully an activation must be answered, as delivery verification checks it.

    checkpoints: (seconds after the activation starts, least share of the required response by
    then), e.g. FCR-D ((7.5, 0.86)). energy_within_s / min_energy_s: the response energy over
    the first energy_within_s seconds must reach min_energy_s seconds of the required response
    (FCR-D: 3.2 s within 7.5 s), in the TSO's test whose frequency ramps at test_ramp_hz_per_s
    (FCR-D: 0.24 Hz/s). steady_state_under / _over: the sustained response may fall short of the
    requirement by at most `under` and exceed it by at most `over` (shares).
    """

    checkpoints: tuple[tuple[Decimal, Decimal], ...] = Field(min_length=1)
    energy_within_s: Decimal | None = None
    min_energy_s: Decimal | None = None
    test_ramp_hz_per_s: Decimal | None = None
    steady_state_under: Decimal
    steady_state_over: Decimal

    @model_validator(mode="after")
    def _consistent(self) -> ResponseRequirement:
        seconds = [s for s, _ in self.checkpoints]
        if any(s <= 0 for s in seconds) or seconds != sorted(set(seconds)):
            raise ValueError("checkpoints: seconds must be positive and increasing")
        if any(not 0 < share <= 1 for _, share in self.checkpoints):
            raise ValueError("checkpoints: shares must be in (0, 1]")
        if (self.energy_within_s is None) != (self.min_energy_s is None):
            raise ValueError("energy_within_s and min_energy_s go together")
        if self.energy_within_s is not None and not 0 < self.min_energy_s <= self.energy_within_s:
            raise ValueError("min_energy_s must be in (0, energy_within_s]")
        if self.test_ramp_hz_per_s is not None and self.test_ramp_hz_per_s <= 0:
            raise ValueError("test_ramp_hz_per_s must be positive")
        if not 0 <= self.steady_state_under < 1 or self.steady_state_over < 0:
            raise ValueError("steady_state_under must be in [0, 1) and steady_state_over >= 0")
        return self


class Pricing(_Strict):
    capacity: Literal["marginal", "pay_as_bid"] | None
    energy: Literal["marginal", "pay_as_bid", "imbalance_price"] | None
    price_cap: Decimal | None = None
    currency: str | None = None


class Product(_Strict):
    """One tradable product as run by one market operator for a set of bidding zones."""

    id: str
    product_type: ProductType
    operator: str
    zones: Sourced[tuple[str, ...]]
    direction: Sourced[Literal["up", "down", "symmetric", "up_or_down"]]
    activation: Sourced[Activation]
    min_bid_mw: Sourced[Decimal]
    bid_step_mw: Sourced[Decimal]
    mtu_minutes: Sourced[int]
    delivery_timezone: Sourced[str]
    auctions: tuple[Auction, ...] = Field(min_length=1)
    endurance: Sourced[Endurance | None]
    pricing: Sourced[Pricing]
    indivisible: Sourced[bool]
    penalties: Sourced[str]
    confidence_quantile: Sourced[Decimal]
    # The TSO's time-domain response requirement, where delivery verification needs one.
    response: Sourced[ResponseRequirement] | None = None

    @model_validator(mode="after")
    def _consistent(self) -> Product:
        unknown = set(self.zones.value) - BIDDING_ZONES
        if unknown:
            raise ValueError(f"zones: unknown bidding zone(s) {sorted(unknown)}")
        if self.min_bid_mw.value <= 0 or self.bid_step_mw.value <= 0:
            raise ValueError("min_bid_mw and bid_step_mw must be positive")
        if not 0 < self.confidence_quantile.value < 1:
            raise ValueError("confidence_quantile must be in (0, 1)")
        if self.mtu_minutes.value <= 0 or 1440 % self.mtu_minutes.value:
            raise ValueError("mtu_minutes must divide a day")
        ZoneInfo(self.delivery_timezone.value)
        names = [a.name for a in self.auctions]
        if len(names) != len(set(names)):
            raise ValueError("auction names must be unique")
        return self

    def auction(self, name: str) -> Auction:
        for a in self.auctions:
            if a.name == name:
                return a
        raise KeyError(f"{self.id}: no auction {name!r} (have {[a.name for a in self.auctions]})")

    def sources_used(self) -> set[str]:
        keys = {
            getattr(self, f).source
            for f in type(self).model_fields
            if isinstance(getattr(self, f), Sourced)
        }
        return keys | {a.gate_closure.source for a in self.auctions}


class Catalogue(_Strict):
    catalogue_version: str
    sources: dict[str, Source]
    products: tuple[Product, ...]

    def product(self, product_type: ProductType | str, zone: str) -> Product:
        """The product of this type that serves ``zone`` (KeyError if none exists there)."""
        pt = ProductType(product_type)
        for p in self.products:
            if p.product_type == pt and zone in p.zones.value:
                return p
        raise KeyError(f"no {pt.value} product in bidding zone {zone}")

    def by_id(self, product_id: str) -> Product:
        for p in self.products:
            if p.id == product_id:
                return p
        raise KeyError(product_id)


def _format_loc(loc: tuple[int | str, ...]) -> str:
    # pydantic puts union tags and "value" wrappers in the path; keep what a human needs.
    return ".".join(str(x) for x in loc if not (isinstance(x, str) and x[:1].isupper()))


def parse_product(raw: Mapping[str, Any]) -> Product:
    """Parse one product dict; errors name the product id and the failing field."""
    pid = raw.get("id", "<no id>") if isinstance(raw, Mapping) else "<not an object>"
    try:
        # Strict JSON-mode validation: JSON's own forms (strings for dates, numbers or strings
        # for decimals) are accepted, but "yes" is not a bool and "1" is not an int.
        return Product.model_validate_json(json.dumps(raw, default=str), strict=True)
    except ValidationError as exc:
        problems = "; ".join(f"field {_format_loc(e['loc'])}: {e['msg']}" for e in exc.errors())
        raise CatalogueError(f"product {pid}: {problems}") from exc


def parse_catalogue(data: str | bytes | Mapping[str, Any]) -> Catalogue:
    """Parse a catalogue from JSON text or an already-parsed dict (TOML works via tomllib)."""
    raw: Any = json.loads(data) if isinstance(data, (str, bytes)) else data
    if not isinstance(raw, Mapping):
        raise CatalogueError("catalogue: top level must be an object")
    extra = set(raw) - {"catalogue_version", "sources", "products"}
    if extra:
        raise CatalogueError(f"catalogue: unknown top-level field(s) {sorted(extra)}")
    try:
        sources = {
            k: Source.model_validate_json(json.dumps(v, default=str), strict=True)
            for k, v in dict(raw.get("sources", {})).items()
        }
    except ValidationError as exc:
        raise CatalogueError(f"catalogue sources: {exc}") from exc
    products = tuple(parse_product(p) for p in raw.get("products", ()))
    ids = [p.id for p in products]
    dupes = {i for i in ids if ids.count(i) > 1}
    if dupes:
        raise CatalogueError(f"catalogue: duplicate product id(s) {sorted(dupes)}")
    for p in products:
        missing = p.sources_used() - set(sources)
        if missing:
            raise CatalogueError(f"product {p.id}: field source: unknown source key(s) {sorted(missing)}")
    seen: dict[tuple[ProductType, str], str] = {}
    for p in products:
        for z in p.zones.value:
            key = (p.product_type, z)
            if key in seen:
                raise CatalogueError(
                    f"product {p.id}: field zones: {z} already served by {seen[key]} for {p.product_type.value}"
                )
            seen[key] = p.id
    return Catalogue(
        catalogue_version=str(raw.get("catalogue_version", "")), sources=sources, products=products
    )
