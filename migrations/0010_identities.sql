-- Sign in with Apple and with Google (issue 13; decision 0020).
--
-- One row per provider identity linked to a Kith account: the provider's stable subject
-- (`sub`), never a token. (provider, subject) is the key a sign-in looks up; one identity
-- per provider per account (UNIQUE (user_id, provider)) — linking a second Apple ID means
-- unlinking the first. The email is the provider's verified address when it last sent one
-- (Apple sends it reliably only on the first sign-in; a private relay address is kept as
-- is), for the person's own account page and export.
CREATE TABLE identities (
    provider         text NOT NULL CHECK (provider IN ('apple', 'google')),
    subject          text NOT NULL,
    user_id          text NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    email            text,
    private_email    boolean NOT NULL DEFAULT false,
    created_at       timestamptz NOT NULL DEFAULT now(),
    last_sign_in_at  timestamptz,
    PRIMARY KEY (provider, subject),
    UNIQUE (user_id, provider)
);

-- A person who signed up with a provider that sent no email (Apple, when the app did not
-- ask for it) has no email; a password account always has one (registration requires it).
-- NULLs are distinct in the unique index on lower(email), so any number may have none.
ALTER TABLE users ALTER COLUMN email DROP NOT NULL;
