"""Bidding: the day's bids per product and MTU, and the vehicle bundle behind each.

>>> # plan = plan_bids(BiddingProblem(day, "SE3", "D-1 first", now, markets, prices, fleet,
>>> #                                 forecast.vehicles, forecaster.calibrations, node_limits))
>>> # plan.bids     -> Bid(product_id, mtu_start, volume_mw, price_eur_per_mw_h, vehicles, ...)
>>> # plan.dropped  -> what was not bid, and why
"""

from flexfleet.bidding.availability import Availability
from flexfleet.bidding.models import (Bid, BiddingInputError, BiddingProblem, BidPlan, Dropped, Fleet, Market,
                                      NodeLimit, ObjectiveParts, PriceScenarios, SolveOptions)
from flexfleet.bidding.p90 import bundle_p90_kw, sampled_shortfall_rate, shortfall_probability
from flexfleet.bidding.planner import bundle_backing, plan_bids
from flexfleet.bidding.wear import wear_rate_per_kwh

__all__ = [
    "Availability", "Bid", "BidPlan", "BiddingInputError", "BiddingProblem", "Dropped", "Fleet", "Market",
    "NodeLimit", "ObjectiveParts", "PriceScenarios", "SolveOptions", "bundle_backing", "bundle_p90_kw", "plan_bids",
    "sampled_shortfall_rate", "shortfall_probability", "wear_rate_per_kwh",
]
