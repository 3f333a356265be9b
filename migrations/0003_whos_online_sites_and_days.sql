-- The record per site, and the daily history per site. A site is the prefix the
-- instances of one installation share (`Builder::prefix`), so two installations
-- with different prefixes can share one database without sharing a record.
CREATE TABLE IF NOT EXISTS whos_online_site_record (
    site              TEXT        PRIMARY KEY,
    max_users         BIGINT      NOT NULL DEFAULT 0 CHECK (max_users >= 0),
    max_users_date    TIMESTAMPTZ NULL,
    max_visitors      BIGINT      NOT NULL DEFAULT 0 CHECK (max_visitors >= 0),
    max_visitors_date TIMESTAMPTZ NULL,
    generation        BIGINT      NOT NULL DEFAULT 0 CHECK (generation >= 0)
);

-- The record of before, which every site shared, is kept under the empty site
-- name: the first site to read its record after the upgrade adopts it (see
-- docs/history.md). The old table stays as it was, so an older version of the
-- crate still runs against this database.
INSERT INTO whos_online_site_record
    (site, max_users, max_users_date, max_visitors, max_visitors_date, generation)
SELECT '', max_users, max_users_date, max_visitors, max_visitors_date, generation
FROM whos_online_record WHERE id = 1
ON CONFLICT (site) DO NOTHING;

-- One row per site and UTC day: the highest counts seen that day and when they
-- were first reached, raised with GREATEST by every tick, and the distinct users
-- and visitors of the day (HyperLogLog estimates with Redis, exact in memory).
CREATE TABLE IF NOT EXISTS whos_online_day (
    site              TEXT        NOT NULL,
    day               DATE        NOT NULL,
    max_users         BIGINT      NOT NULL DEFAULT 0 CHECK (max_users >= 0),
    max_users_at      TIMESTAMPTZ NULL,
    max_visitors      BIGINT      NOT NULL DEFAULT 0 CHECK (max_visitors >= 0),
    max_visitors_at   TIMESTAMPTZ NULL,
    max_bots          BIGINT      NOT NULL DEFAULT 0 CHECK (max_bots >= 0),
    max_bots_at       TIMESTAMPTZ NULL,
    distinct_users    BIGINT      NOT NULL DEFAULT 0 CHECK (distinct_users >= 0),
    distinct_visitors BIGINT      NOT NULL DEFAULT 0 CHECK (distinct_visitors >= 0),
    PRIMARY KEY (site, day)
);
