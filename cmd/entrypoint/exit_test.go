//go:build !initonly

package main

import (
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"snapvisor/store/storetest"
)

// hangingS3 is a proxy to a real MinIO that answers everything but uploads
// of snapshots: those it accepts and never answers (a remote whose disk or
// network stalls mid-upload). The lease, listings and deletes go through.
type hangingS3 struct {
	Addr   string
	hung   chan struct{} // closed when the first upload hangs
	once   sync.Once
	closed chan struct{}
}

func startHangingS3(t *testing.T, m *storetest.MinIO) *hangingS3 {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	h := &hangingS3{Addr: ln.Addr().String(), hung: make(chan struct{}), closed: make(chan struct{})}
	proxy := httputil.NewSingleHostReverseProxy(&url.URL{Scheme: "http", Host: m.Addr})
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, key, _ := strings.Cut(strings.TrimPrefix(r.URL.Path, "/"), "/") // /bucket/key
		if (r.Method == http.MethodPut || r.Method == http.MethodPost) && key != "" && !strings.HasSuffix(key, ".lease") {
			h.once.Do(func() { close(h.hung) })
			select { // never answers: until the client goes away or the test ends
			case <-r.Context().Done():
			case <-h.closed:
			}
			return
		}
		proxy.ServeHTTP(w, r)
	})}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { close(h.closed); _ = srv.Close() })
	return h
}

// TestEntrypoint_ExitBoundHungRemote: a TERM while the on-start snapshot is
// stuck pushing to a remote that accepts the upload and never answers ends
// the entrypoint within SNAPVISOR_EXIT_TIMEOUT (plus a second), not at the
// remote's timeout; the local snapshot is kept.
func TestEntrypoint_ExitBoundHungRemote(t *testing.T) {
	m := storetest.StartMinIO(t)
	const exitTimeout = time.Second
	for _, tc := range []struct {
		name string
		env  []string
	}{
		{"no final snapshot", nil},
		{"final snapshot on exit", []string{"SNAPVISOR_ON_EXIT=true"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := startHangingS3(t, m)
			root := t.TempDir()
			data, backups := filepath.Join(root, "data"), filepath.Join(root, "backups")
			if err := os.MkdirAll(data, 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(data, "f"), []byte("precious"), 0o644); err != nil {
				t.Fatal(err)
			}
			env := append(m.Env(), "SNAPVISOR_BACKUP=true", "SNAPVISOR_SOURCE="+data, "SNAPVISOR_DIR="+backups,
				"SNAPVISOR_CONTROL_SOCKET="+filepath.Join(root, "ctl.sock"),
				"SNAPVISOR_ON_START=true", "SNAPVISOR_START_DELAY=0s", "SNAPVISOR_EXIT_TIMEOUT="+exitTimeout.String(),
				"SNAPVISOR_REMOTE_TIMEOUT=10m", "SNAPVISOR_REMOTE_RETRIES=1",
				"SNAPVISOR_REMOTES="+strings.Replace(m.URL("snapvisor", "hung-"+strings.ReplaceAll(tc.name, " ", "-")), m.Addr, h.Addr, 1))
			// The service exits 0 on TERM: the final snapshot (when on) runs.
			p := startPID1(t, append(env, tc.env...), "--", "sh", "-c", "trap 'exit 0' TERM; while :; do sleep 0.05; done")
			select {
			case <-h.hung:
			case <-p.done:
				t.Fatalf("entrypoint exited (%d) before its push hung", p.code)
			case <-time.After(30 * time.Second):
				t.Fatal("the on-start snapshot's push never reached the remote")
			}
			start := time.Now()
			if err := syscall.Kill(p.pid1(t), syscall.SIGTERM); err != nil {
				t.Fatal(err)
			}
			p.wait(t, 30*time.Second)
			if took := time.Since(start); took > exitTimeout+time.Second {
				t.Fatalf("entrypoint exited %v after TERM, want within SNAPVISOR_EXIT_TIMEOUT (%v) + 1s", took, exitTimeout)
			}
			if ents, _ := filepath.Glob(filepath.Join(backups, "*.sha256")); len(ents) == 0 {
				t.Errorf("no local snapshot kept in %s: %v", backups, entriesOf(backups))
			}
		})
	}
}
