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

// interning is the dictionary work of one Ingest call: the labels and
// accounts its reports name that the Store's caches do not hold yet.
type interning struct {
	labels   map[string]int32 // every value named; 0 until known
	missing  []string         // sorted when queued
	gotL     []labelRow
	accounts map[string]int32 // every accountKey named; 0 until known
	domains  []string         // the missing accounts, in parallel
	names    []string
	sids     []string
	gotA     []accountRow
}

// dictionaryIDs returns the label_id of every value and the account_id of
// every account (keyed by accountKey), interning the ones not yet known (accounts matched on
// DOMAIN\name without regard to case, recording a SID the account did not
// have). The missing ones cost one round trip for both: a pipeline, an
// implicit transaction of its own outside the ingest's, where labels then
// accounts are inserted in sorted order, so that concurrent callers neither
// deadlock nor wait on each other's batches (a dictionary entry is only a
// name, harmless if the batch then fails).
func (s *Store) dictionaryIDs(ctx context.Context, values []string, accounts []*Account) (resolved, error) {
	in := interning{labels: make(map[string]int32, len(values)), accounts: make(map[string]int32, len(accounts))}
	s.mu.Lock()
	for _, v := range values {
		if id, ok := s.labels[v]; ok {
			in.labels[v] = id
		} else if _, dup := in.labels[v]; !dup {
			in.labels[v] = 0
			in.missing = append(in.missing, v)
		}
	}
	for _, a := range accounts {
		k := accountKey(a)
		if id, ok := s.accounts[k]; ok {
			in.accounts[k] = id
		} else if _, dup := in.accounts[k]; !dup {
			in.accounts[k] = 0
			in.domains, in.names, in.sids = append(in.domains, a.Domain), append(in.names, a.Name), append(in.sids, a.SID)
		}
	}
	s.mu.Unlock()
	if len(in.missing) == 0 && len(in.domains) == 0 {
		return resolved{in.labels, in.accounts}, nil
	}
	b := &pgx.Batch{}
	in.queueLabels(b)
	in.queueAccounts(b)
	if err := s.pool.SendBatch(ctx, b).Close(); err != nil {
		return resolved{}, fmt.Errorf("store: intern %d labels and %d accounts: %w", len(in.missing), len(in.domains), err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.labels) > maxCacheEntries {
		clear(s.labels)
	}
	for _, l := range in.gotL {
		in.labels[l.Value] = l.ID
		s.labels[l.Value] = l.ID
	}
	for _, v := range in.missing {
		if in.labels[v] == 0 {
			return resolved{}, fmt.Errorf("store: label %q was not stored", v)
		}
	}
	if len(s.accounts) > maxCacheEntries {
		clear(s.accounts)
	}
	for _, r := range in.gotA {
		k := accountKey(&Account{Domain: r.Domain, Name: r.Name, SID: r.SID})
		in.accounts[k] = r.ID
		s.accounts[k] = r.ID
	}
	return resolved{in.labels, in.accounts}, nil
}

// queueLabels inserts the missing labels in sorted order and reads them back.
func (in *interning) queueLabels(b *pgx.Batch) {
	if len(in.missing) == 0 {
		return
	}
	slices.Sort(in.missing)
	b.Queue(`INSERT INTO label (value) SELECT v FROM unnest($1::text[]) AS v ORDER BY v ON CONFLICT (value) DO NOTHING`, in.missing)
	b.Queue(`SELECT value, label_id FROM label WHERE value = ANY($1::text[])`, in.missing).Query(func(rows pgx.Rows) error {
		var err error
		in.gotL, err = pgx.CollectRows(rows, pgx.RowToStructByPos[labelRow])
		return err
	})
}

// queueAccounts inserts the missing accounts in sorted order, records SIDs
// they lacked, and reads them back.
func (in *interning) queueAccounts(b *pgx.Batch) {
	if len(in.domains) == 0 {
		return
	}
	b.Queue(`
		INSERT INTO account (domain, name, sid)
		SELECT DISTINCT ON (lower(domain), lower(name)) domain, name, nullif(sid, '')
		FROM unnest($1::text[], $2::text[], $3::text[]) AS u(domain, name, sid)
		ORDER BY lower(domain), lower(name), sid DESC
		ON CONFLICT (lower(domain), lower(name)) DO NOTHING`,
		in.domains, in.names, in.sids)
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
		in.domains, in.names, in.sids)
	b.Queue(`
		SELECT u.domain, u.name, u.sid, a.account_id
		FROM unnest($1::text[], $2::text[], $3::text[]) AS u(domain, name, sid)
		JOIN account a ON lower(a.domain) = lower(u.domain) AND lower(a.name) = lower(u.name)`,
		in.domains, in.names, in.sids).Query(func(rows pgx.Rows) error {
		var err error
		in.gotA, err = pgx.CollectRows(rows, pgx.RowToStructByPos[accountRow])
		return err
	})
}

func accountKey(a *Account) string { return a.Domain + "\\" + a.Name + "\x00" + a.SID }
