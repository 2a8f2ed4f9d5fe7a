-- The per-car kW held for 60 and 120 minutes, beside the 20-minute figures: the bidder needs
-- them for longer endurances (a one-way car in FCR-D, a DSO order of an hour or two) instead of
-- scaling the 20-minute ones. NULL in forecasts stored before; readers then scale.
ALTER TABLE forecast_vehicles
    ADD COLUMN up_60_kw double precision,
    ADD COLUMN down_60_kw double precision,
    ADD COLUMN up_120_kw double precision,
    ADD COLUMN down_120_kw double precision;
