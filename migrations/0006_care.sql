-- Caregivers (design brief §4, §6): an older adult invites, a caregiver accepts, the older
-- adult chooses what is shared and can pause or revoke at any time. The shared summary is a
-- server-written `care_summaries` row in the caregiver's own space (so it syncs and works
-- offline); everything here is keyed by the spaces involved.

CREATE TABLE care_invitations (
    code_hash   bytea PRIMARY KEY,       -- sha256 of the short code; the code is never stored
    space_id    text NOT NULL,           -- the older adult's space
    user_id     text NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    scopes      text[] NOT NULL DEFAULT '{}', -- what the link starts with (changeable later)
    created_at  timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz NOT NULL,
    used_at     timestamptz
);
CREATE INDEX care_invitations_space ON care_invitations (space_id);

CREATE TABLE care_links (
    space_id            text NOT NULL,   -- the older adult's space
    id                  text NOT NULL,
    user_id             text NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    caregiver_user_id   text NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    caregiver_space_id  text NOT NULL,
    label               text NOT NULL,   -- what the caregiver calls them ("Mum")
    scopes              text[] NOT NULL DEFAULT '{}',
    state               text NOT NULL DEFAULT 'active'
                        CHECK (state IN ('active', 'paused', 'revoked')),
    generation          integer NOT NULL DEFAULT 0,  -- the summary row's id suffix (see summary_id)
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (space_id, id)
);
CREATE UNIQUE INDEX care_links_pair ON care_links (space_id, caregiver_user_id)
    WHERE state <> 'revoked';
CREATE INDEX care_links_caregiver ON care_links (caregiver_user_id) WHERE state <> 'revoked';

-- Every time a caregiver looks (API or web page): the older adult can see who and when.
CREATE TABLE care_audit (
    space_id           text NOT NULL,    -- the older adult's space
    id                 bigint GENERATED ALWAYS AS IDENTITY,
    link_id            text NOT NULL,
    caregiver_user_id  text NOT NULL,
    channel            text NOT NULL CHECK (channel IN ('api', 'web')),
    viewed_at          timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (space_id, id)
);

-- Check-in escalation: one row per alert raised for the older adult.
CREATE TABLE care_alerts (
    space_id    text NOT NULL,
    id          text NOT NULL,           -- "missed:<local date>" or "help:<check-in id>"
    kind        text NOT NULL CHECK (kind IN ('missed_check_in', 'need_help')),
    priority    text NOT NULL DEFAULT 'normal' CHECK (priority IN ('normal', 'high')),
    local_date  date NOT NULL,
    raised_at   timestamptz NOT NULL,
    cleared_at  timestamptz,
    PRIMARY KEY (space_id, id)
);

-- The caregiver web page's sessions (cookie holds the token; only its hash is stored).
CREATE TABLE web_sessions (
    token_hash  bytea PRIMARY KEY,
    user_id     text NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    csrf_token  text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz NOT NULL
);
