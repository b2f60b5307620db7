package store

import (
	"context"
	"fmt"
	"slices"

	"github.com/jackc/pgx/v5"
)

type labelRow struct {
	Value string
	ID    int32
}

type accountRow struct {
	Domain, Name, SID string
	ID                int32
}

// labelIDs returns the label_id of every value, interning the ones not yet
// known. It runs outside the ingest transaction: a label is only a name, and
// inserting it in sorted order in its own short transaction keeps concurrent
// writers from waiting on each other's batches.
func (s *Store) labelIDs(ctx context.Context, values []string) (map[string]int32, error) {
	out := make(map[string]int32, len(values))
	var missing []string
	s.mu.Lock()
	for _, v := range values {
		if id, ok := s.labels[v]; ok {
			out[v] = id
		} else if _, dup := out[v]; !dup {
			out[v] = 0
			missing = append(missing, v)
		}
	}
	s.mu.Unlock()
	if len(missing) == 0 {
		return out, nil
	}
	slices.Sort(missing)
	// One pipeline (an implicit transaction): insert in sorted order, read back.
	b := &pgx.Batch{}
	b.Queue(`INSERT INTO label (value) SELECT v FROM unnest($1::text[]) AS v ORDER BY v ON CONFLICT (value) DO NOTHING`, missing)
	var got []labelRow
	b.Queue(`SELECT value, label_id FROM label WHERE value = ANY($1::text[])`, missing).Query(func(rows pgx.Rows) error {
		var err error
		got, err = pgx.CollectRows(rows, pgx.RowToStructByPos[labelRow])
		return err
	})
	if err := s.pool.SendBatch(ctx, b).Close(); err != nil {
		return nil, fmt.Errorf("store: intern %d labels: %w", len(missing), err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.labels) > maxCacheEntries {
		clear(s.labels)
	}
	for _, l := range got {
		out[l.Value] = l.ID
		s.labels[l.Value] = l.ID
	}
	for _, v := range missing {
		if out[v] == 0 {
			return nil, fmt.Errorf("store: label %q was not stored", v)
		}
	}
	return out, nil
}

func accountKey(a *Account) string { return a.Domain + "\\" + a.Name + "\x00" + a.SID }

// accountIDs returns the account_id of every account, creating the ones not
// yet known (matched on DOMAIN\name without regard to case) and recording a
// SID the account did not have. Like labelIDs, it runs in its own short
// transaction, in sorted order.
func (s *Store) accountIDs(ctx context.Context, accounts []*Account) (map[string]int32, error) {
	out := make(map[string]int32, len(accounts))
	var domains, names, sids []string
	s.mu.Lock()
	for _, a := range accounts {
		k := accountKey(a)
		if id, ok := s.accounts[k]; ok {
			out[k] = id
		} else if _, dup := out[k]; !dup {
			out[k] = 0
			domains, names, sids = append(domains, a.Domain), append(names, a.Name), append(sids, a.SID)
		}
	}
	s.mu.Unlock()
	if len(domains) == 0 {
		return out, nil
	}
	b := &pgx.Batch{}
	b.Queue(`
		INSERT INTO account (domain, name, sid)
		SELECT DISTINCT ON (lower(domain), lower(name)) domain, name, nullif(sid, '')
		FROM unnest($1::text[], $2::text[], $3::text[]) AS u(domain, name, sid)
		ORDER BY lower(domain), lower(name), sid DESC
		ON CONFLICT (lower(domain), lower(name)) DO NOTHING`,
		domains, names, sids)
	// Record a SID an account did not have; rows are locked in id order so
	// that concurrent callers cannot deadlock.
	b.Queue(`
		WITH u AS (SELECT * FROM unnest($1::text[], $2::text[], $3::text[]) AS u(domain, name, sid) WHERE sid <> ''),
		target AS (
			SELECT a.account_id, min(u.sid) AS sid FROM account a
			JOIN u ON lower(a.domain) = lower(u.domain) AND lower(a.name) = lower(u.name)
			WHERE a.sid IS NULL GROUP BY a.account_id),
		locked AS (
			SELECT a.account_id FROM account a WHERE a.account_id IN (SELECT account_id FROM target)
			ORDER BY a.account_id FOR UPDATE)
		UPDATE account a SET sid = target.sid FROM target, locked
		WHERE a.account_id = target.account_id AND a.account_id = locked.account_id AND a.sid IS NULL`,
		domains, names, sids)
	var got []accountRow
	b.Queue(`
		SELECT u.domain, u.name, u.sid, a.account_id
		FROM unnest($1::text[], $2::text[], $3::text[]) AS u(domain, name, sid)
		JOIN account a ON lower(a.domain) = lower(u.domain) AND lower(a.name) = lower(u.name)`,
		domains, names, sids).Query(func(rows pgx.Rows) error {
		var err error
		got, err = pgx.CollectRows(rows, pgx.RowToStructByPos[accountRow])
		return err
	})
	if err := s.pool.SendBatch(ctx, b).Close(); err != nil {
		return nil, fmt.Errorf("store: record %d accounts: %w", len(domains), err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.accounts) > maxCacheEntries {
		clear(s.accounts)
	}
	for _, r := range got {
		k := accountKey(&Account{Domain: r.Domain, Name: r.Name, SID: r.SID})
		out[k] = r.ID
		s.accounts[k] = r.ID
	}
	return out, nil
}
