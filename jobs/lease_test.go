package jobs

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"snapvisor/remote"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"

	"snapvisor/rotation"
	"snapvisor/snapshot"
	"snapvisor/store"
)

// writer is one snapvisor instance of a lease test: a runner (no service)
// snapshotting its own data into its own directory, pushing to shared remotes.
type writer struct {
	r    *Runner
	dir  string
	m    *Metrics
	keys []string // the snapshots it took
}

// newWriter makes a runner as host; dir "" means streaming mode.
func newWriter(t *testing.T, host, compression string, streaming bool, remotes ...string) *writer {
	t.Helper()
	root := t.TempDir()
	data := filepath.Join(root, "data")
	if err := os.MkdirAll(data, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(data, "who"), []byte(host), 0o644); err != nil {
		t.Fatal(err)
	}
	w := &writer{m: NewMetrics()}
	if !streaming {
		w.dir = filepath.Join(root, "backups")
	}
	snap := snapshot.Config{Sources: []string{data}, Dir: w.dir, Name: "app", Compression: compression}
	log := zaptest.NewLogger(t, zaptest.Level(zap.WarnLevel)).With(zap.String("writer", host))
	w.r = NewRunner(Config{Freeze: FreezeNone}, snap, rotation.Policy{Keep: 10}, nil, nil, log, w.m)
	var stores []remote.Remote
	for _, u := range remotes {
		s, err := store.Open(context.Background(), u, store.Config{}, log)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		stores = append(stores, remote.Remote{Store: store.WithRetry(store.WithMetrics(s, w.m.MetricsSet(), log), store.Policy{Retries: 1, Backoff: time.Millisecond}, log), Timeout: time.Minute})
	}
	w.r.SetRemotes(stores)
	w.r.leases.writer = remote.Writer{Host: host, Instance: host + "-instance"}
	return w
}

func (w *writer) run(t *testing.T) Result {
	t.Helper()
	res, err := w.r.Trigger(context.Background(), "test")
	if err != nil {
		t.Fatal(err)
	}
	if res.Snapshot != "" {
		w.keys = append(w.keys, res.Snapshot)
	}
	return res
}

// conflictGauge returns snapvisor_remote_lease_conflict for remote as the metrics page shows it.
func (w *writer) conflictGauge(remote string) string {
	var buf bytes.Buffer
	w.m.WritePrometheus(&buf)
	prefix := `snapvisor_remote_lease_conflict{remote="` + remote + `"} `
	for _, l := range strings.Split(buf.String(), "\n") {
		if v, ok := strings.CutPrefix(l, prefix); ok {
			return v
		}
	}
	return ""
}

