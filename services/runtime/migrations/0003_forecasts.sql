-- Forecasts as issued, and the trained forecasters that issued them: enough to show what the
-- platform knew at any issue time and to issue the same forecast again (replay). A forecast
-- names its forecaster version and the latest charging_sessions.imported_at it could see.

-- Trained models: body is Forecaster.to_json(), which round-trips the trees exactly; the version
-- is a hash of it, so saving the same forecaster twice stores it once.
CREATE TABLE forecasters (
    version        text PRIMARY KEY,
    zone           text NOT NULL,
    trained_until  timestamptz NOT NULL,
    trained_at     timestamptz NOT NULL DEFAULT now(),
    body           text NOT NULL
);
CREATE INDEX forecasters_latest ON forecasters (zone, trained_at DESC);

-- One row per issued forecast. The unique key makes a rerun of the same issue a no-op; published
-- is the outbox flag of the relay to Kafka topic forecasts.v1. frames records the columns and
-- pandas dtypes of the issued frames, so loading gives back exactly what was issued.
CREATE TABLE forecasts (
    forecast_id        uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    zone               text NOT NULL,
    issued_at          timestamptz NOT NULL
                       CHECK (date_bin(interval '15 minutes', issued_at, timestamptz '2000-01-01 00:00:00+00') = issued_at),
    forecaster_version text NOT NULL REFERENCES forecasters,
    sessions_known_at  timestamptz,       -- max(charging_sessions.imported_at) seen; null: none stored yet
    frames             jsonb NOT NULL,
    created_at         timestamptz NOT NULL DEFAULT now(),
    published          boolean NOT NULL DEFAULT false,
    UNIQUE (zone, issued_at, forecaster_version)
);
-- The latest forecast of a zone (the bidder, `flexfleet forecast show`, the service's schedule).
CREATE INDEX forecasts_latest ON forecasts (zone, issued_at DESC, created_at DESC);
CREATE INDEX forecasts_unpublished ON forecasts (created_at) WHERE NOT published;

-- Portfolio quantiles of flexible kW per direction, endurance and target MTU (what forecasts.v1
-- carries). row_no keeps the issued row order.
CREATE TABLE forecast_portfolio (
    forecast_id   uuid NOT NULL REFERENCES forecasts ON DELETE CASCADE,
    row_no        integer NOT NULL,
    direction     text NOT NULL CHECK (direction IN ('up', 'down')),
    endurance_min integer NOT NULL DEFAULT 0 CHECK (endurance_min >= 0),
    target_start  timestamptz NOT NULL,
    q05           double precision NOT NULL,
    q10           double precision NOT NULL,
    q25           double precision NOT NULL,
    q50           double precision NOT NULL,
    q75           double precision NOT NULL,
    q90           double precision NOT NULL,
    q95           double precision NOT NULL,
    p90_kw        double precision,
    p90_kwh       double precision,
    PRIMARY KEY (forecast_id, direction, endurance_min, target_start)
);

-- Per vehicle and target MTU: 2,000 vehicles x 192 MTUs = 384k rows per forecast, written with
-- COPY. Too big for a Kafka message; readers query it here. No foreign key to vehicles: a
-- forecast stays a record of what was issued after a vehicle leaves the registry. Values are
-- double precision so that a loaded forecast equals the issued one bit for bit.
CREATE TABLE forecast_vehicles (
    forecast_id      uuid NOT NULL REFERENCES forecasts ON DELETE CASCADE,
    row_no           integer NOT NULL,
    vehicle_id       text NOT NULL,
    target_start     timestamptz NOT NULL,
    p_up             double precision,
    p_down           double precision,
    capacity_up_kw   double precision,
    capacity_down_kw double precision,
    soc_p10          double precision,
    soc_p50          double precision,
    soc_p90          double precision,
    departure_p10_at timestamptz,
    up_20_kw         double precision,
    down_20_kw       double precision,
    PRIMARY KEY (forecast_id, vehicle_id, target_start)
);
