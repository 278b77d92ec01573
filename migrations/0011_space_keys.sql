-- Private text encrypted at rest (issue 13; decision 0021).
--
-- One data key per person's space, stored only wrapped: AES-GCM under the master key
-- `master_kid` (from the configuration, never in the database), with the space id and the
-- kid as associated data. Notes, reflections and check-in notes are sealed with it in the
-- records' JSONB and in the conflict history. Deleting this row is what makes every copy
-- of that text unreadable, backups included: the account's erasure does it first.
-- `kith rotate-keys` re-wraps rows under the current master key (`rewrapped_at`).
-- Keyed by space: distributed by space and colocated with `spaces` on Citus.
CREATE TABLE space_keys (
    space_id      text PRIMARY KEY,
    master_kid    text NOT NULL,
    wrapped       bytea NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    rewrapped_at  timestamptz
);
