package store

// Host names: a host's name is a fact it reports about itself, so a host can
// take another's name (docs/design/0003-security.md, C12 and the section of
// 2026-12-04). The store keeps every name a machine GUID reported, from when
// to when (table host_name, written by a trigger on host, migration 005),
// says when an Ingest call renamed a host (IngestResult.Renamed), and
// resolves a host selector to every host it names, saying so when that is
// more than one (Page.AmbiguousHosts, Presence.AmbiguousHosts) instead of
// mixing their sessions silently.

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/sessionaudit/sessionaudit/proto/identity"
)

// HostName is a name a host reports: its host name and domain.
type HostName struct {
	Hostname string
	Domain   string
}

// HostRename is a change of a host's name in one Ingest call: its name
// before the call, and after it.
type HostRename struct {
	From, To HostName
}

// HostNameSpan is one name of a host's name history.
type HostNameSpan struct {
	HostName
	// Since is when the collector stored the name for the host, by its own
	// clock (not the host's). Until is when it stored the next one (or an
	// empty name); zero while the name is current.
	Since, Until time.Time
}

// HostNameHistory returns every name the host of machineGUID reported, oldest
// first; an unknown GUID has none. Names reported before migration 005
// start at the host's first report.
func (s *Store) HostNameHistory(ctx context.Context, machineGUID string) ([]HostNameSpan, error) {
	guid, err := validMachineGUID("machineGUID", machineGUID)
	if err != nil {
		return nil, err
	}
	rows, err := s.pool.Query(ctx, `SELECT n.hostname, n.domain, n.since, n.until
		FROM host_name n JOIN host h ON h.host_id = n.host_id
		WHERE h.machine_guid = $1 ORDER BY n.since, n.until NULLS LAST`, guid)
	if err != nil {
		return nil, fmt.Errorf("store: name history of host %s: %w", guid, err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (HostNameSpan, error) {
		var n HostNameSpan
		var until pgtype.Timestamptz
		err := r.Scan(&n.Hostname, &n.Domain, &n.Since, &until)
		n.Since, n.Until = n.Since.UTC(), nullTime(until)
		return n, err
	})
	if err != nil {
		return nil, fmt.Errorf("store: name history of host %s: %w", guid, err)
	}
	return out, nil
}

// HostsNamed returns the hosts other than machineGUID whose current host
// name is hostname (without regard to case, in any domain): the hosts a
// query by that name would mix with machineGUID's (hostIDs). It is the
// check the collector runs when a host takes a new name.
func (s *Store) HostsNamed(ctx context.Context, hostname, machineGUID string) ([]HostRef, error) {
	if hostname == "" {
		return nil, nil
	}
	rows, err := s.pool.Query(ctx, `SELECT machine_guid, hostname, domain FROM host
		WHERE lower(hostname) = lower($1) AND machine_guid <> $2 ORDER BY machine_guid`, hostname, machineGUID)
	if err != nil {
		return nil, fmt.Errorf("store: find hosts named %q: %w", hostname, err)
	}
	refs, err := pgx.CollectRows(rows, pgx.RowToStructByPos[HostRef])
	if err != nil {
		return nil, fmt.Errorf("store: find hosts named %q: %w", hostname, err)
	}
	return refs, nil
}

// hostMatch is what a host selector names: the ids of the hosts, and, when
// there are several, who they are.
type hostMatch struct {
	ids []int32
	// ambiguous lists the hosts (ordered by machine GUID) when the selector
	// named more than one; nil otherwise.
	ambiguous []HostRef
}

// hostIDs resolves a host selector (machine GUID in any spelling
// identity.NormalizeMachineGUID accepts, or name: host name, or host name
// and domain, without regard to case) to the hosts it names. A name several
// hosts hold names them all, and the match lists them as ambiguous: a
// machine that took another's name (a fake host, or a renamed one) must not
// have its sessions mixed silently with the real host's.
func (s *Store) hostIDs(ctx context.Context, sel string) (hostMatch, error) {
	var m hostMatch
	name, domain, _ := strings.Cut(sel, ".")
	rows, err := s.pool.Query(ctx, `SELECT host_id, machine_guid, hostname, domain FROM host
		WHERE machine_guid = $4
		   OR lower(hostname) = lower($1)
		   OR ($3 <> '' AND lower(hostname) = lower($2) AND lower(domain) = lower($3))
		ORDER BY machine_guid`, sel, name, domain, identity.NormalizeMachineGUID(sel))
	if err != nil {
		return m, fmt.Errorf("store: find host %q: %w", sel, err)
	}
	defer rows.Close()
	var refs []HostRef
	for rows.Next() {
		var id int32
		var ref HostRef
		if err := rows.Scan(&id, &ref.MachineGUID, &ref.Hostname, &ref.Domain); err != nil {
			return m, fmt.Errorf("store: find host %q: %w", sel, err)
		}
		m.ids = append(m.ids, id)
		refs = append(refs, ref)
	}
	if err := rows.Err(); err != nil {
		return m, fmt.Errorf("store: find host %q: %w", sel, err)
	}
	if len(refs) > 1 {
		m.ambiguous = refs
	}
	return m, nil
}
