-- The directory a provider's users' passwords are checked against, for RADIUS
-- clients in password-and-code mode (issue 6). Either a bind DN template with
-- {username}, or a search as a service account whose password is kept
-- AES-256-GCM encrypted under the gateway keyring (AAD bound to the provider).
CREATE TABLE provider_directories (
    provider_id                 UUID PRIMARY KEY REFERENCES providers (id) ON DELETE CASCADE,
    url                         TEXT NOT NULL,
    bind_dn_template            TEXT NOT NULL DEFAULT '',
    search_bind_dn              TEXT NOT NULL DEFAULT '',
    search_password_ciphertext  BYTEA,
    search_base_dn              TEXT NOT NULL DEFAULT '',
    username_attribute          TEXT NOT NULL DEFAULT 'sAMAccountName',
    updated_at                  TIMESTAMPTZ NOT NULL,
    CHECK ((bind_dn_template <> '') <> (search_bind_dn <> ''))
);
