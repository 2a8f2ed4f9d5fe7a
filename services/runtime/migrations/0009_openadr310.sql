-- OpenADR 3.1.0 next to 3.0.1 on the same objects (services/dispatcher/vtn/README.md, "3.1.0").
--
-- version: the API version whose shape the body is stored in; the other version's readers get
-- it converted (flexfleet.openadr.models310.view). Rows from before this migration are 3.0.1's.
-- target_values: 3.1.0's targets, untyped strings (for a 3.0.1 body, the values of its
-- valuesMap targets), next to 0006's typed target_keys; 3.1.0's reads and filters use them.
-- owner_client: the OAuth2 client that wrote a report or subscription, 3.1.0's clientID.
-- ends_at: when an event has transpired (null: open-ended or not known when written), for
-- 3.1.0's `active` filter.
-- A 3.1.0 subscription may name no program (it hears of all of them).

ALTER TABLE oadr_programs ADD COLUMN version text NOT NULL DEFAULT '3.0.1' CHECK (version IN ('3.0.1', '3.1.0')),
                          ADD COLUMN target_values text[] NOT NULL DEFAULT '{}';
ALTER TABLE oadr_events ADD COLUMN version text NOT NULL DEFAULT '3.0.1' CHECK (version IN ('3.0.1', '3.1.0')),
                        ADD COLUMN target_values text[] NOT NULL DEFAULT '{}',
                        ADD COLUMN ends_at timestamptz;
ALTER TABLE oadr_reports ADD COLUMN version text NOT NULL DEFAULT '3.0.1' CHECK (version IN ('3.0.1', '3.1.0')),
                         ADD COLUMN owner_client text;
ALTER TABLE oadr_subscriptions ADD COLUMN version text NOT NULL DEFAULT '3.0.1'
                                   CHECK (version IN ('3.0.1', '3.1.0')),
                               ADD COLUMN target_values text[] NOT NULL DEFAULT '{}',
                               ADD COLUMN owner_client text,
                               ALTER COLUMN program_id DROP NOT NULL;
ALTER TABLE oadr_vens ADD COLUMN version text NOT NULL DEFAULT '3.0.1' CHECK (version IN ('3.0.1', '3.1.0')),
                      ADD COLUMN target_values text[] NOT NULL DEFAULT '{}';
ALTER TABLE oadr_resources ADD COLUMN version text NOT NULL DEFAULT '3.0.1' CHECK (version IN ('3.0.1', '3.1.0')),
                           ADD COLUMN target_values text[] NOT NULL DEFAULT '{}';

-- The untyped values of a 3.0.1 body's targets, as models310.target_texts has them.
CREATE FUNCTION pg_temp.oadr_target_values(body jsonb) RETURNS text[] LANGUAGE sql IMMUTABLE AS $$
    SELECT COALESCE(array_agg(DISTINCT x), '{}') FROM (
        SELECT CASE jsonb_typeof(v) WHEN 'string' THEN v #>> '{}' ELSE v::text END AS x
        FROM jsonb_array_elements(CASE jsonb_typeof(body -> 'targets') WHEN 'array' THEN body -> 'targets'
                                       ELSE '[]'::jsonb END) t,
             jsonb_array_elements(CASE jsonb_typeof(t -> 'values') WHEN 'array' THEN t -> 'values'
                                       ELSE '[]'::jsonb END) v
        WHERE jsonb_typeof(v) <> 'object') s
    WHERE length(x) BETWEEN 1 AND 128
$$;
UPDATE oadr_programs SET target_values = pg_temp.oadr_target_values(body);
UPDATE oadr_events SET target_values = pg_temp.oadr_target_values(body);
UPDATE oadr_subscriptions SET target_values = pg_temp.oadr_target_values(body);
UPDATE oadr_vens SET target_values = pg_temp.oadr_target_values(body);
UPDATE oadr_resources SET target_values = pg_temp.oadr_target_values(body);
DROP FUNCTION pg_temp.oadr_target_values(jsonb);

-- Earlier writers, as well as they can be told: a VEN's client, else the business logic's.
UPDATE oadr_reports r SET owner_client = (SELECT min(c.client_id) FROM oadr_clients c WHERE c.ven_name = r.owner_ven);
UPDATE oadr_subscriptions s SET owner_client = CASE WHEN s.owner_ven IS NULL
    THEN (SELECT min(c.client_id) FROM oadr_clients c WHERE c.role = 'BL')
    ELSE (SELECT min(c.client_id) FROM oadr_clients c WHERE c.ven_name = s.owner_ven) END;

CREATE INDEX oadr_programs_target_values ON oadr_programs USING gin (target_values);
CREATE INDEX oadr_events_target_values ON oadr_events USING gin (target_values);
CREATE INDEX oadr_events_ends ON oadr_events (ends_at);
CREATE INDEX oadr_vens_target_values ON oadr_vens USING gin (target_values);
CREATE INDEX oadr_resources_target_values ON oadr_resources USING gin (target_values);
CREATE INDEX oadr_resources_ven ON oadr_resources (ven_id, seq);
CREATE INDEX oadr_subscriptions_any_program ON oadr_subscriptions (seq) WHERE program_id IS NULL;
