-- Bids as planned, the market's answer, and the obligations that follow from it.
--
-- A plan is one optimiser run for a delivery day, zone and auction, from one stored forecast.
-- Its bids keep their backing vehicles (the bundle) and each car's kW; clearing results come
-- back per bid, and an accepted bid becomes an obligation: what dispatch must deliver, with the
-- bundle scaled to the accepted volume.

CREATE TABLE bid_plans (
    plan_id        uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    zone           text NOT NULL,
    delivery_day   date NOT NULL,
    auction        text NOT NULL,
    planned_at     timestamptz NOT NULL,     -- the "now" gate closures were checked against
    forecast_id    uuid REFERENCES forecasts ON DELETE SET NULL,
    solver_status  text NOT NULL,
    solve_seconds  double precision NOT NULL,
    revenue_eur    numeric NOT NULL,
    wear_eur       numeric NOT NULL,
    penalty_eur    numeric NOT NULL,
    dropped        jsonb NOT NULL DEFAULT '[]',   -- [{product_id, market_key, mtu_start, reason}]
    notes          jsonb NOT NULL DEFAULT '[]',
    created_at     timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX bid_plans_day ON bid_plans (zone, delivery_day, created_at DESC);

-- bid_id is "<plan_id>/<n>": readable in CSV files and stable across reruns of a plan's export.
CREATE TABLE bids (
    bid_id                 text PRIMARY KEY,
    plan_id                uuid NOT NULL REFERENCES bid_plans ON DELETE CASCADE,
    product_id             text NOT NULL,
    market_key             text NOT NULL,
    auction                text NOT NULL,
    direction              text NOT NULL CHECK (direction IN ('up', 'down')),
    grid_node              text,
    mtu_start              timestamptz NOT NULL,
    mtu_minutes            integer NOT NULL CHECK (mtu_minutes > 0),
    volume_mw              numeric NOT NULL CHECK (volume_mw > 0),
    price_eur_per_mw_h     numeric NOT NULL CHECK (price_eur_per_mw_h >= 0),
    expected_value_eur     numeric NOT NULL,
    p90_kw_backing         double precision NOT NULL,
    shortfall_probability  double precision NOT NULL CHECK (shortfall_probability BETWEEN 0 AND 1),
    UNIQUE (plan_id, market_key, mtu_start)
);
CREATE INDEX bids_mtu ON bids (mtu_start);

CREATE TABLE bid_vehicles (
    bid_id         text NOT NULL REFERENCES bids ON DELETE CASCADE,
    vehicle_id     text NOT NULL,
    obligation_kw  double precision NOT NULL CHECK (obligation_kw > 0),
    PRIMARY KEY (bid_id, vehicle_id)
);

-- The market's answer for one bid. Posting the same answer again changes nothing; a different
-- answer for a bid that already has one is refused (a correction is a new market message).
CREATE TABLE clearing_results (
    bid_id              text PRIMARY KEY REFERENCES bids ON DELETE CASCADE,
    accepted_mw         numeric NOT NULL CHECK (accepted_mw >= 0),
    price_eur_per_mw_h  numeric,              -- null when nothing was accepted
    cleared_at          timestamptz NOT NULL DEFAULT now(),
    source              text NOT NULL
);

-- What dispatch must deliver: one obligation per accepted bid.
CREATE TABLE obligations (
    obligation_id       text PRIMARY KEY,     -- the bid's id: one obligation per bid
    bid_id              text NOT NULL UNIQUE REFERENCES bids ON DELETE CASCADE,
    zone                text NOT NULL,
    product_id          text NOT NULL,
    direction           text NOT NULL CHECK (direction IN ('up', 'down')),
    grid_node           text,
    mtu_start           timestamptz NOT NULL,
    mtu_end             timestamptz NOT NULL CHECK (mtu_end > mtu_start),
    volume_mw           numeric NOT NULL CHECK (volume_mw > 0),
    price_eur_per_mw_h  numeric NOT NULL,
    created_at          timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX obligations_mtu ON obligations (mtu_start);

CREATE TABLE obligation_vehicles (
    obligation_id  text NOT NULL REFERENCES obligations ON DELETE CASCADE,
    vehicle_id     text NOT NULL,
    kw             double precision NOT NULL CHECK (kw > 0),
    PRIMARY KEY (obligation_id, vehicle_id)
);
