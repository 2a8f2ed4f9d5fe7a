-- One authentication scheme: the VTN's OAuth2 clients become accounts of the platform.
--
-- A VEN's client is a `ven` account bound to its venName; the business logic's client is an
-- `operator` account (the operator role holds OpenADR's BL scopes). Both fetch tokens with the
-- client-credentials grant, their username and secret standing for client_id and client_secret,
-- and the whole API (the VTN included) takes the one kind of token (flexfleet.auth.tokens).

ALTER TABLE accounts ADD COLUMN ven_name text;
ALTER TABLE accounts ADD CONSTRAINT accounts_ven_name CHECK ((role = 'ven') = (ven_name IS NOT NULL AND ven_name <> ''));
CREATE INDEX accounts_ven ON accounts (ven_name) WHERE ven_name IS NOT NULL;

-- Client ids were free text; usernames are lower case. A client id no username can be fails the
-- migration, naming it, rather than leaving a VEN unable to log in.
DO $$
DECLARE bad text;
BEGIN
    SELECT string_agg(client_id, ', ') INTO bad FROM oadr_clients
     WHERE lower(client_id) !~ '^[a-z0-9][a-z0-9._@+-]{0,63}$';
    IF bad IS NOT NULL THEN
        RAISE EXCEPTION 'OpenADR client ids that cannot be usernames: % (rename them, then migrate again)', bad;
    END IF;
    SELECT string_agg(c.client_id, ', ') INTO bad FROM oadr_clients c JOIN accounts a ON a.username = lower(c.client_id);
    IF bad IS NOT NULL THEN
        RAISE EXCEPTION 'OpenADR client ids already taken by accounts: %', bad;
    END IF;
END $$;

INSERT INTO accounts (username, password_hash, role, ven_name, created_at)
SELECT lower(client_id), secret_hash, CASE role WHEN 'VEN' THEN 'ven' ELSE 'operator' END, ven_name, created_at
  FROM oadr_clients;

UPDATE oadr_reports SET owner_client = lower(owner_client) WHERE owner_client <> lower(owner_client);
UPDATE oadr_subscriptions SET owner_client = lower(owner_client) WHERE owner_client <> lower(owner_client);

INSERT INTO audit_log (actor, action, object, detail)
SELECT 'migration:0014', 'accounts add', 'accounts/' || lower(client_id),
       jsonb_build_object('role', CASE role WHEN 'VEN' THEN 'ven' ELSE 'operator' END, 'ven_name', ven_name,
                          'from', 'oadr_clients')
  FROM oadr_clients;

DROP TABLE oadr_clients;
