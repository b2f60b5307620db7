package wmi

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
	"strings"
	"sync"
	"time"

	"github.com/sessionaudit/sessionaudit/agent/clock"
	sessionauditv1 "github.com/sessionaudit/sessionaudit/proto/sessionaudit/v1"
)

// errAccountNotFound is what a lookupSIDFunc returns when the account does
// not exist (ERROR_NONE_MAPPED): it is asked again less often than after
// other failures.
var errAccountNotFound = errors.New("no such account")

// lookupSIDFunc returns the SID ("S-1-5-...") of the account domain\name:
// LookupAccountName on Windows, a fake in tests. It may block (a domain
// account can need a domain controller).
type lookupSIDFunc func(domain, name string) (string, error)

// How long a lookup's answer is kept.
const (
	// sidTTL: a SID found. An account's SID changes only when the account
	// is deleted and made again under the same name.
	sidTTL = 24 * time.Hour
	// sidNotFoundTTL: no such account.
	sidNotFoundTTL = time.Hour
	// sidErrorTTL: any other failure (a domain controller out of reach).
	sidErrorTTL = 5 * time.Minute
	// maxSIDCache bounds the cache: beyond it, the accounts not met in the
	// latest snapshot are forgotten.
	maxSIDCache = 50000
)

// DefaultSIDBudget is how long a snapshot waits at most for the SID
// lookups it started when Options.SIDBudget is zero.
const DefaultSIDBudget = 5 * time.Second

// sidResolver gives the accounts of logon sessions their SIDs. It caches
// each lookup per DOMAIN\name (without regard to case, as Windows compares
// account names) and runs lookups one at a time on its own goroutine, so
// that a lookup that hangs (a domain controller that does not answer)
// delays a snapshot by the budget at most; the SIDs it could not get in
// time follow in a later snapshot.
type sidResolver struct {
	lookup lookupSIDFunc
	clock  clock.Clock
	log    *slog.Logger
	max    int // maxSIDCache; tests lower it

	mu      sync.Mutex
	cache   map[string]*sidEntry
	pending map[string]*sidPending // queued or being looked up
	queue   []*sidPending
	wake    chan struct{} // wakes the goroutine; buffered 1
	quit    chan struct{}
	closed  bool
	gen     uint64 // the snapshot in progress: sidEntry.used
	stats   SIDStats
}

// sidEntry is one answer.
type sidEntry struct {
	sid     string // "" when the lookup failed
	err     error
	expires time.Time
	used    uint64 // the last generation that wanted it
}

// sidPending is a lookup asked for and not answered yet.
type sidPending struct {
	key          string
	domain, name string
	done         chan struct{} // closed when cached
}

// SIDStats counts what the resolver did, since it was made.
type SIDStats struct {
	// Lookups counts calls of LookupAccountName.
	Lookups int
	// Failed counts lookups that gave no SID (no such account included).
	Failed int
	// Late counts accounts left without a SID in a snapshot because their
	// lookup did not answer within the budget.
	Late int
}

func newSIDResolver(lookup lookupSIDFunc, clk clock.Clock, log *slog.Logger) *sidResolver {
	r := &sidResolver{
		lookup:  lookup,
		clock:   clk,
		log:     log,
		max:     maxSIDCache,
		cache:   make(map[string]*sidEntry),
		pending: make(map[string]*sidPending),
		wake:    make(chan struct{}, 1),
		quit:    make(chan struct{}),
	}
	go r.loop()
	return r
}

