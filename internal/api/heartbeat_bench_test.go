package api

import (
	"context"
	"testing"
	"time"

	"lode.dev/lode/internal/client"
	"lode.dev/lode/internal/wire"
)

// BenchmarkHeartbeat measures a heartbeat with no news (the hot path: every
// agent, every second) on a stream over loopback, against the cheapest
// request there is, GET /v1/health on a kept-alive connection, measured in
// the same run (x-of-a-request). The CPU here is the client's and the
// server's together; bench/failover measures the server alone under the
// load of 10,000 agents.
func BenchmarkHeartbeat(b *testing.B) {
	e := newEnv(b)
	nodeID, auth := e.join()
	c, err := client.New(e.http.URL)
	if err != nil {
		b.Fatal(err)
	}
	node := c.WithNode(nodeID, auth["Authorization"][len("Bearer "):])
	ctx := context.Background()
	const baselineRuns = 5000
	start := time.Now()
	for range baselineRuns {
		if err := c.Health(ctx); err != nil {
			b.Fatal(err)
		}
	}
	perRequest := time.Since(start) / baselineRuns
	beats, err := node.OpenBeats(ctx, 10*time.Second)
	if err != nil {
		b.Fatal(err)
	}
	defer beats.Close()
	if _, err := beats.Beat(&wire.Heartbeat{}); err != nil { // the first heartbeat reads the store
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	start = time.Now()
	for b.Loop() {
		if _, err := beats.Beat(&wire.Heartbeat{}); err != nil {
			b.Fatal(err)
		}
	}
	perBeat := time.Since(start) / time.Duration(b.N)
	b.ReportMetric(float64(perBeat)/float64(perRequest), "x-of-a-request")
}
