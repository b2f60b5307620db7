package uplink

import (
	"math/rand/v2"
	"testing"
	"time"
)

// TestBackoffBoundsAndGrowth: the n-th delay is within [0, min(Max,
// Base·2ⁿ)], and reaches the ceiling when the random source says so.
func TestBackoffBoundsAndGrowth(t *testing.T) {
	top := func(n int64) int64 { return n - 1 } // the largest value allowed
	b := NewBackoff(BackoffConfig{}, top)
	want := []time.Duration{1, 2, 4, 8, 16, 32, 64, 128, 256}
	for i, w := range want {
		if got := b.Next(0); got != w*time.Second {
			t.Fatalf("delay %d = %v, want ceiling %v", i, got, w*time.Second)
		}
	}
	for i := range 5 {
		if got := b.Next(0); got != DefaultBackoffMax {
			t.Fatalf("capped delay %d = %v, want %v", i, got, DefaultBackoffMax)
		}
	}
	b = NewBackoff(BackoffConfig{}, func(int64) int64 { return 0 })
	if got := b.Next(0); got != 0 {
		t.Fatalf("full jitter allows 0, got %v", got)
	}
}

// TestBackoffJitterDistribution: with the real random source, delays
// spread uniformly under the ceiling (full jitter): never above it, mean
// near half of it, and both halves well populated.
func TestBackoffJitterDistribution(t *testing.T) {
	const n = 20000
	cfg := BackoffConfig{Base: time.Second, Max: 5 * time.Minute, Factor: 2}
	for attempt, ceiling := range []time.Duration{time.Second, 2 * time.Second, 4 * time.Second, 8 * time.Second} {
		var sum time.Duration
		low := 0
		for range n {
			b := NewBackoff(cfg, nil)
			for range attempt {
				b.Next(0)
			}
			d := b.Next(0)
			if d < 0 || d > ceiling {
				t.Fatalf("attempt %d: delay %v outside [0, %v]", attempt, d, ceiling)
			}
			sum += d
			if d < ceiling/2 {
				low++
			}
		}
		mean := sum / n
		if mean < ceiling*45/100 || mean > ceiling*55/100 {
			t.Errorf("attempt %d: mean delay %v, want about %v", attempt, mean, ceiling/2)
		}
		if low < n*45/100 || low > n*55/100 {
			t.Errorf("attempt %d: %d of %d delays in the lower half, want about half", attempt, low, n)
		}
	}
}

// TestBackoffRetryAfterFloor: a collector's RetryInfo is a floor; jitter
// is added on top, and an absurd delay is capped.
func TestBackoffRetryAfterFloor(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	b := NewBackoff(BackoffConfig{}, r.Int64N)
	for i := range 1000 {
		d := b.Next(5 * time.Second)
		ceiling := min(DefaultBackoffMax, time.Second<<min(i, 20))
		if d < 5*time.Second || d > 5*time.Second+ceiling {
			t.Fatalf("attempt %d: delay %v outside [5s, 5s+%v]", i, d, ceiling)
		}
	}
	b.Reset()
	if d := b.Next(30 * 24 * time.Hour); d < MaxRetryAfter || d > MaxRetryAfter+time.Second {
		t.Fatalf("RetryInfo of 30 days: delay %v, want capped at %v (+ jitter)", d, MaxRetryAfter)
	}
}

// TestBackoffResetAndLong: Reset brings the ceiling back to Base; Long is
// within [Max/2, Max].
func TestBackoffResetAndLong(t *testing.T) {
	top := func(n int64) int64 { return n - 1 }
	b := NewBackoff(BackoffConfig{Base: 100 * time.Millisecond, Max: time.Minute}, top)
	for range 10 {
		b.Next(0)
	}
	if b.Attempt() != 10 {
		t.Fatalf("Attempt = %d, want 10", b.Attempt())
	}
	b.Reset()
	if d := b.Next(0); d != 100*time.Millisecond {
		t.Fatalf("after Reset: %v, want the base 100ms", d)
	}
	if d := b.Long(); d != time.Minute {
		t.Fatalf("Long with the top random value: %v, want 1m", d)
	}
	b = NewBackoff(BackoffConfig{Max: time.Minute}, func(int64) int64 { return 0 })
	if d := b.Long(); d != 30*time.Second {
		t.Fatalf("Long with the bottom random value: %v, want 30s", d)
	}
}

// TestBackoffDefaults: zero and nonsensical settings take the defaults.
func TestBackoffDefaults(t *testing.T) {
	got := NewBackoff(BackoffConfig{Factor: 0.5, Max: -1}, nil).Config()
	want := BackoffConfig{Base: DefaultBackoffBase, Max: DefaultBackoffMax, Factor: DefaultBackoffFactor}
	if got != want {
		t.Fatalf("Config() = %+v, want %+v", got, want)
	}
}
