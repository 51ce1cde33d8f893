-- Webhook signing secrets sealed at rest (core/webhooks/sealing.py): AES-GCM
-- under a key-encryption key that lives outside the database, so a dump or a
-- stolen backup does not give the secrets that sign webhooks.
--
-- The KEK is not in the database, so SQL cannot seal existing rows: the core
-- seals every plaintext secret at start (before it serves) and clears the
-- plaintext column in the same transaction; `kassa-core reseal-secrets` does
-- the same without serving. After that the plaintext columns stay NULL.
ALTER TABLE webhook_endpoints
    ADD COLUMN secret_sealed bytea,
    ADD COLUMN previous_secret_sealed bytea,
    ALTER COLUMN secret DROP NOT NULL;

ALTER TABLE webhook_endpoints
    ADD CONSTRAINT webhook_endpoints_secret_present
        CHECK (secret IS NOT NULL OR secret_sealed IS NOT NULL);
