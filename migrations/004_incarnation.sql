-- 004_incarnation: an agent's sequences count within one incarnation of its
-- spool, and the store keeps enough of the agent's chain to tell a report it
-- stored from a new one that reuses its number. The reasoning is in
-- docs/design/0001-protocol.md and 0002-storage.md ("Spool loss, reinstalls
-- and restored snapshots").
--
-- incarnation: the Batch.incarnation of the agent's chain (the 64 bits of
-- the unsigned number, stored as bigint: only compared for equality); NULL
-- until an agent that sends one reports. A batch with another incarnation
-- starts the chain again: applied_sequence and state_sequence go back to 0.
-- incarnation_since: when the store took the current incarnation.
-- applied_taken_at: the taken_at of the report numbered applied_sequence, so
-- that a report with that number but another taken_at (a restored spool
-- numbering new reports again) is not taken for a duplicate. NULL when
-- unknown (stored before this migration, or after a new incarnation).
ALTER TABLE agent
    ADD COLUMN incarnation       bigint CHECK (incarnation <> 0),
    ADD COLUMN incarnation_since timestamptz,
    ADD COLUMN applied_taken_at  timestamptz;
