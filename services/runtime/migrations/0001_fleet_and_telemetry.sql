-- Fleet registry and raw telemetry.
-- One schema, two storage paths: TimescaleDB hypertable + compression + continuous aggregate when
-- the extension is available (what infra/ deploys); native range partitions by day + BRIN when not.

CREATE TABLE owners (
    owner_id      text PRIMARY KEY,
    display_name  text NOT NULL,
    language      text NOT NULL DEFAULT 'en' CHECK (language IN ('en', 'nb', 'sv', 'da', 'nl', 'fi')),
    currency      text NOT NULL CHECK (currency IN ('EUR', 'SEK', 'NOK', 'DKK')),
    created_at    timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE sites (
    site_id       text PRIMARY KEY,
    kind          text NOT NULL CHECK (kind IN ('home', 'workplace', 'shared_fleet', 'public')),
    grid_node     text NOT NULL,
    bidding_zone  text NOT NULL,
    timezone      text NOT NULL,
    earthing      text NOT NULL DEFAULT 'TN' CHECK (earthing IN ('TN', 'TT', 'IT')),
    max_import_kw double precision NOT NULL CHECK (max_import_kw > 0),
    max_export_kw double precision NOT NULL CHECK (max_export_kw >= 0)
);

CREATE TABLE chargers (
    charger_id       text PRIMARY KEY,
    site_id          text NOT NULL REFERENCES sites,
    current_type     text NOT NULL CHECK (current_type IN ('AC', 'DC')),
    bidirectional    boolean NOT NULL,
    max_charge_kw    double precision NOT NULL CHECK (max_charge_kw > 0),
    max_discharge_kw double precision NOT NULL CHECK (max_discharge_kw >= 0),
    CHECK (bidirectional OR max_discharge_kw = 0)
);

CREATE TABLE vehicles (
    vehicle_id        text PRIMARY KEY,
    owner_id          text NOT NULL REFERENCES owners,
    make              text NOT NULL,
    model             text NOT NULL,
    battery_kwh       double precision NOT NULL CHECK (battery_kwh > 0),
    usable_soc_min_pct double precision NOT NULL DEFAULT 0,
    usable_soc_max_pct double precision NOT NULL DEFAULT 100,
    chemistry         text NOT NULL CHECK (chemistry IN ('NMC', 'LFP', 'NCA')),
    max_charge_kw     double precision NOT NULL CHECK (max_charge_kw > 0),
    max_discharge_kw  double precision NOT NULL CHECK (max_discharge_kw >= 0),
    v2g_capable       boolean NOT NULL,
    oem_discharge_cap_kwh_per_year double precision CHECK (oem_discharge_cap_kwh_per_year > 0),
    home_charger_id   text REFERENCES chargers,
    CHECK (0 <= usable_soc_min_pct AND usable_soc_min_pct < usable_soc_max_pct AND usable_soc_max_pct <= 100),
    CHECK (v2g_capable OR max_discharge_kw = 0)
);

CREATE TABLE contracts (
    contract_id  text PRIMARY KEY,
    owner_id     text NOT NULL REFERENCES owners,
    vehicle_id   text NOT NULL REFERENCES vehicles,
    kind         text NOT NULL,
    valid_from   timestamptz NOT NULL,
    valid_to     timestamptz,
    terms        jsonb NOT NULL DEFAULT '{}',
    CHECK (valid_to IS NULL OR valid_to > valid_from)
);

CREATE TABLE telemetry (
    vehicle_id        text NOT NULL,
    ts                timestamptz NOT NULL,
    plugged_in        boolean NOT NULL,
    charger_id        text,
    power_kw          real NOT NULL,
    soc_pct           real,
    soc_source        text,
    energy_import_kwh double precision,
    energy_export_kwh double precision,
    battery_temp_c    real,
    odometer_km       double precision,
    departure_at      timestamptz,
    min_soc_pct       real,
    PRIMARY KEY (vehicle_id, ts)
) PARTITION BY RANGE (ts);

-- Replace the partitioned table by a hypertable where TimescaleDB exists.
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb') THEN
        CREATE EXTENSION IF NOT EXISTS timescaledb;
        CREATE TABLE telemetry_ht (LIKE telemetry INCLUDING ALL);
        DROP TABLE telemetry;
        ALTER TABLE telemetry_ht RENAME TO telemetry;
        PERFORM create_hypertable('telemetry', 'ts', chunk_time_interval => interval '1 day');
        ALTER TABLE telemetry SET (timescaledb.compress,
                                   timescaledb.compress_segmentby = 'vehicle_id',
                                   timescaledb.compress_orderby = 'ts');
        PERFORM add_compression_policy('telemetry', interval '7 days');
    ELSE
        CREATE TABLE telemetry_default PARTITION OF telemetry DEFAULT;
        CREATE INDEX telemetry_ts_brin ON telemetry USING brin (ts);
    END IF;
END $$;

-- Ingest calls this for every day it is about to write; a no-op on the hypertable path.
CREATE FUNCTION flexfleet_ensure_telemetry_partitions(lo timestamptz, hi timestamptz)
RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    d date;
    name text;
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_partitioned_table p JOIN pg_class c ON c.oid = p.partrelid
                   WHERE c.relname = 'telemetry') THEN
        RETURN;
    END IF;
    PERFORM pg_advisory_xact_lock(hashtext('flexfleet_telemetry_partitions'));
    FOR d IN SELECT generate_series((lo AT TIME ZONE 'UTC')::date, (hi AT TIME ZONE 'UTC')::date, interval '1 day')::date LOOP
        name := 'telemetry_p' || to_char(d, 'YYYYMMDD');
        IF to_regclass(name) IS NULL THEN
            EXECUTE format('CREATE TABLE %I PARTITION OF telemetry FOR VALUES FROM (%L) TO (%L)',
                           name, (d::timestamp AT TIME ZONE 'UTC'), ((d + 1)::timestamp AT TIME ZONE 'UTC'));
        END IF;
    END LOOP;
