-- 003_access: the collector's access-control data: enrollment secrets, what
-- each agent enrolled with, re-enrollment allowances and analysts' API tokens.
-- Secrets and tokens are kept as SHA-256 hashes only. The reasoning is in
-- docs/design/0003-security.md (C2-C6, C9) and docs/design/0002-storage.md
-- ("Access-control data").

-- enrollment_secret: a credential agents present to Enroll. uses counts the
-- enrollments made with it; max_uses NULL means unlimited.
CREATE TABLE enrollment_secret (
    id            text        PRIMARY KEY,
    label         text        NOT NULL,
    secret_sha256 bytea       NOT NULL UNIQUE CHECK (length(secret_sha256) = 32),
    max_uses      integer     CHECK (max_uses > 0),
    uses          integer     NOT NULL DEFAULT 0
                  CHECK (uses >= 0 AND (max_uses IS NULL OR uses <= max_uses)),
    created_at    timestamptz NOT NULL,
    expires_at    timestamptz,
    revoked_at    timestamptz
);

-- agent: the enrollment of an agent. Agents the store learns of through
-- Ingest alone (demo, tests) have NULL here: they were never enrolled.
-- disabled_at NULL means enabled. cert_serial is the latest certificate
-- issued, previous_cert_serial the one before (clone detection, C6).
-- first_received and last_received become NULL until the first report: an
-- enrolled agent has not reported yet.
ALTER TABLE agent
    ADD COLUMN secret_id            text REFERENCES enrollment_secret,
    ADD COLUMN enrolled_at          timestamptz,
    ADD COLUMN disabled_at          timestamptz,
    ADD COLUMN cert_serial          text,
    ADD COLUMN cert_not_after       timestamptz,
    ADD COLUMN previous_cert_serial text,
    ADD COLUMN source_addr          text,
    ALTER COLUMN first_received DROP NOT NULL,
    ALTER COLUMN last_received DROP NOT NULL;
CREATE INDEX agent_secret ON agent (secret_id) WHERE secret_id IS NOT NULL;

-- Ingest sets last_received on every report but first_received only when it
-- creates the row; for a row created by enrollment the first report fills
-- first_received here. The WHEN clause keeps the trigger out of every other
-- update of the row.
CREATE FUNCTION agent_first_received() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    NEW.first_received := NEW.last_received;
    RETURN NEW;
END
$$;
CREATE TRIGGER agent_first_received BEFORE UPDATE ON agent FOR EACH ROW
    WHEN (OLD.first_received IS NULL AND NEW.first_received IS NULL AND NEW.last_received IS NOT NULL)
    EXECUTE FUNCTION agent_first_received();

-- reenrollment_allowance: an admin's permission for the next enrollment of a
-- machine GUID held by an enabled agent (one use, until expires_at).
CREATE TABLE reenrollment_allowance (
    machine_guid text        PRIMARY KEY,
    expires_at   timestamptz NOT NULL,
    created_at   timestamptz NOT NULL
);

-- api_token: an analyst's bearer token. last_used is updated at most once a
-- minute.
CREATE TABLE api_token (
    id           text        PRIMARY KEY,
    name         text        NOT NULL,
    role         text        NOT NULL CHECK (role IN ('reader', 'admin')),
    token_sha256 bytea       NOT NULL UNIQUE CHECK (length(token_sha256) = 32),
    created_at   timestamptz NOT NULL,
    expires_at   timestamptz,
    revoked_at   timestamptz,
    last_used    timestamptz
);
