-- 008_more_gap_reasons: no change to the data. Coverage gaps got three more
-- reasons (docs/design/0002-storage.md, "Coverage gaps"), and a gap may now
-- name no sequences although reports were lost (a replaced spool: how many
-- is not known). Reasons are lower-case words (the CHECK of 007), so that a
-- new one needs no migration; this file records them in the schema.
COMMENT ON COLUMN coverage_gap.reason IS
    'Why the history is incomplete, a lower-case word: spool_damage (the agent''s spool found reports damaged on disk), '
    'spool_overflow (the spool dropped its oldest reports to stay within SpoolMaxMB), spool_write_failed (the agent '
    'could not write reports to its spool: a full disk), spool_replaced (the spool was deleted or lost and made anew: '
    'what the old one still held is lost, how much is not known), quarantined (a batch the store failed every time, '
    'set aside), lost_reports (an agent lost reports for a reason it did not name); later reasons are new words.';
COMMENT ON COLUMN coverage_gap.first_sequence IS
    'With last_sequence, the reports lost (both included); NULL when not known (spool_replaced) or not reports.';
