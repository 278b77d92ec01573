-- A help request closes its loop (issue 17, decision 0060): a caregiver acknowledges an
-- alert ("I'm on it"), the person's devices learn who saw it, the other caregivers see it,
-- nobody answering climbs a ladder of repeats to "no response", and a resolution ends it.

-- The alert's own state. The first acknowledgement wins (acknowledged_*); every one is in
-- care_acknowledgements. A resolved alert also has cleared_at set, so every reader of
-- "open alerts" (cleared_at IS NULL) stops showing it.
ALTER TABLE care_alerts
    ADD COLUMN acknowledged_at      timestamptz,
    ADD COLUMN acknowledged_link_id text,      -- the first caregiver's link
    ADD COLUMN resolved_at          timestamptz,
    -- 'person' (the older adult said all is well), 'check_in' (a later ok check-in) or the
    -- resolving caregiver's link id
    ADD COLUMN resolved_by          text,
    ADD COLUMN ladder_step          smallint NOT NULL DEFAULT 0, -- the last rung climbed
    ADD COLUMN no_response_at       timestamptz;
CREATE INDEX care_alerts_no_response ON care_alerts (no_response_at)
    WHERE no_response_at IS NOT NULL;

-- Every caregiver's acknowledgement, once per caregiver and alert (a retry changes nothing).
CREATE TABLE care_acknowledgements (
    space_id           text NOT NULL,          -- the older adult's space
    alert_id           text NOT NULL,
    link_id            text NOT NULL,
    caregiver_user_id  text NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    channel            text NOT NULL CHECK (channel IN ('api', 'web', 'push')),
    acknowledged_at    timestamptz NOT NULL,
    PRIMARY KEY (space_id, alert_id, link_id)
);

-- The audit now holds what caregivers did as well as what they looked at, and the older
-- adult's own resolutions (no link: they acted themselves).
ALTER TABLE care_audit
    ADD COLUMN action   text NOT NULL DEFAULT 'viewed'
                        CHECK (action IN ('viewed', 'acknowledged', 'resolved')),
    ADD COLUMN alert_id text,
    ALTER COLUMN link_id DROP NOT NULL,
    DROP CONSTRAINT care_audit_channel_check,
    ADD CONSTRAINT care_audit_channel_check CHECK (channel IN ('api', 'web', 'push'));

-- The person's own view of their alerts: a server-written synced table (schemas/tables.py).
CREATE TABLE alerts (LIKE contacts INCLUDING DEFAULTS INCLUDING CONSTRAINTS, PRIMARY KEY (space_id, id));
CREATE INDEX alerts_seq ON alerts (space_id, seq);
CREATE INDEX alerts_tombstones ON alerts (updated_at) WHERE deleted;
