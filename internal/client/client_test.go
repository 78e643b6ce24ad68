package client

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"lode.dev/lode/internal/store"
	"lode.dev/lode/internal/wire"
)

func TestReadEvents(t *testing.T) {
	stream := "data: {\"chunk\":{\"seq\":1,\"data\":\"aGk=\"}}\n\n: comment\n\ndata: {\"end\":true,\"state\":\"succeeded\"}\n\ndata: {\"chunk\":{\"seq\":9}}\n\n"
	var got []wire.LogEvent
	err := readEvents(strings.NewReader(stream), func(ev wire.LogEvent) error { got = append(got, ev); return nil })
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || string(got[0].Chunk.Data) != "hi" || !got[1].End || got[1].State != "succeeded" {
		t.Errorf("events = %+v; want the chunk and the end, nothing after", got)
	}
	err = readEvents(strings.NewReader("data: {\"chunk\":{\"seq\":1}}\n\n"), func(wire.LogEvent) error { return nil })
	if !errors.Is(err, ErrUnreachable) || !errors.Is(err, errEndOfStream) {
		t.Errorf("a stream cut short: %v; want ErrUnreachable", err)
	}
	if err := readEvents(strings.NewReader("data: {nope\n"), func(wire.LogEvent) error { return nil }); err == nil {
		t.Error("a malformed event: want an error")
	}
}

func FuzzReadEvents(f *testing.F) {
	f.Add("data: {\"end\":true}\n\n")
	f.Add("data: {\"chunk\":{\"seq\":1,\"data\":\"aGk=\",\"stream\":\"stdout\"}}\n")
	f.Add("data: \n\ndata: null\n")
	f.Fuzz(func(t *testing.T, s string) {
		_ = readEvents(strings.NewReader(s), func(ev wire.LogEvent) error { return nil })
	})
}

func TestServerErrorsMatchDomainErrors(t *testing.T) {
	tests := []struct {
		status int
		body   string
		target error
	}{
		{404, `{"error":{"code":"not_found","message":"job x: store: not found"}}`, store.ErrNotFound},
		{409, `{"error":{"code":"fenced","message":"fenced","hint":"stop"}}`, store.ErrFenced},
		{410, `{"error":{"code":"node_gone","message":"gone"}}`, store.ErrNodeGone},
		{409, `{"error":{"code":"conflict","message":"ended"}}`, store.ErrConflict},
	}
	for _, tt := range tests {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(tt.status)
			w.Write([]byte(tt.body))
		}))
		c, _ := New(srv.URL)
		_, err := c.Job(t.Context(), "x")
		if !errors.Is(err, tt.target) {
			t.Errorf("%s: error %v does not match %v", tt.body, err, tt.target)
		}
		srv.Close()
	}
	// A proxy's HTML error page still becomes a readable error.
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(502)
		w.Write([]byte("<html>bad gateway</html>"))
	}))
	defer srv.Close()
	c, _ := New(srv.URL)
	if _, err := c.Job(t.Context(), "x"); err == nil || !strings.Contains(err.Error(), "502") {
		t.Errorf("502 page: %v", err)
	}
	if _, err := New("localhost:7070"); err == nil {
		t.Error("an address without a scheme: want an error")
	}
}
