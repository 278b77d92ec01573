-- Durable background jobs (design brief §6): every piece of background work is a row here,
-- claimed with FOR UPDATE SKIP LOCKED under a lease that expires, so a killed worker's job
-- is taken again by another. Redis only wakes idle workers sooner.

CREATE TABLE jobs (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    kind         text NOT NULL,
    space_id     text,                      -- whose job it is (account deletion reaches it)
    dedupe_key   text,                      -- at most one queued job per (kind, dedupe_key)
    payload      jsonb NOT NULL DEFAULT '{}',
    state        text NOT NULL DEFAULT 'queued'
                 CHECK (state IN ('queued', 'running', 'dead')),
    run_at       timestamptz NOT NULL DEFAULT now(),
    attempts     integer NOT NULL DEFAULT 0,
    max_attempts integer NOT NULL DEFAULT 8,
    lease_until  timestamptz,
    locked_by    text,
    last_error   text,
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now()
);

-- Claiming reads the oldest due queued jobs; the reaper reads expired leases.
CREATE INDEX jobs_due     ON jobs (run_at) WHERE state = 'queued';
CREATE INDEX jobs_leases  ON jobs (lease_until) WHERE state = 'running';
CREATE INDEX jobs_space   ON jobs (space_id) WHERE space_id IS NOT NULL;
-- Debounce: enqueueing a job that is already queued for the same key does nothing.
CREATE UNIQUE INDEX jobs_dedupe ON jobs (kind, dedupe_key)
    WHERE state = 'queued' AND dedupe_key IS NOT NULL;
