"""The bidder: plans the day's bids from the stored forecast, stores them, takes clearing
results back and turns them into obligations (CLI `flexfleet bid`, API /v1/bids)."""
