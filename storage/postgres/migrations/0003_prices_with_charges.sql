-- The price of each image is stored with its charge: storage/sqlite/migrations/0003 in
-- PostgreSQL (see there). jobs.unit_price_usd is set at admission; the settle trigger
-- copies it onto the 'charge' row (NULL on 'reserve' and 'refund' rows).

ALTER TABLE jobs ADD COLUMN unit_price_usd DOUBLE PRECISION CHECK (unit_price_usd >= 0);

ALTER TABLE ledger ADD COLUMN unit_price_usd DOUBLE PRECISION CHECK (unit_price_usd >= 0);

CREATE OR REPLACE FUNCTION jobs_settle() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO ledger
        (job_id, guild_id, user_id, kind, images, period_ts, created_at, unit_price_usd)
    VALUES (NEW.id, NEW.scope_id, NEW.user_id, 'charge', NEW.delivered, NEW.admitted_at,
            NEW.updated_at, NEW.unit_price_usd),
           (NEW.id, NEW.scope_id, NEW.user_id, 'refund', NEW.reserved - NEW.delivered,
            NEW.admitted_at, NEW.updated_at, NULL)
    ON CONFLICT (job_id, kind) DO NOTHING;
    RETURN NULL;
END;
$$;

-- The monthly spend report reads a server's charges of one month from here.
CREATE INDEX ledger_charges ON ledger (guild_id, kind, period_ts);
