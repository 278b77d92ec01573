-- Each person's space id is kept on the person (`users.space_id`, unique): login finds the
-- space without a join, and "one space per person" no longer rests on spaces' UNIQUE
-- (owner_id), which Citus cannot enforce on a table distributed by the space id
-- (docs/decisions/0030-distributed-by-space-on-citus.md). Spaces are created only with
-- their user, in the same transaction (service/store/accounts.py: insert_user).
--
-- Expand only: the column stays nullable, because the previous release's APIs keep
-- registering people (without it) until the rollout ends; login finds their space by owner
-- (accounts.user_by_email). A later release backfills those rows and sets NOT NULL.
ALTER TABLE users ADD COLUMN space_id text;
UPDATE users u SET space_id = s.id FROM spaces s WHERE s.owner_id = u.id;
CREATE UNIQUE INDEX users_space_id_key ON users (space_id);
ALTER TABLE spaces DROP CONSTRAINT spaces_owner_id_key;
CREATE INDEX spaces_owner ON spaces (owner_id);
