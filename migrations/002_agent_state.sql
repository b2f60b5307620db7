-- 002_agent_state: a Delta or Heartbeat names the last Snapshot or Delta of
-- its agent (Heartbeats in between do not count), and a Heartbeat confirms
-- that state's collection errors too. The agent row therefore keeps, beside
-- the high-water mark used for duplicates, the sequence of the last
-- state-changing report and the classes that were incomplete in it.
ALTER TABLE agent
    ADD COLUMN state_sequence bigint NOT NULL DEFAULT 0 CHECK (state_sequence >= 0),
    ADD COLUMN incomplete_classes text[] NOT NULL DEFAULT '{}';
