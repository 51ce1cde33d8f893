-- Zero-conf: a confirmation tier may settle from the mempool, so an invoice
-- may require 0 confirmations. Payments then also take status 'pending'
-- (a mempool sighting, block NULL) and 'confirmed' with block NULL (a
-- zero-conf invoice's sighting, posted at once).
ALTER TABLE invoices DROP CONSTRAINT invoices_confirmations_required_check;
ALTER TABLE invoices ADD CONSTRAINT invoices_confirmations_required_check
    CHECK (confirmations_required >= 0);
-- The mempool sightings not yet mined, for their expiry.
CREATE INDEX payments_unmined ON payments (chain, update_time)
    WHERE block_height IS NULL AND status IN ('pending', 'confirmed');
