package server

import (
	"net"
	"sync"
	"time"
)

// rateLimiter is a token bucket per key (a source address, an agent id),
// refilled at rate tokens per second up to burst. Keys whose bucket is full
// again are forgotten, so the map stays as small as the set of recent
// callers.
type rateLimiter struct {
	rate  float64
	burst float64

	mu      sync.Mutex
	buckets map[string]*bucket
	swept   time.Time
}

type bucket struct {
	tokens float64
	at     time.Time
}

func newRateLimiter(rate float64, burst int) *rateLimiter {
	return &rateLimiter{rate: rate, burst: float64(burst), buckets: make(map[string]*bucket)}
}

// allow takes one token of key's bucket at now, and reports whether there
// was one.
func (l *rateLimiter) allow(key string, now time.Time) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if now.Sub(l.swept) > time.Minute {
		for k, b := range l.buckets {
			if l.level(b, now) >= l.burst {
				delete(l.buckets, k)
			}
		}
		l.swept = now
	}
	b, ok := l.buckets[key]
	if !ok {
		b = &bucket{tokens: l.burst, at: now}
		l.buckets[key] = b
	}
	b.tokens, b.at = l.level(b, now), now
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}

func (l *rateLimiter) level(b *bucket, now time.Time) float64 {
	t := b.tokens + now.Sub(b.at).Seconds()*l.rate
	if t > l.burst {
		t = l.burst
	}
	return t
}

// inFlight counts the calls in progress per key (agent id) and refuses one
// beyond max.
type inFlight struct {
	max int

	mu    sync.Mutex
	count map[string]int
}

func newInFlight(max int) *inFlight {
	return &inFlight{max: max, count: make(map[string]int)}
}

// acquire takes a slot for key, or reports false when key has max calls in
// progress. Each true must be followed by one release.
func (f *inFlight) acquire(key string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.count[key] >= f.max {
		return false
	}
	f.count[key]++
	return true
}

func (f *inFlight) release(key string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.count[key]--; f.count[key] <= 0 {
		delete(f.count, key)
	}
}

// limitListener closes connections accepted beyond max open ones at once,
// so that a client sees a fast failure and backs off instead of waiting in
// the kernel's queue. onChange reports the number open.
type limitListener struct {
	net.Listener
	max      int
	onChange func(open int)
	refused  func()

	mu   sync.Mutex
	open int
}

func (l *limitListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		l.mu.Lock()
		if l.open >= l.max {
			l.mu.Unlock()
			c.Close()
			l.refused()
			continue
		}
		l.open++
		n := l.open
		l.mu.Unlock()
		l.onChange(n)
		return &limitedConn{Conn: c, l: l}, nil
	}
}

func (l *limitListener) done() {
	l.mu.Lock()
	l.open--
	n := l.open
	l.mu.Unlock()
	l.onChange(n)
}

type limitedConn struct {
	net.Conn
	l    *limitListener
	once sync.Once
}

func (c *limitedConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(c.l.done)
	return err
}

// activeAgents remembers when each agent last made an authenticated call,
// for the agents_connected gauge: gRPC connections are not tied to an
// identity before the first call, and a call every poll interval is what
// "connected" means for unary Ingest.
type activeAgents struct {
	mu   sync.Mutex
	last map[string]time.Time
}

func (a *activeAgents) seen(id string, now time.Time) {
	a.mu.Lock()
	a.last[id] = now
	a.mu.Unlock()
}

// count returns how many agents called within window before now, and
// forgets the others.
func (a *activeAgents) count(now time.Time, window time.Duration) int {
	a.mu.Lock()
	defer a.mu.Unlock()
	for id, t := range a.last {
		if now.Sub(t) > window {
			delete(a.last, id)
		}
	}
	return len(a.last)
}
