package spool

import (
	"testing"
)

// BenchmarkAppend measures durable appends (one fsync each) and the bytes
// a report takes on disk, for the footprint figures.
func BenchmarkAppend(b *testing.B) {
	for _, kind := range []struct {
		name string
		kind rune
	}{{"snapshot", S}, {"delta", D}, {"heartbeat", H}} {
		b.Run(kind.name, func(b *testing.B) {
			dir := b.TempDir()
			sp := mustOpen(b, dir, Options{})
			seq := uint64(0)
			for b.Loop() {
				seq++
				if err := sp.Append(report(seq, kind.kind)); err != nil {
					b.Fatal(err)
				}
			}
			st := sp.Stats()
			b.ReportMetric(float64(st.Bytes)/float64(seq), "disk-B/report")
		})
	}
}
