-- The owner's departure target SoC (telemetry.v1 `target_soc_pct`, declared in the car app with
-- departure_at), so settlement can judge a departure promise against what the owner asked for.
--
-- telemetry.target_soc_pct: as the reading carried it (null: none declared, and every reading
-- from before this migration). Nullable without a default, so adding it rewrites nothing: on
-- the partitioned path ALTER TABLE reaches every partition, on the TimescaleDB path every chunk,
-- compressed ones included (TimescaleDB adds such a column to compressed hypertables).
-- charging_sessions.target_soc: the stay's first declared target, like min_soc.

ALTER TABLE telemetry ADD COLUMN target_soc_pct real;

ALTER TABLE charging_sessions ADD COLUMN target_soc real CHECK (target_soc BETWEEN 0 AND 100);