// sidKey is the cache key of domain\name.
func sidKey(domain, name string) string {
	return strings.ToLower(domain) + `\` + strings.ToLower(name)
}

// fill sets Account.Sid of every session whose account has a known SID. It
// looks up the accounts it has no fresh answer for and waits for the new
// ones until budget has passed or ctx is done; a SID found later is used by
// a later call, which does not wait for it again. An expired SID is still
// used while it is looked up again. It returns how many accounts got no SID
// this time because their lookup has not answered yet.
func (r *sidResolver) fill(ctx context.Context, sessions []*sessionauditv1.LogonSession, budget time.Duration) (late int) {
	now := r.clock.Now()
	r.mu.Lock()
	r.gen++
	gen := r.gen
	var wait []*sidPending
	for _, s := range sessions {
		a := s.GetAccount()
		if a == nil || a.GetName() == "" {
			continue
		}
		k := sidKey(a.GetDomain(), a.GetName())
		e := r.cache[k]
		if e != nil {
			e.used = gen
			if now.Before(e.expires) {
				continue
			}
		}
		if r.pending[k] != nil {
			// Asked for by an earlier snapshot, which waited for it
			// already: a lookup that hangs delays one snapshot, not each.
			continue
		}
		p := r.enqueueLocked(k, a.GetDomain(), a.GetName())
		if e == nil || e.sid == "" {
			// Nothing to use meanwhile: wait for it, within the budget.
			wait = append(wait, p)
		}
	}
	r.mu.Unlock()

	if len(wait) > 0 {
		timer := time.NewTimer(budget)
		defer timer.Stop()
	waitAll:
		for _, p := range wait {
			select {
			case <-p.done:
			case <-timer.C:
				break waitAll
			case <-ctx.Done():
				break waitAll
			}
		}
	}

	r.mu.Lock()
	defer r.mu.Unlock()
	counted := make(map[string]bool)
	for _, s := range sessions {
		a := s.GetAccount()
		if a == nil || a.GetName() == "" {
			continue
		}
		k := sidKey(a.GetDomain(), a.GetName())
		if e := r.cache[k]; e != nil && e.sid != "" {
			a.Sid = e.sid
		} else if r.pending[k] != nil && !counted[k] {
			counted[k] = true
			late++
		}
	}
	r.stats.Late += late
	if len(r.cache) > r.max {
		for k, e := range r.cache {
			if e.used != gen {
				delete(r.cache, k)
			}
		}
	}
	return late
}

// enqueueLocked asks for a lookup of domain\name unless one is pending, and
// returns it. r.mu is held.
func (r *sidResolver) enqueueLocked(k, domain, name string) *sidPending {
	if p := r.pending[k]; p != nil {
		return p
	}
	p := &sidPending{key: k, domain: domain, name: name, done: make(chan struct{})}
	r.pending[k] = p
	if r.closed {
		return p // never answered; fill stops waiting at its budget
	}
	r.queue = append(r.queue, p)
	select {
	case r.wake <- struct{}{}:
	default:
	}
	return p
}

// loop looks up the queued accounts one at a time until close.
func (r *sidResolver) loop() {
	for {
		r.mu.Lock()
		var p *sidPending
		if len(r.queue) > 0 {
			p = r.queue[0]
			r.queue[0] = nil
			r.queue = r.queue[1:]
		}
		r.mu.Unlock()
		if p == nil {
			select {
			case <-r.wake:
				continue
			case <-r.quit:
				return
			}
		}
		sid, err := r.safeLookup(p.domain, p.name)
		now := r.clock.Now()
		e := &sidEntry{sid: sid, err: err}
		switch {
		case err == nil:
			e.expires = now.Add(sidTTL)
		case errors.Is(err, errAccountNotFound):
			e.expires = now.Add(sidNotFoundTTL)
		default:
			e.expires = now.Add(sidErrorTTL)
		}
		r.mu.Lock()
		r.stats.Lookups++
		if err != nil {
			r.stats.Failed++
			if old := r.cache[p.key]; old != nil && old.sid != "" {
				// Keep the SID known before: a domain controller out of
				// reach does not make an account's SID unknown.
				e.sid = old.sid
			}
		}
		e.used = r.gen // asked for by the snapshot in progress, or the last one
		r.cache[p.key] = e
		delete(r.pending, p.key)
		r.mu.Unlock()
		if err != nil {
			r.log.Debug("no SID for an account: it is reported without one and looked up again later",
				"account", p.domain+`\`+p.name, "retry_in", e.expires.Sub(now), "err", err)
		}
		close(p.done)
	}
}

// safeLookup calls lookup, turning a panic into an error.
func (r *sidResolver) safeLookup(domain, name string) (sid string, err error) {
	defer func() {
		if p := recover(); p != nil {
			r.log.Error("SID lookup panicked: recovered; the account is reported without a SID",
				"account", domain+`\`+name, "panic", fmt.Sprint(p), "stack", string(debug.Stack()))
			sid, err = "", fmt.Errorf("lookup panicked: %v", p)
		}
	}()
	return r.lookup(domain, name)
}

// Stats returns the counts so far.
func (r *sidResolver) Stats() SIDStats {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.stats
}

// close stops the goroutine once its lookup in progress, if any, returns.
func (r *sidResolver) close() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return
	}
	r.closed = true
	r.queue = nil
	close(r.quit)
}
