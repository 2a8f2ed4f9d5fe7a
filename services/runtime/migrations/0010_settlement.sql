-- Settlement (services/settlement): runs, the double-entry ledger, owner lines, reconciliation,
-- the exchange rates used, cap usage and owner statement versions.
--
-- A run settles one month of one zone and is written in one transaction, so a crash leaves
-- nothing behind. A rerun whose inputs hash to the digest of the month's last run writes
-- nothing. Changed inputs (late meter data) make a new version: its lines and reconciliation
-- are the month as now known, but its ledger entries are only the differences to what is
-- already posted (kind 'adjustment'). Posted entries and postings are never updated or deleted.
-- Plain tables on both storage paths: a month's ledger is thousands of rows, not a time series.

CREATE TABLE settlement_runs (
    zone          text NOT NULL,
    month         date NOT NULL CHECK (extract(day FROM month) = 1),
    version       integer NOT NULL CHECK (version >= 1),
    input_digest  text NOT NULL,
    status        text NOT NULL CHECK (status IN ('running', 'posted')),
    started_at    timestamptz NOT NULL DEFAULT now(),
    finished_at   timestamptz,
    PRIMARY KEY (zone, month, version),
    CHECK ((status = 'posted') = (finished_at IS NOT NULL))
);

-- The ECB rates a version converted at: what its statements must name.
CREATE TABLE settlement_fx_rates (
    zone           text NOT NULL,
    month          date NOT NULL,
    version        integer NOT NULL,
    from_currency  text NOT NULL CHECK (from_currency IN ('EUR', 'SEK', 'NOK', 'DKK')),
    to_currency    text NOT NULL CHECK (to_currency IN ('EUR', 'SEK', 'NOK', 'DKK')),
    rate_day       date NOT NULL,
    from_per_eur   numeric NOT NULL CHECK (from_per_eur > 0),
    from_rate_day  date NOT NULL,
    to_per_eur     numeric NOT NULL CHECK (to_per_eur > 0),
    to_rate_day    date NOT NULL,
    source         text NOT NULL,
    PRIMARY KEY (zone, month, version, from_currency, to_currency),
    FOREIGN KEY (zone, month, version) REFERENCES settlement_runs
);

CREATE TABLE ledger_entries (
    zone      text NOT NULL,
    month     date NOT NULL,
    version   integer NOT NULL,
    entry_id  text NOT NULL,
    kind      text NOT NULL CHECK (kind IN ('revenue', 'penalty', 'pay', 'close', 'adjustment')),
    seq       integer NOT NULL,                     -- the order settlement produced them in
    adjusts   text,                                 -- adjustment: the entry_id it corrects
    PRIMARY KEY (zone, month, version, entry_id),
    UNIQUE (zone, month, version, seq),
    CHECK ((kind = 'adjustment') = (adjusts IS NOT NULL)),
    FOREIGN KEY (zone, month, version) REFERENCES settlement_runs
);

-- Minor units, debit positive. Every posting names what caused it, where that applies.
CREATE TABLE ledger_postings (
    zone           text NOT NULL,
    month          date NOT NULL,
    version        integer NOT NULL,
    entry_id       text NOT NULL,
    n              integer NOT NULL,
    account_kind   text NOT NULL CHECK (account_kind IN ('market_receivable', 'market_revenue', 'penalty',
                                        'owner_pay', 'wear_pay', 'owner_payable', 'fx_conversion',
                                        'aggregator_margin')),
    account_key    text NOT NULL,
    account_sub    text NOT NULL,
    currency       text NOT NULL CHECK (currency IN ('EUR', 'SEK', 'NOK', 'DKK')),
    amount         bigint NOT NULL CHECK (amount <> 0),
    market         text,
    obligation_id  text,
    mtu            timestamptz,
    vehicle_id     text,
    owner_id       text,
    contract_id    text,
    term_id        text,
    line_id        text,
    PRIMARY KEY (zone, month, version, entry_id, n),
    FOREIGN KEY (zone, month, version, entry_id) REFERENCES ledger_entries
);
CREATE INDEX ledger_postings_owner ON ledger_postings (owner_id, month) WHERE owner_id IS NOT NULL;
CREATE INDEX ledger_postings_obligation ON ledger_postings (obligation_id) WHERE obligation_id IS NOT NULL;

-- An entry that does not sum to zero in every currency cannot commit: checked at commit, once
-- all of a transaction's postings are in (a deferred constraint trigger per posting).
CREATE FUNCTION ledger_entry_balanced() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    off record;
BEGIN
    SELECT currency, sum(amount) AS total INTO off FROM ledger_postings
    WHERE zone = NEW.zone AND month = NEW.month AND version = NEW.version AND entry_id = NEW.entry_id
    GROUP BY currency HAVING sum(amount) <> 0 LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'ledger entry % (% % v%) does not balance: % % off', NEW.entry_id, NEW.zone, NEW.month,
            NEW.version, off.total, off.currency USING ERRCODE = 'check_violation';
    END IF;
    RETURN NULL;
