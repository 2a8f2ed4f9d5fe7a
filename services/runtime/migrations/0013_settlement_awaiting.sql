-- Obligation MTUs a settlement version left out because no delivery was verified for them yet:
-- the market pays only what was proven, so they are not revenue until a later version, when their
-- verification arrives, settles them as adjustments. Kept per version for its operations report.
CREATE TABLE settlement_awaiting (
    zone               text NOT NULL,
    month              date NOT NULL,
    version            integer NOT NULL,
    obligation_id      text NOT NULL,
    product_id         text NOT NULL,
    mtu_start          timestamptz NOT NULL,
    mtu_end            timestamptz NOT NULL,
    volume_mw          numeric NOT NULL,
    price_eur_per_mw_h numeric NOT NULL,
    PRIMARY KEY (zone, month, version, obligation_id, mtu_start),
    FOREIGN KEY (zone, month, version) REFERENCES settlement_runs
);