// remoteKeys lists the complete snapshots named app on the file:// remote at dir.
func remoteKeys(t *testing.T, dir string) []string {
	t.Helper()
	s, err := store.Open(context.Background(), "file://"+dir, store.Config{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	list, err := remote.ListSnapshots(context.Background(), s, "app")
	if err != nil {
		t.Fatal(err)
	}
	var keys []string
	for _, rs := range list {
		keys = append(keys, rs.Key)
	}
	slices.Sort(keys)
	return keys
}

// TestRunner_Leases: two writers with the same SNAPVISOR_NAME and remote.
// The second is refused (result, health, metric) and its local snapshots go
// on; the remote holds the first one's snapshots only. After the first
// writer's lease expires the second takes over; a takeover is at once; a
// release lets the next one in.
func TestRunner_Leases(t *testing.T) {
	remoteDir := t.TempDir()
	url := "file://" + remoteDir
	a := newWriter(t, "host-a", snapshot.CompressionGzip, false, url)
	b := newWriter(t, "host-b", snapshot.CompressionZstd, false, url)
	name := a.r.remotes[0].Name()

	if res := a.run(t); !res.OK() || len(res.Remotes) != 1 || res.Remotes[0].Error != "" {
		t.Fatalf("first writer: %+v", res)
	}
	for range 2 {
		res := b.run(t)
		if !res.OK() {
			t.Fatalf("second writer's local snapshot failed: %+v", res)
		}
		pr := res.Remotes[0]
		if pr.LeaseHolder == nil || pr.LeaseHolder.Host != "host-a" || !strings.Contains(pr.Error, "host-a") || !strings.Contains(pr.Error, "entrypoint takeover") {
			t.Fatalf("second writer's push: %+v, want refused naming host-a", pr)
		}
	}
	if got := snapshotsIn(t, b.dir); len(got) != 2 {
		t.Errorf("second writer's local snapshots: %v, want 2", got)
	}
	if got, want := remoteKeys(t, remoteDir), a.keys; !slices.Equal(got, want) {
		t.Errorf("remote holds %v, want only the first writer's %v", got, want)
	}
	st := b.r.status(time.Time{}, time.Hour)
	if st.Healthy || !strings.Contains(st.Problem, "host-a") || !strings.Contains(st.Problem, name) {
		t.Errorf("second writer's health: %+v, want unhealthy naming the holder and the remote", st)
	}
	if g := b.conflictGauge(name); g != "1" {
		t.Errorf("second writer's lease conflict gauge = %q, want 1", g)
	}
	if st := a.r.status(time.Time{}, time.Hour); !st.Healthy {
		t.Errorf("first writer's health: %+v", st)
	}

	t.Run("the lease expires: the second writer takes over", func(t *testing.T) {
		b.r.leases.now = func() time.Time { return time.Now().Add(remote.DefaultLeaseTTL + time.Minute) }
		res := b.run(t)
		if pr := res.Remotes[0]; pr.Error != "" || pr.LeaseHolder != nil {
			t.Fatalf("after the expiry: %+v", pr)
		}
		if st := b.r.status(time.Time{}, time.Hour); !st.Healthy {
			t.Errorf("health after taking over: %+v", st)
		}
		if g := b.conflictGauge(name); g != "0" {
			t.Errorf("gauge after taking over = %q, want 0", g)
		}
		if got := remoteKeys(t, remoteDir); !slices.Contains(got, res.Snapshot) {
			t.Errorf("remote %v lacks %s", got, res.Snapshot)
		}
		// The first writer is refused now, and rotates nothing there.
		before := remoteKeys(t, remoteDir)
		if pr := a.run(t).Remotes[0]; pr.LeaseHolder == nil || pr.LeaseHolder.Host != "host-b" {
			t.Errorf("first writer after the takeover: %+v", pr)
		}
		if got := remoteKeys(t, remoteDir); !slices.Equal(got, before) {
			t.Errorf("a refused writer changed the remote: %v, was %v", got, before)
		}
	})

	t.Run("takeover: at once", func(t *testing.T) {
		b.r.leases.now = time.Now
		got := a.r.TakeLeases(context.Background())
		if len(got) != 1 || got[0].Action != "taken" || got[0].Error != "" || got[0].Previous == nil || got[0].Previous.Host != "host-b" {
			t.Fatalf("TakeLeases = %+v", got)
		}
		if st := a.r.status(time.Time{}, time.Hour); !st.Healthy {
			t.Errorf("health after the takeover: %+v", st)
		}
		if pr := a.run(t).Remotes[0]; pr.Error != "" {
			t.Errorf("push after the takeover: %+v", pr)
		}
		if pr := b.run(t).Remotes[0]; pr.LeaseHolder == nil || pr.LeaseHolder.Host != "host-a" {
			t.Errorf("the previous holder after the takeover: %+v", pr)
		}
	})

	t.Run("release: the next writer takes it at once", func(t *testing.T) {
		a.r.ReleaseLeases(context.Background())
		if _, err := os.Stat(filepath.Join(remoteDir, remote.LeaseKey("app"))); !os.IsNotExist(err) {
			t.Fatalf("lease still there after the release: %v", err)
		}
		if pr := b.run(t).Remotes[0]; pr.Error != "" {
			t.Errorf("push after the release: %+v", pr)
		}
	})

	t.Run("streaming mode: only to the remotes whose lease it holds", func(t *testing.T) {
		free := t.TempDir()
		c := newWriter(t, "host-c", snapshot.CompressionZstd, true, url, "file://"+free)
		res := c.run(t)
		if !res.OK() || len(res.Remotes) != 2 {
			t.Fatalf("streamed run: %+v", res)
		}
		if pr := res.Remotes[0]; pr.LeaseHolder == nil || pr.LeaseHolder.Host != "host-b" {
			t.Errorf("held remote: %+v, want refused naming host-b", pr)
		}
		if pr := res.Remotes[1]; pr.Error != "" {
			t.Errorf("free remote: %+v", pr)
		}
		if got := remoteKeys(t, remoteDir); slices.Contains(got, res.Snapshot) {
			t.Errorf("streamed into a remote held by another writer: %v", got)
		}
		if got := remoteKeys(t, free); !slices.Equal(got, []string{res.Snapshot}) {
			t.Errorf("free remote holds %v", got)
		}
		// Every remote held by another writer: the streamed run fails, naming it.
		d := newWriter(t, "host-d", snapshot.CompressionZstd, true, url)
		if res := d.run(t); res.OK() || !strings.Contains(res.Error, "host-b") {
			t.Errorf("streamed run with no remote of its own: %+v", res)
		}
	})
}

// TestRunner_StaleUploads: an upload temporary left on a file:// remote by a
// push that was killed (older than the newest snapshot there) is gone after
// the next successful push and rotation; a temporary of the snapshot being
// pushed is not touched.
func TestRunner_StaleUploads(t *testing.T) {
	remoteDir := t.TempDir()
	w := newWriter(t, "host-a", snapshot.CompressionGzip, false, "file://"+remoteDir)
	stale := filepath.Join(remoteDir, ".app-20200101T000000Z.tar.gz.tmp-1234567")
	if err := os.WriteFile(stale, bytes.Repeat([]byte("x"), 1<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	future := filepath.Join(remoteDir, ".app-"+time.Now().Add(time.Hour).UTC().Format(snapshot.TimeLayout)+".tar.gz.tmp-7654321")
	if err := os.WriteFile(future, []byte("in progress"), 0o644); err != nil {
		t.Fatal(err)
	}
	res := w.run(t)
	if !res.OK() || res.Remotes[0].Error != "" {
		t.Fatalf("run: %+v", res)
	}
	if _, err := os.Stat(stale); !os.IsNotExist(err) {
		t.Errorf("stale temporary still there after a push and rotation: %v", err)
	}
	if _, err := os.Stat(future); err != nil {
		t.Errorf("the temporary of a newer snapshot was removed: %v", err)
	}
	if !slices.ContainsFunc(res.Remotes[0].Deleted, func(k string) bool { return strings.HasPrefix(k, "app-20200101T000000Z.tar.gz") }) {
		t.Errorf("deleted %v, want the stale upload reported", res.Remotes[0].Deleted)
	}
}

// snapshotsIn lists the snapshots named app in dir.
func snapshotsIn(t *testing.T, dir string) []string {
	t.Helper()
	list, err := snapshot.List(dir, "app")
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, i := range list {
		out = append(out, i.Name)
	}
	return out
}
