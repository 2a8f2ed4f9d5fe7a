-- Charging sessions: one row per stay of a vehicle on a charger, the input of availability
-- forecasting. Derived from telemetry (source 'telemetry'; complete = false while the car may
-- still be plugged in at the end of the data read) or imported from a charge-point management
-- system's CSV export (source 'import'). The key makes re-imports and re-derivations idempotent.

CREATE TABLE charging_sessions (
    vehicle_id            text NOT NULL REFERENCES vehicles,
    charger_id            text,
    plug_in_at            timestamptz NOT NULL,
    plug_out_at           timestamptz NOT NULL,
    energy_kwh            double precision NOT NULL CHECK (energy_kwh >= 0),
    soc_start             real CHECK (soc_start BETWEEN 0 AND 100),
    soc_end               real CHECK (soc_end BETWEEN 0 AND 100),
    max_power_kw          real,
    departure_declared_at timestamptz,
    min_soc               real CHECK (min_soc BETWEEN 0 AND 100),
    complete              boolean NOT NULL DEFAULT true,
    source                text NOT NULL,
    imported_at           timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (vehicle_id, plug_in_at),
    CHECK (plug_out_at > plug_in_at)
);

-- Forecast training reads sessions of the whole fleet by time.
CREATE INDEX charging_sessions_plug_in ON charging_sessions (plug_in_at);
-- Derivation looks up the open sessions it may have to extend.
CREATE INDEX charging_sessions_open ON charging_sessions (vehicle_id, plug_out_at) WHERE NOT complete;
