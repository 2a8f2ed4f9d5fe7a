-- The OpenADR 3.0.1 VTN's objects and the OAuth2 clients allowed to use it.
--
-- Each object is kept as the JSON body the API returns (body), plus the columns its searches
-- and access rules filter on. target_keys holds one string per (type, value) pair of the
-- object's targets (flexfleet.openadr.targets.target_key), so "targeted at X" is an array
-- overlap answered by a GIN index. seq orders search results for stable pagination.
-- owner_ven is the venName of the VEN client that wrote a report or subscription (null when
-- the business logic did): a VEN sees only its own.

CREATE TABLE oadr_programs (
    id             text PRIMARY KEY,
    seq            bigint GENERATED ALWAYS AS IDENTITY UNIQUE,
    program_name   text NOT NULL CONSTRAINT oadr_programs_program_name_key UNIQUE,
    target_keys    text[] NOT NULL DEFAULT '{}',
    target_types   text[] NOT NULL DEFAULT '{}',
    body           jsonb NOT NULL,
    created_at     timestamptz NOT NULL,
    modified_at    timestamptz NOT NULL
);
CREATE INDEX oadr_programs_targets ON oadr_programs USING gin (target_keys);

-- An event's name is unique within its program (the spec's 409 "event with same name").
CREATE TABLE oadr_events (
    id             text PRIMARY KEY,
    seq            bigint GENERATED ALWAYS AS IDENTITY UNIQUE,
    program_id     text NOT NULL CONSTRAINT oadr_events_program_id_fkey
                       REFERENCES oadr_programs ON DELETE CASCADE,
    event_name     text,
    target_keys    text[] NOT NULL DEFAULT '{}',
    target_types   text[] NOT NULL DEFAULT '{}',
    body           jsonb NOT NULL,
    created_at     timestamptz NOT NULL,
    modified_at    timestamptz NOT NULL,
    CONSTRAINT oadr_events_event_name_key UNIQUE (program_id, event_name),
    UNIQUE (id, program_id)
);
CREATE INDEX oadr_events_program ON oadr_events (program_id, seq);
CREATE INDEX oadr_events_targets ON oadr_events USING gin (target_keys);

-- A report's event must belong to the report's program.
CREATE TABLE oadr_reports (
    id             text PRIMARY KEY,
    seq            bigint GENERATED ALWAYS AS IDENTITY UNIQUE,
    program_id     text NOT NULL,
    event_id       text NOT NULL,
    client_name    text NOT NULL,
    owner_ven      text,
    body           jsonb NOT NULL,
    created_at     timestamptz NOT NULL,
    modified_at    timestamptz NOT NULL,
    CONSTRAINT oadr_reports_event_id_fkey FOREIGN KEY (event_id, program_id)
        REFERENCES oadr_events (id, program_id) ON DELETE CASCADE
);
CREATE INDEX oadr_reports_event ON oadr_reports (event_id, seq);
CREATE INDEX oadr_reports_program ON oadr_reports (program_id, seq);
CREATE INDEX oadr_reports_owner ON oadr_reports (owner_ven, seq);
CREATE INDEX oadr_reports_client ON oadr_reports (client_name, seq);

CREATE TABLE oadr_subscriptions (
    id             text PRIMARY KEY,
    seq            bigint GENERATED ALWAYS AS IDENTITY UNIQUE,
    program_id     text NOT NULL CONSTRAINT oadr_subscriptions_program_id_fkey
                       REFERENCES oadr_programs ON DELETE CASCADE,
    client_name    text NOT NULL,
    owner_ven      text,
    object_types   text[] NOT NULL DEFAULT '{}',
    target_keys    text[] NOT NULL DEFAULT '{}',
    target_types   text[] NOT NULL DEFAULT '{}',
    body           jsonb NOT NULL,
    created_at     timestamptz NOT NULL,
    modified_at    timestamptz NOT NULL
);
CREATE INDEX oadr_subscriptions_program ON oadr_subscriptions (program_id, seq);
CREATE INDEX oadr_subscriptions_client ON oadr_subscriptions (client_name, seq);
CREATE INDEX oadr_subscriptions_objects ON oadr_subscriptions USING gin (object_types);

CREATE TABLE oadr_vens (
    id             text PRIMARY KEY,
    seq            bigint GENERATED ALWAYS AS IDENTITY UNIQUE,
    ven_name       text NOT NULL CONSTRAINT oadr_vens_ven_name_key UNIQUE,
    target_keys    text[] NOT NULL DEFAULT '{}',
    target_types   text[] NOT NULL DEFAULT '{}',
    body           jsonb NOT NULL,
    created_at     timestamptz NOT NULL,
    modified_at    timestamptz NOT NULL
);
CREATE INDEX oadr_vens_targets ON oadr_vens USING gin (target_keys);

-- A resource's name is unique within its VEN.
CREATE TABLE oadr_resources (
    id             text PRIMARY KEY,
    seq            bigint GENERATED ALWAYS AS IDENTITY UNIQUE,
    ven_id         text NOT NULL REFERENCES oadr_vens ON DELETE CASCADE,
    resource_name  text NOT NULL,
    target_keys    text[] NOT NULL DEFAULT '{}',
    target_types   text[] NOT NULL DEFAULT '{}',
    body           jsonb NOT NULL,
    created_at     timestamptz NOT NULL,
    modified_at    timestamptz NOT NULL,
    CONSTRAINT oadr_resources_resource_name_key UNIQUE (ven_id, resource_name)
);
CREATE INDEX oadr_resources_targets ON oadr_resources USING gin (target_keys);

-- OAuth2 clients: the business logic (BL) or one VEN, bound to its venName.
CREATE TABLE oadr_clients (
    client_id      text PRIMARY KEY,
    secret_hash    text NOT NULL,
    role           text NOT NULL CHECK (role IN ('BL', 'VEN')),
    ven_name       text,
    created_at     timestamptz NOT NULL DEFAULT now(),
    CHECK ((role = 'VEN') = (ven_name IS NOT NULL))
);
