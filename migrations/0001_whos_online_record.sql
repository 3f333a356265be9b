-- The all-time record of who's online: one row (id = 1), raised atomically with GREATEST.
CREATE TABLE IF NOT EXISTS whos_online_record (
    id                SMALLINT    PRIMARY KEY CHECK (id = 1),
    max_users         BIGINT      NOT NULL DEFAULT 0 CHECK (max_users >= 0),
    max_users_date    TIMESTAMPTZ NULL,
    max_visitors      BIGINT      NOT NULL DEFAULT 0 CHECK (max_visitors >= 0),
    max_visitors_date TIMESTAMPTZ NULL
);
