package api

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"
)

// BenchmarkHeartbeat measures the server's side of a heartbeat with no news
// (the hot path: every agent, every second), without the network, and
// reports it against a handler that only answers 200 measured in the same
// run (x-over-empty-handler).
func BenchmarkHeartbeat(b *testing.B) {
	e := newEnv(b)
	_, auth := e.join()
	body := []byte(`{"tasks":[]}`)
	serve := func(h http.Handler) int {
		req := httptest.NewRequest("POST", "/v1/agent/heartbeat", bytes.NewReader(body))
		for k, v := range auth {
			req.Header.Set(k, v)
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		return rec.Code
	}
	empty := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusOK) })
	h := e.srv.Handler()
	if code := serve(h); code != http.StatusOK { // the first heartbeat reads the store
		b.Fatalf("heartbeat: %d", code)
	}
	const baselineRuns = 20000
	start := time.Now()
	for range baselineRuns {
		serve(empty)
	}
	baseline := time.Since(start) / baselineRuns
	b.ReportAllocs()
	b.ResetTimer()
	start = time.Now()
	for b.Loop() {
		if code := serve(h); code != http.StatusOK {
			b.Fatalf("heartbeat: %d", code)
		}
	}
	perBeat := time.Since(start) / time.Duration(b.N)
	b.ReportMetric(float64(perBeat)/float64(baseline), "x-over-empty-handler")
}
