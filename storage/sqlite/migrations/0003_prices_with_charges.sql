-- The price of each image is stored with its charge (issue 13, rule 6), so a price
-- change never rewrites the past: spend reports sum stored prices.
--
--   * jobs.unit_price_usd: the price per image when the job was admitted (what the
--     server owner was committed to); NULL for jobs admitted before this migration.
--   * ledger.unit_price_usd: copied onto the 'charge' row when the job is settled;
--     NULL on 'reserve' and 'refund' rows, and on charges settled before this
--     migration (reports cost those at the configured price, as before).
-- The alerts channel of /config alerts lives in guild_config's JSON (no column).

ALTER TABLE jobs ADD COLUMN unit_price_usd REAL CHECK (unit_price_usd >= 0);

ALTER TABLE ledger ADD COLUMN unit_price_usd REAL CHECK (unit_price_usd >= 0);

DROP TRIGGER jobs_settle;

CREATE TRIGGER jobs_settle AFTER UPDATE OF state ON jobs
WHEN NEW.state IN ('done', 'failed', 'cancelled')
    AND OLD.state NOT IN ('done', 'failed', 'cancelled')
BEGIN
    INSERT OR IGNORE INTO ledger
        (job_id, guild_id, user_id, kind, images, period_ts, created_at, unit_price_usd)
    VALUES (NEW.id, NEW.scope_id, NEW.user_id, 'charge', NEW.delivered, NEW.admitted_at,
            NEW.updated_at, NEW.unit_price_usd),
           (NEW.id, NEW.scope_id, NEW.user_id, 'refund', NEW.reserved - NEW.delivered,
            NEW.admitted_at, NEW.updated_at, NULL);
END;

-- The monthly spend report reads a server's charges of one month from here.
CREATE INDEX ledger_charges ON ledger (guild_id, kind, period_ts);
