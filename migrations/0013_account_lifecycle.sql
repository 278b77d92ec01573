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
