-- Accounts of the platform's API (services/api) and the audit log of its writes.
--
-- One authentication scheme for the operations dashboard, the owner portal, the bidding API and
-- the VTN: an account has one role (flexfleet.auth.roles); an owner account is bound to exactly
-- one owner and sees only that owner's data. Passwords are stored as salted PBKDF2 hashes
-- (flexfleet.auth.passwords), never in clear. Accounts are disabled, not deleted, so the audit
-- log's "who" always names one that existed.

CREATE TABLE accounts (
    username       text PRIMARY KEY CHECK (username ~ '^[a-z0-9][a-z0-9._@+-]{0,63}$'),
    password_hash  text NOT NULL CHECK (password_hash LIKE 'pbkdf2_sha256$%'),
    role           text NOT NULL CHECK (role IN ('operator', 'bidder', 'owner', 'ven', 'admin')),
    owner_id       text REFERENCES owners (owner_id),
    created_at     timestamptz NOT NULL DEFAULT now(),
    disabled       boolean NOT NULL DEFAULT false,
    CHECK ((role = 'owner') = (owner_id IS NOT NULL))
);
CREATE INDEX accounts_owner ON accounts (owner_id) WHERE owner_id IS NOT NULL;

-- Every write through the API (and through the account commands) appends one row: who, when,
-- which route or command, and the object written. Rows are never updated or deleted.
-- `actor` is an account's username, or "cli:<name>" for a command run on the server.
CREATE TABLE audit_log (
    audit_id   bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at         timestamptz NOT NULL DEFAULT now(),
    actor      text NOT NULL CHECK (actor <> ''),
    role       text CHECK (role IN ('operator', 'bidder', 'owner', 'ven', 'admin')),
    action     text NOT NULL CHECK (action <> ''),      -- "POST /v1/bids/plan", "accounts add"
    object     text,                                    -- what was written: "accounts/alice", a plan id
    status     integer,                                 -- the HTTP status answered, when over HTTP
    detail     jsonb NOT NULL DEFAULT '{}'
);
CREATE INDEX audit_log_actor ON audit_log (actor, at);
CREATE INDEX audit_log_object ON audit_log (object, at) WHERE object IS NOT NULL;

CREATE FUNCTION audit_log_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_log is append-only (% refused)', lower(TG_OP) USING ERRCODE = 'restrict_violation';
END $$;

CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION audit_log_append_only();
CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION audit_log_append_only();
