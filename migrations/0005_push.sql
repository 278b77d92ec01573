-- The push worker (design brief §6): each nudge request's whole life, the feedback from
-- the phone's action buttons, and provider credentials shared by every worker process.

ALTER TABLE nudge_requests
    ADD COLUMN reason       text,          -- why merged, skipped or cancelled
    ADD COLUMN merged_into  text,          -- the sent nudge whose push carried this one
    ADD COLUMN sent_at      timestamptz,
    ADD COLUMN push_title   text,          -- what the push said (the request keeps the insight's text)
    ADD COLUMN push_body    text,
    ADD COLUMN feedback     text CHECK (feedback IN ('plan', 'already_saw', 'snooze')),
    ADD COLUMN feedback_at  timestamptz,
    ADD COLUMN decided_at   timestamptz;
CREATE INDEX nudge_requests_sent ON nudge_requests (space_id, sent_at) WHERE sent_at IS NOT NULL;
CREATE INDEX nudge_requests_space_pending ON nudge_requests (space_id) WHERE state = 'pending';

-- One provider token per (provider, team, key) for all workers: APNs refuses a token
-- refreshed more often than every 20 minutes (TooManyProviderTokenUpdates) and one older
-- than an hour, so it is minted under this row's lock and reused ~45 minutes. FCM's OAuth
-- access token lives here too. A credential the provider rejected twice is `disabled`:
-- the alarm is raised and that app's sends wait instead of hammering the provider.
CREATE TABLE push_credentials (
    key             text PRIMARY KEY,
    token           text NOT NULL,
    minted_at       timestamptz NOT NULL,
    expires_at      timestamptz NOT NULL,
    disabled_reason text,
    disabled_at     timestamptz
);
