-- Account lifecycle (issue 13): erasure and consent.
--
-- A deletion request scrubs the sign-in (email, password hash) and signs every device out at
-- once, marks the account `erasing_at`, and queues an `account_erase` job in the same
-- transaction; the job removes everything else in steps that can be re-run, and its last
-- step deletes this row (and the job itself).
ALTER TABLE users ADD COLUMN erasing_at timestamptz;

-- Consent: which version of the privacy terms the person accepted, when, and when they
-- explicitly agreed that Kith may process wellbeing data (moods, loneliness and wellbeing
-- scores, check-ins). A new required version makes sync answer 403 consent_required until
-- the person accepts it.
ALTER TABLE users
    ADD COLUMN terms_version        text,
    ADD COLUMN terms_accepted_at    timestamptz,
    ADD COLUMN wellbeing_consent_at timestamptz;

-- One-time codes sent by email: a password reset, or the confirmation of a new address.
-- Only a hash is stored; one live code per person and purpose (a new request replaces
-- it); a code is single-use, expires, and dies after a few wrong tries.
CREATE TABLE account_codes (
    user_id    text NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    purpose    text NOT NULL CHECK (purpose IN ('password_reset', 'email_change')),
    code_hash  bytea NOT NULL,
    new_email  text,
    attempts   integer NOT NULL DEFAULT 0,
    created_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz NOT NULL,
    PRIMARY KEY (user_id, purpose)
);
