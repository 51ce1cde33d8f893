-- The ledger's keys compare byte by byte (issue #16, batched postings).
--
-- A 5,000-transfer COPY inserts 20,000 B-tree entries (the primary key, seq,
-- (debit, seq), (credit, seq)); perf of the backend over a run of batches:
-- index insertion 54 % of its CPU, _bt_compare alone 21 %, of which the text
-- comparison (varstr_cmp: the collation looked up, both strings copied and
-- NUL-terminated, strcoll) 8-9 %. Under COLLATE "C" a text comparison is a
-- memcmp. Interleaved in one cluster, one database each, 40 batches: the
-- whole posting 59.8 -> 56.4 ms of server CPU per batch (median); the COPY
-- alone 42.9 -> 38.0.
--
-- What it changes: equality is the same (every collation here is
-- deterministic: equal means byte-equal), so ids, idempotency, the
-- resolution index and every join find the same rows. Order is code point
-- order, as under the C.UTF-8 the clusters are created with (initdb
-- --locale=C.UTF-8), and as Python's sorted() of the same ids; only a
-- cluster with a linguistic default (en_US…) would now order these ids
-- differently, and nothing reads them in order but the lock order, which
-- stays one order for every locker (they all sort in SQL, ORDER BY id).
-- ledger_accounts.id changes with the transfers' account columns: a key
-- compared under one collation can use an index only if it was built under
-- the same one (the load's lookup of the batch's accounts, the checks'
-- joins of transfers to accounts).
--
-- The table is not rewritten (same type, only the collation changes);
-- PostgreSQL rebuilds the indexes on these columns, under an exclusive
-- lock: on a ledger of millions of transfers, a pause of that rebuild.
--
-- The two (account, seq) indexes never hold two equal keys (seq is unique),
-- so the deduplication PostgreSQL tries on a full leaf page before it splits
-- it always fails: off (a scan of the page saved per split).
ALTER TABLE ledger_transfers
    ALTER COLUMN id TYPE text COLLATE "C",
    ALTER COLUMN debit_account_id TYPE text COLLATE "C",
    ALTER COLUMN credit_account_id TYPE text COLLATE "C",
    ALTER COLUMN pending_id TYPE text COLLATE "C";
ALTER TABLE ledger_accounts ALTER COLUMN id TYPE text COLLATE "C";
ALTER INDEX ledger_transfers_by_debit SET (deduplicate_items = off);
ALTER INDEX ledger_transfers_by_credit SET (deduplicate_items = off);
