-- Delivery verification: what the VENs measured, the grid frequency, and what each obligation
-- delivered per MTU and per site, with an outbox to the deliveries.v1 topic.
--
-- measured_power and grid_frequency follow telemetry (0001): a TimescaleDB hypertable with
-- compression where the extension exists, native range partitions by day and a BRIN index where
-- it does not (flexfleet_ensure_day_partitions creates the days before a write).

-- Measured power per vehicle as the sites' VEN agents report it (OpenADR reports): 1 s samples
-- during FCR activations, coarser otherwise. baseline_kw is the declared schedule in force at ts
-- (the setpoint the charger would follow without the activation): the FCR baseline.
CREATE TABLE measured_power (
    vehicle_id   text NOT NULL,
    ts           timestamptz NOT NULL,
    power_kw     real NOT NULL,              -- + charging, - discharging (as telemetry.v1)
    baseline_kw  real,                       -- declared schedule at ts; null: not reported
    plugged_in   boolean NOT NULL,
    charger_id   text,                       -- where it was measured: the site attribution names
    ven_name     text,
    report_id    text,                       -- the OpenADR report it came in
    received_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (vehicle_id, ts)
) PARTITION BY RANGE (ts);

-- The grid frequency the activations are judged against (Hz, at least 1 Hz).
CREATE TABLE grid_frequency (
    area    text NOT NULL DEFAULT 'Nordic',  -- synchronous area
    ts      timestamptz NOT NULL,
    hz      double precision NOT NULL CHECK (hz > 40 AND hz < 60),
    source  text NOT NULL,
    PRIMARY KEY (area, ts)
) PARTITION BY RANGE (ts);

DO $$
DECLARE
    t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['measured_power', 'grid_frequency'] LOOP
        IF EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'timescaledb') THEN
            EXECUTE format('CREATE TABLE %I (LIKE %I INCLUDING ALL)', t || '_ht', t);
            EXECUTE format('DROP TABLE %I', t);
            EXECUTE format('ALTER TABLE %I RENAME TO %I', t || '_ht', t);
            PERFORM create_hypertable(t, 'ts', chunk_time_interval => interval '1 day');
            EXECUTE format('ALTER TABLE %I SET (timescaledb.compress, timescaledb.compress_segmentby = %L, '
                           'timescaledb.compress_orderby = %L)', t,
                           CASE t WHEN 'measured_power' THEN 'vehicle_id' ELSE 'area' END, 'ts');
            -- Operational logs are kept at least 14 days (the TSOs' data requirement): compress after.
            PERFORM add_compression_policy(t, interval '14 days');
        ELSE
            EXECUTE format('CREATE TABLE %I PARTITION OF %I DEFAULT', t || '_default', t);
            EXECUTE format('CREATE INDEX %I ON %I USING brin (ts)', t || '_ts_brin', t);
        END IF;
    END LOOP;
END $$;

-- Creates a partition per UTC day of [lo, hi] for `tbl`; a no-op on the hypertable path.
CREATE FUNCTION flexfleet_ensure_day_partitions(tbl text, lo timestamptz, hi timestamptz)
RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    d date;
    name text;
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_partitioned_table p JOIN pg_class c ON c.oid = p.partrelid
                   WHERE c.relname = tbl) THEN
        RETURN;
    END IF;
    PERFORM pg_advisory_xact_lock(hashtext('flexfleet_partitions_' || tbl));
    FOR d IN SELECT generate_series((lo AT TIME ZONE 'UTC')::date, (hi AT TIME ZONE 'UTC')::date, interval '1 day')::date LOOP
        name := tbl || '_p' || to_char(d, 'YYYYMMDD');
        IF to_regclass(name) IS NULL THEN
            EXECUTE format('CREATE TABLE %I PARTITION OF %I FOR VALUES FROM (%L) TO (%L)',
                           name, tbl, (d::timestamp AT TIME ZONE 'UTC'), ((d + 1)::timestamp AT TIME ZONE 'UTC'));
        END IF;
    END LOOP;
