-- Kith schema v1: accounts, devices, sessions, the synced tables and their bookkeeping.
--
-- Every synced table is keyed (space_id, id) and carries the merge state of its record:
-- current field values, the HLC that wrote each field, the tombstone flag with its own
-- clock, and the space-local sequence number of its latest change (the pull cursor
-- orders by it). space_id leads every key so the schema distributes on Citus unchanged.

CREATE TABLE users (
    id            text PRIMARY KEY,
    email         text NOT NULL,
    password_hash text NOT NULL,
    display_name  text NOT NULL,
    time_zone     text NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX users_email_key ON users (lower(email));

-- One space per user; the counter hands out sequence numbers. A push takes this row's
-- lock for its whole transaction, so commits inside a space happen in seq order.
CREATE TABLE spaces (
    id          text PRIMARY KEY,
    owner_id    text NOT NULL UNIQUE REFERENCES users (id) ON DELETE CASCADE,
    seq         bigint NOT NULL DEFAULT 0,
    -- highest seq of a tombstone purged past the horizon: older cursors must reset
    purged_seq  bigint NOT NULL DEFAULT 0,
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE devices (
    user_id                text NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    id                     text NOT NULL,
    platform               text NOT NULL,
    name                   text NOT NULL DEFAULT '',
    created_at             timestamptz NOT NULL DEFAULT now(),
    last_seen_at           timestamptz,
    revoked_at             timestamptz,
    push_provider          text,
    push_token             text,
    push_environment       text,
    push_topic             text,
    push_keys              jsonb,
    push_token_updated_at  timestamptz,
    PRIMARY KEY (user_id, id)
);

-- A login on a device starts a token family; every refresh token and access token names
-- its family, so revoking the family (logout, refresh-token reuse) ends them all at once.
CREATE TABLE token_families (
    id             text PRIMARY KEY,
    user_id        text NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    device_id      text NOT NULL,
    space_id       text NOT NULL,
    created_at     timestamptz NOT NULL DEFAULT now(),
    revoked_at     timestamptz,
    revoked_reason text
);
CREATE INDEX token_families_device ON token_families (user_id, device_id) WHERE revoked_at IS NULL;

CREATE TABLE refresh_tokens (
    token_hash  bytea PRIMARY KEY,          -- sha256 of the token; the token itself is never stored
    family_id   text NOT NULL REFERENCES token_families (id) ON DELETE CASCADE,
    created_at  timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz NOT NULL,
    used_at     timestamptz
);
CREATE INDEX refresh_tokens_family ON refresh_tokens (family_id);

CREATE TABLE contacts (
    space_id    text NOT NULL,
    id          text NOT NULL,
    fields      jsonb NOT NULL DEFAULT '{}',
    clocks      jsonb NOT NULL DEFAULT '{}',
    deleted     boolean NOT NULL DEFAULT false,
    deleted_hlc text NOT NULL DEFAULT '',
    hlc         text NOT NULL,
    seq         bigint NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (space_id, id)
);
CREATE TABLE interactions   (LIKE contacts INCLUDING DEFAULTS INCLUDING CONSTRAINTS, PRIMARY KEY (space_id, id));
CREATE TABLE reflections    (LIKE contacts INCLUDING DEFAULTS INCLUDING CONSTRAINTS, PRIMARY KEY (space_id, id));
CREATE TABLE check_ins      (LIKE contacts INCLUDING DEFAULTS INCLUDING CONSTRAINTS, PRIMARY KEY (space_id, id));
CREATE TABLE settings       (LIKE contacts INCLUDING DEFAULTS INCLUDING CONSTRAINTS, PRIMARY KEY (space_id, id));
CREATE TABLE insights       (LIKE contacts INCLUDING DEFAULTS INCLUDING CONSTRAINTS, PRIMARY KEY (space_id, id));
CREATE TABLE care_summaries (LIKE contacts INCLUDING DEFAULTS INCLUDING CONSTRAINTS, PRIMARY KEY (space_id, id));

-- The pull reads "seq > cursor ORDER BY seq" per space: one index per table, merged by
-- a Merge Append in the pull query. The partial indexes serve the tombstone purge.
CREATE INDEX contacts_seq       ON contacts (space_id, seq);
CREATE INDEX interactions_seq   ON interactions (space_id, seq);
CREATE INDEX reflections_seq    ON reflections (space_id, seq);
CREATE INDEX check_ins_seq      ON check_ins (space_id, seq);
CREATE INDEX settings_seq       ON settings (space_id, seq);
CREATE INDEX insights_seq       ON insights (space_id, seq);
CREATE INDEX care_summaries_seq ON care_summaries (space_id, seq);
CREATE INDEX contacts_tombstones       ON contacts (updated_at) WHERE deleted;
CREATE INDEX interactions_tombstones   ON interactions (updated_at) WHERE deleted;
CREATE INDEX reflections_tombstones    ON reflections (updated_at) WHERE deleted;
CREATE INDEX check_ins_tombstones      ON check_ins (updated_at) WHERE deleted;
CREATE INDEX settings_tombstones       ON settings (updated_at) WHERE deleted;
CREATE INDEX insights_tombstones       ON insights (updated_at) WHERE deleted;
CREATE INDEX care_summaries_tombstones ON care_summaries (updated_at) WHERE deleted;

-- A push's stored response, so a retried batch_id answers the same and changes nothing.
CREATE TABLE sync_batches (
    space_id   text NOT NULL,
    batch_id   text NOT NULL,
    device_id  text NOT NULL,
    response   bytea NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (space_id, batch_id)
);
CREATE INDEX sync_batches_age ON sync_batches (created_at);

-- Values that lost a merge or were overwritten by another device, kept for the owner.
CREATE TABLE conflicts (
    space_id    text NOT NULL,
    id          bigint GENERATED ALWAYS AS IDENTITY,
    tbl         text NOT NULL,
    record_id   text NOT NULL,
    field       text NOT NULL,
    value       jsonb NOT NULL,
    hlc         text NOT NULL,
    winner_hlc  text NOT NULL,
    reason      text NOT NULL,
    recorded_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (space_id, id)
);
CREATE INDEX conflicts_age ON conflicts (recorded_at);

CREATE INDEX devices_push_token ON devices (push_provider, push_token) WHERE push_token IS NOT NULL;
