package uplink

import (
	"math/rand/v2"
	"time"
)

// Defaults of BackoffConfig.
const (
	// DefaultBackoffBase is the ceiling of the first retry delay.
	DefaultBackoffBase = time.Second
	// DefaultBackoffMax is the largest ceiling retry delays grow to, and the
	// delay after a batch the collector refused (RejectedError).
	DefaultBackoffMax = 5 * time.Minute
	// DefaultBackoffFactor is how much the ceiling grows per failure.
	DefaultBackoffFactor = 2.0
	// MaxRetryAfter bounds the delay a collector can impose with RetryInfo,
	// so that a misconfigured collector cannot silence a fleet for days.
	MaxRetryAfter = time.Hour
)

// BackoffConfig sets the delays between attempts. The zero value of each
// field means its default.
type BackoffConfig struct {
	// Base is the ceiling of the first delay; default DefaultBackoffBase.
	Base time.Duration
	// Max is the largest ceiling; default DefaultBackoffMax.
	Max time.Duration
	// Factor multiplies the ceiling after each failure; default
	// DefaultBackoffFactor. Values below 1 mean the default.
	Factor float64
}

func (c BackoffConfig) withDefaults() BackoffConfig {
	if c.Base <= 0 {
		c.Base = DefaultBackoffBase
	}
	if c.Max <= 0 {
		c.Max = DefaultBackoffMax
	}
	if c.Max < c.Base {
		c.Max = c.Base
	}
	if c.Factor < 1 {
		c.Factor = DefaultBackoffFactor
	}
	return c
}

// Backoff is exponential backoff with full jitter: after the n-th
// consecutive failure (n from 0) the delay is uniform in
// [0, min(Max, Base·Factorⁿ)], so that agents that failed together (a
// collector restart) come back spread over the whole window instead of
// in waves. A delay the collector asked for (RetryInfo) is a floor: the
// jittered delay is added on top of it. Reset after a success.
//
// A Backoff is not safe for concurrent use.
type Backoff struct {
	cfg     BackoffConfig
	attempt int
	// randN returns a uniform integer in [0, n); n > 0.
	randN func(n int64) int64
}

// NewBackoff returns a Backoff with cfg (zero fields mean the defaults).
// randN, when not nil, replaces the random source (tests): it must return
// a uniform integer in [0, n).
func NewBackoff(cfg BackoffConfig, randN func(n int64) int64) *Backoff {
	if randN == nil {
		randN = rand.Int64N
	}
	return &Backoff{cfg: cfg.withDefaults(), randN: randN}
}

// Attempt returns the number of failures since the last Reset.
func (b *Backoff) Attempt() int { return b.attempt }

// Config returns the configuration in use, defaults filled in.
func (b *Backoff) Config() BackoffConfig { return b.cfg }

// ceiling returns min(Max, Base·Factor^attempt).
func (b *Backoff) ceiling() time.Duration {
	c := float64(b.cfg.Base)
	for i := 0; i < b.attempt && c < float64(b.cfg.Max); i++ {
		c *= b.cfg.Factor
	}
	return time.Duration(min(c, float64(b.cfg.Max)))
}

// jitter returns a uniform duration in [0, d].
func (b *Backoff) jitter(d time.Duration) time.Duration {
	if d <= 0 {
		return 0
	}
	return time.Duration(b.randN(int64(d) + 1))
}

// Next records a failure and returns how long to wait before the next
// attempt: full jitter under the current ceiling, plus retryAfter (the
// collector's RetryInfo, capped at MaxRetryAfter) when positive.
func (b *Backoff) Next(retryAfter time.Duration) time.Duration {
	d := b.jitter(b.ceiling())
	b.attempt++
	if retryAfter > 0 {
		d += min(retryAfter, MaxRetryAfter)
	}
	return d
}

// Long records a failure and returns a delay in [Max/2, Max]: for a
// failure that retrying soon cannot fix (a refused batch, a disabled
// agent), jittered so that a fleet does not retry in step.
func (b *Backoff) Long() time.Duration {
	b.attempt++
	return b.cfg.Max/2 + b.jitter(b.cfg.Max/2)
}

// Reset forgets the failures: the next delay is again under Base.
func (b *Backoff) Reset() { b.attempt = 0 }