END $$;

CREATE CONSTRAINT TRIGGER ledger_postings_balanced AFTER INSERT ON ledger_postings
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION ledger_entry_balanced();

-- Posted is posted: a correction is an adjustment entry in a new version.
CREATE FUNCTION ledger_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '% is append-only: post an adjustment instead of % (%)', TG_TABLE_NAME, lower(TG_OP),
        'settlement never rewrites a posted month' USING ERRCODE = 'restrict_violation';
END $$;

CREATE TRIGGER ledger_entries_append_only BEFORE UPDATE OR DELETE ON ledger_entries
    FOR EACH ROW EXECUTE FUNCTION ledger_append_only();
CREATE TRIGGER ledger_postings_append_only BEFORE UPDATE OR DELETE ON ledger_postings
    FOR EACH ROW EXECUTE FUNCTION ledger_append_only();
CREATE TRIGGER ledger_entries_no_truncate BEFORE TRUNCATE ON ledger_entries
    FOR EACH STATEMENT EXECUTE FUNCTION ledger_append_only();
CREATE TRIGGER ledger_postings_no_truncate BEFORE TRUNCATE ON ledger_postings
    FOR EACH STATEMENT EXECUTE FUNCTION ledger_append_only();

-- The owner lines of a version: the month's pay as known when it was settled.
CREATE TABLE settlement_lines (
    zone           text NOT NULL,
    month          date NOT NULL,
    version        integer NOT NULL,
    line_id        text NOT NULL,
    seq            integer NOT NULL,
    owner_id       text NOT NULL,
    contract_id    text NOT NULL,
    vehicle_id     text,
    source         text NOT NULL,
    term_id        text NOT NULL,
    currency       text NOT NULL CHECK (currency IN ('EUR', 'SEK', 'NOK', 'DKK')),
    amount         bigint NOT NULL,
    quantity       numeric NOT NULL,
    unit           text NOT NULL,
    rate           numeric,
    rate_unit      text NOT NULL,
    period_start   timestamptz NOT NULL,
    period_end     timestamptz NOT NULL,
    obligation_id  text,
    market         text,
    mtu            timestamptz,
    forfeited      bigint NOT NULL DEFAULT 0,
    note           text NOT NULL DEFAULT '',
    parts          jsonb NOT NULL DEFAULT '[]',     -- [{market, market_currency, amount, market_amount}]
    PRIMARY KEY (zone, month, version, line_id),
    FOREIGN KEY (zone, month, version) REFERENCES settlement_runs
);
CREATE INDEX settlement_lines_owner ON settlement_lines (owner_id, month);

CREATE TABLE settlement_reconciliation (
    zone       text NOT NULL,
    month      date NOT NULL,
    version    integer NOT NULL,
    market     text NOT NULL,
    currency   text NOT NULL CHECK (currency IN ('EUR', 'SEK', 'NOK', 'DKK')),
    revenue    bigint NOT NULL,
    penalties  bigint NOT NULL,
    owner_pay  bigint NOT NULL,
    wear_pay   bigint NOT NULL,
    margin     bigint NOT NULL,
    PRIMARY KEY (zone, month, version, market, currency),
    CHECK (revenue = owner_pay + wear_pay + penalties + margin),
    FOREIGN KEY (zone, month, version) REFERENCES settlement_runs
);

-- What each contract's annual cap had counted by the end of the month (the next month's input).
CREATE TABLE settlement_cap_usage (
    zone         text NOT NULL,
    month        date NOT NULL,
    version      integer NOT NULL,
    contract_id  text NOT NULL,
    year         integer NOT NULL,
    counted      bigint NOT NULL CHECK (counted >= 0),
    PRIMARY KEY (zone, month, version, contract_id),
    FOREIGN KEY (zone, month, version) REFERENCES settlement_runs
);

-- One statement per owner, month and version, per currency: version n > 1 shows what the
-- last issued version paid (previous_total) and pays the difference.
CREATE TABLE owner_statements (
    zone            text NOT NULL,
    month           date NOT NULL,
    owner_id        text NOT NULL,
    version         integer NOT NULL,
    currency        text NOT NULL CHECK (currency IN ('EUR', 'SEK', 'NOK', 'DKK')),
    total           bigint NOT NULL,
    previous_total  bigint,                          -- null on version 1
    PRIMARY KEY (zone, month, owner_id, version, currency),
    CHECK ((version = 1) = (previous_total IS NULL)),
    FOREIGN KEY (zone, month, version) REFERENCES settlement_runs
);