END $$;

-- Readings refused by ingest, with the original bytes, the field and the reason. The source
-- coordinates are the key, so a redelivered message is recorded once; published marks the
-- outbox relay's progress to the telemetry.dlq.v1 topic.
CREATE TABLE telemetry_rejects (
    topic        text NOT NULL,
    partition    integer NOT NULL,
    "offset"     bigint NOT NULL,
    message_key  bytea,
    message      bytea NOT NULL,
    field        text NOT NULL,
    code         text NOT NULL,
    reason       text NOT NULL,
    rejected_at  timestamptz NOT NULL DEFAULT now(),
    published    boolean NOT NULL DEFAULT false,
    PRIMARY KEY (topic, partition, "offset")
);
CREATE INDEX telemetry_rejects_unpublished ON telemetry_rejects (rejected_at) WHERE NOT published;

-- Per vehicle and 15-minute MTU: the fleet state every later service reads.
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'timescaledb') THEN
        EXECUTE $v$
            CREATE MATERIALIZED VIEW fleet_state_15min WITH (timescaledb.continuous) AS
            SELECT time_bucket(interval '15 minutes', ts) AS mtu_start, vehicle_id,
                   count(*) AS readings,
                   avg(plugged_in::int)::real AS plugged_share,
                   avg(soc_pct)::real AS soc_pct_mean, min(soc_pct) AS soc_pct_min, max(soc_pct) AS soc_pct_max,
                   avg(power_kw)::real AS power_kw_mean,
                   max(energy_import_kwh) - min(energy_import_kwh) AS import_kwh,
                   max(energy_export_kwh) - min(energy_export_kwh) AS export_kwh
            FROM telemetry GROUP BY 1, 2 WITH NO DATA $v$;
        PERFORM add_continuous_aggregate_policy('fleet_state_15min',
            start_offset => interval '3 days', end_offset => interval '15 minutes',
            schedule_interval => interval '5 minutes');
    ELSE
        EXECUTE $v$
            CREATE VIEW fleet_state_15min AS
            SELECT date_bin(interval '15 minutes', ts, timestamptz '2000-01-01 00:00:00+00') AS mtu_start, vehicle_id,
                   count(*) AS readings,
                   avg(plugged_in::int)::real AS plugged_share,
                   avg(soc_pct)::real AS soc_pct_mean, min(soc_pct) AS soc_pct_min, max(soc_pct) AS soc_pct_max,
                   avg(power_kw)::real AS power_kw_mean,
                   max(energy_import_kwh) - min(energy_import_kwh) AS import_kwh,
                   max(energy_export_kwh) - min(energy_export_kwh) AS export_kwh
            FROM telemetry GROUP BY 1, 2 $v$;
    END IF;
END $$;
