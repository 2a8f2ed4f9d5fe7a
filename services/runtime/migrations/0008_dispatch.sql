-- The dispatcher's business-logic side (services/dispatcher/bl.py): which OpenADR events carry
-- each obligation, and every re-dispatch inside a bundle.
--
-- No foreign keys to the oadr_* tables: the VTN may run on another database; the VTN's ids are
-- kept as text. An obligation's events are found again by eventName "<obligation_id>@<venName>",
-- unique within the product's program, so a crash between creating an event and recording it
-- here is repaired on the next run, not duplicated.

-- An obligation whose events were all sent: a rerun skips it.
CREATE TABLE dispatch_obligations (
    obligation_id  text PRIMARY KEY REFERENCES obligations ON DELETE CASCADE,
    program_id     text NOT NULL,                 -- the product's program in the VTN
    dispatched_at  timestamptz NOT NULL DEFAULT now()
);

-- One event per obligation and site VEN; body is the event as last sent (request body), which
-- flexfleet.dispatch.signals.parse_event reads back: the dispatch state re-dispatch starts from.
CREATE TABLE dispatch_events (
    obligation_id  text NOT NULL REFERENCES obligations ON DELETE CASCADE,
    ven_name       text NOT NULL,
    program_id     text NOT NULL,
    event_id       text NOT NULL UNIQUE,
    event_name     text NOT NULL,
    body           jsonb NOT NULL,
    created_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (obligation_id, ven_name)
);
CREATE INDEX dispatch_events_ven ON dispatch_events (ven_name);

-- A vehicle's share moved to the rest of its bundle from from_ts on: it left early, went
-- offline, or had no known charger when the obligation was dispatched (unplaced). uncovered_kw
-- is the most kW nobody could take at any time after from_ts: a risk operations must see.
-- moves: per slot [{start, end, share_kw, taken: {vehicle_id: kW}, uncovered_kw}].
CREATE TABLE dispatch_moves (
    obligation_id  text NOT NULL REFERENCES obligations ON DELETE CASCADE,
    vehicle_id     text NOT NULL,
    from_ts        timestamptz NOT NULL,
    reason         text NOT NULL CHECK (reason IN ('left', 'offline', 'unplaced')),
    share_kw       double precision NOT NULL CHECK (share_kw >= 0),
    uncovered_kw   double precision NOT NULL CHECK (uncovered_kw >= 0),
    moves          jsonb NOT NULL,
    recorded_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (obligation_id, vehicle_id, from_ts)
);
CREATE INDEX dispatch_moves_vehicle ON dispatch_moves (vehicle_id, from_ts);
CREATE INDEX dispatch_moves_at_risk ON dispatch_moves (recorded_at) WHERE uncovered_kw > 0;
