"""Offer price and expected revenue of one MW from price scenarios.

Marginal pricing pays the clearing price to every accepted bid, so the best offer is our own
cost per MW h (wear plus expected penalty): we are in whenever the price covers it, and the
expected revenue per MW is E[price; price >= offer]. Pay-as-bid pays the offer, so the offer
is the scenario price that maximises (offer - cost) x P(price >= offer).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class OfferTerms:
    """Per MW and hour: the offer, the probability it is accepted, the expected revenue."""

    offer_eur_per_mw_h: float
    acceptance: float
    revenue_eur_per_mw_h: float

    def margin(self, cost_eur_per_mw_h: float) -> float:
        """Expected value of one MW h whose cost, incurred only when accepted, is `cost`."""
        return self.revenue_eur_per_mw_h - self.acceptance * cost_eur_per_mw_h


def offer_terms(prices: np.ndarray, weights: np.ndarray, cost_eur_per_mw_h: float, pricing: str) -> OfferTerms:
    """Offer and expected revenue for one product and MTU (prices and weights per scenario)."""
    cost = max(float(cost_eur_per_mw_h), 0.0)
    if pricing == "pay_as_bid":
        candidates = np.unique(prices[prices >= cost])
        if len(candidates) == 0:
            return OfferTerms(cost, 0.0, 0.0)
        accepted = (prices[None, :] >= candidates[:, None]) @ weights
        best = int(np.argmax((candidates - cost) * accepted))
        return OfferTerms(float(candidates[best]), float(accepted[best]), float(candidates[best] * accepted[best]))
    if pricing != "marginal":
        raise ValueError(f"pricing: {pricing!r} is not planned (marginal or pay_as_bid)")
    cleared = prices >= cost
    return OfferTerms(cost, float(weights @ cleared), float(weights @ (prices * cleared)))


def terms_at(prices: np.ndarray, weights: np.ndarray, offer_eur_per_mw_h: float, pricing: str) -> OfferTerms:
    """Acceptance and expected revenue of a given offer (as submitted, after rounding)."""
    cleared = prices >= offer_eur_per_mw_h
    acceptance = float(weights @ cleared)
    if pricing == "pay_as_bid":
        return OfferTerms(offer_eur_per_mw_h, acceptance, offer_eur_per_mw_h * acceptance)
    return OfferTerms(offer_eur_per_mw_h, acceptance, float(weights @ (prices * cleared)))
