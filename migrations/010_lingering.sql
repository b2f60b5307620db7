-- 010_lingering: logon sessions that outlive their logoff
-- (docs/design/0002-storage.md, "Lingering logon sessions").
--
-- LSA keeps a logon session for as long as any token to it is open: after a
-- logoff, a leaked token keeps the session listed by Win32_LogonSession.
-- The agent marks an interactive, Remote Desktop or cached logon (LogonType
-- 2, 10, 11, 12, 13) with no process left as lingering, with the time it
-- first saw it so (LogonSession.lingering_since).
ALTER TABLE logon_session
    -- When the agent first saw the session lingering (host clock, UTC);
    -- NULL while it is live, for other logon types, and when the agent did
    -- not tell. Follows the latest report while the interval is open (set,
    -- cleared when a process appears again) and is kept when it closes.
    ADD COLUMN lingering_since timestamptz;
