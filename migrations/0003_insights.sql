-- The rules engine's bookkeeping: nudge requests (written in the same transaction as the
-- insight that warrants one; the push worker decides when and whether to send), and the
-- local date of each space's last daily sweep.

CREATE TABLE nudge_requests (
    space_id   text NOT NULL,
    id         text NOT NULL,          -- "{insight id}.{level}": one request per escalation
    insight_id text NOT NULL,
    contact_id text,
    rule       text NOT NULL,
    level      text NOT NULL,
    title      text NOT NULL,
    body       text NOT NULL,
    state      text NOT NULL DEFAULT 'pending'
               CHECK (state IN ('pending', 'sent', 'merged', 'skipped', 'cancelled')),
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (space_id, id)
);
CREATE INDEX nudge_requests_pending ON nudge_requests (created_at) WHERE state = 'pending';

ALTER TABLE spaces ADD COLUMN swept_on date;  -- local date of the last morning sweep