END $$;

-- Telemetry's own function (0001) becomes this one, so every day partition is made one way.
CREATE OR REPLACE FUNCTION flexfleet_ensure_telemetry_partitions(lo timestamptz, hi timestamptz)
RETURNS void LANGUAGE sql AS $$ SELECT flexfleet_ensure_day_partitions('telemetry', lo, hi) $$;

-- One row per obligation and MTU: required vs delivered, the response, the shortfall settlement
-- charges. A rerun upserts; content_hash tells a changed result (late measurements) from the
-- same one: only a change bumps revision and queues the row for deliveries.v1 again.
CREATE TABLE deliveries (
    obligation_id         text NOT NULL REFERENCES obligations ON DELETE CASCADE,
    mtu_start             timestamptz NOT NULL,
    mtu_end               timestamptz NOT NULL CHECK (mtu_end > mtu_start),
    zone                  text NOT NULL,
    product_id            text NOT NULL,
    direction             text NOT NULL CHECK (direction IN ('up', 'down')),
    grid_node             text,
    kind                  text NOT NULL CHECK (kind IN ('frequency', 'dso_order')),
    baseline_method       text NOT NULL,
    required_mw           double precision NOT NULL CHECK (required_mw > 0),
    delivered_mw          double precision NOT NULL CHECK (delivered_mw >= 0),
    delivered_share       double precision NOT NULL CHECK (delivered_share BETWEEN 0 AND 1),
    capacity_share        double precision CHECK (capacity_share BETWEEN 0 AND 1),
    response_share        double precision CHECK (response_share BETWEEN 0 AND 1),
    shortfall_mw          double precision NOT NULL CHECK (shortfall_mw >= 0),
    shortfall_mwh         double precision NOT NULL CHECK (shortfall_mwh >= 0),
    required_energy_mwh   double precision NOT NULL,
    delivered_energy_mwh  double precision NOT NULL,
    response_time_s       double precision,
    required_response_s   double precision,
    quarter_shares        double precision[] NOT NULL,
    activations           jsonb NOT NULL DEFAULT '[]',
    vehicles              integer NOT NULL,
    vehicles_without_data integer NOT NULL,
    notes                 jsonb NOT NULL DEFAULT '[]',
    content_hash          text NOT NULL,
    revision              integer NOT NULL DEFAULT 1,
    verified_at           timestamptz NOT NULL,
    published             boolean NOT NULL DEFAULT false,
    PRIMARY KEY (obligation_id, mtu_start)
);
CREATE INDEX deliveries_mtu ON deliveries (mtu_start);
CREATE INDEX deliveries_unpublished ON deliveries (verified_at) WHERE NOT published;

-- Each site's part in one delivery: its required share and its own delivery, and the part of
-- the obligation's shortfall attributed to it (the parts add up to the delivery's shortfall).
CREATE TABLE delivery_sites (
    obligation_id         text NOT NULL,
    mtu_start             timestamptz NOT NULL,
    site_id               text NOT NULL,
    vehicles              integer NOT NULL CHECK (vehicles > 0),
    required_mw           double precision NOT NULL,
    delivered_share       double precision NOT NULL CHECK (delivered_share BETWEEN 0 AND 1),
    delivered_mw          double precision NOT NULL,
    shortfall_mw          double precision NOT NULL CHECK (shortfall_mw >= 0),
    shortfall_mwh         double precision NOT NULL CHECK (shortfall_mwh >= 0),
    required_energy_mwh   double precision NOT NULL,
    delivered_energy_mwh  double precision NOT NULL,
    response_time_s       double precision,
    PRIMARY KEY (obligation_id, mtu_start, site_id),
    FOREIGN KEY (obligation_id, mtu_start) REFERENCES deliveries ON DELETE CASCADE
);
CREATE INDEX delivery_sites_shortfall ON delivery_sites (site_id, mtu_start) WHERE shortfall_mw > 0;
