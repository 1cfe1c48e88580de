package remote

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"snapvisor/store"

	"github.com/VictoriaMetrics/metrics"

	"snapvisor/rotation"
	"snapvisor/store/storetest"
)

// TestRotate_Orphans: leftovers of interrupted uploads (an archive without
// its .sha256, a .sha256 without its archive) older than the newest complete
// snapshot are deleted by Rotate; newer ones (an upload in progress) and
// other names are kept; none is ever listed as a snapshot.
func TestRotate_Orphans(t *testing.T) {
	ctx := storetest.Ctx(t, time.Minute)
	s := storetest.Open(t, "file://"+t.TempDir(), store.Config{})
	t0 := time.Date(2025, 5, 1, 0, 0, 0, 0, time.UTC)
	key := func(name string, h int) string {
		return fmt.Sprintf("%s-%s.tar.gz", name, t0.Add(time.Duration(h)*time.Hour).Format("20060102T150405Z"))
	}
	local := t.TempDir()
	for _, h := range []int{1, 3} {
		if _, err := Push(ctx, s, storetest.MakeSnapshot(t, local, "app", t0.Add(time.Duration(h)*time.Hour), ".tar.gz", 1000)); err != nil {
			t.Fatal(err)
		}
	}
	put := func(k string) {
		t.Helper()
		if err := s.Put(ctx, k, strings.NewReader("partial"), 7); err != nil {
			t.Fatal(err)
		}
	}
	put(key("app", 2))             // interrupted upload, older than the newest complete: deleted
	put(key("app", 0) + ".sha256") // checksum without archive, older: deleted
	put(key("app", 4))             // newer than the newest complete: maybe in progress, kept
	put(key("app-cache", 0))       // another name: untouched
	put("app-notes.txt")           // not a snapshot name: untouched
	if snaps, _ := ListSnapshots(ctx, s, "app"); len(snaps) != 2 {
		t.Fatalf("listed %+v, want the 2 complete snapshots only", snaps)
	}
	_, deleted, err := Rotate(ctx, s, "app", rotation.Policy{Keep: 5}, t0.Add(5*time.Hour), nil)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{key("app", 0) + ".sha256", key("app", 2)}
	if strings.Join(deleted, " ") != strings.Join(want, " ") {
		t.Errorf("Rotate deleted %v, want %v", deleted, want)
	}
	objs, _ := s.List(ctx, "")
	var keys []string
	for _, o := range objs {
		keys = append(keys, o.Key)
	}
	for _, k := range []string{key("app", 1), key("app", 3), key("app", 4), key("app-cache", 0), "app-notes.txt"} {
		if !slices.Contains(keys, k) {
			t.Errorf("Rotate removed %s; left %v", k, keys)
		}
	}
	if snaps, _ := ListSnapshots(ctx, s, "app"); len(snaps) != 2 {
		t.Errorf("after rotation listed %+v", snaps)
	}
}

// TestTimeout: a server that accepts connections and never answers is given
// up after the store's Timeout (SNAPVISOR_REMOTE_TIMEOUT), for every network
// store kind, with an error naming the limit; the local snapshot is intact.
func TestTimeout(t *testing.T) {
	addr := storetest.HungAddr(t)
	keyFile := filepath.Join(t.TempDir(), "key")
	storetest.WriteKey(t, keyFile)
	for _, tc := range []struct {
		name, url string
		cfg       store.Config
	}{
		{"s3", "s3://bucket/p?endpoint=" + addr + "&tls=false&region=us-east-1", storetest.MinIOConfig()},
		{"gs", "gs://bucket/p", store.Config{GCSEmulatorHost: addr}},
		{"azure", "azure://container/p", storetest.AzureConfig("http://" + addr + "/" + storetest.AzuriteAccount)},
		{"sftp", "sftp://u@" + addr + "/p", store.Config{SFTPKeyFile: keyFile, SFTPInsecureNoHost: true}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := Remote{Store: store.WithRetry(storetest.Open(t, tc.url, tc.cfg), store.Policy{Retries: 3, Backoff: 10 * time.Millisecond}, nil), Timeout: 1500 * time.Millisecond}
			p := storetest.MakeSnapshot(t, t.TempDir(), "app", time.Now(), ".tar.gz", 64<<10)
			start := time.Now()
			ctx, cancel := s.WithTimeout(context.Background())
			_, err := Push(ctx, s, p)
			err = TimeoutError(ctx, err)
			cancel()
			d := time.Since(start)
			if err == nil || !errors.Is(err, ErrTimeout) || !strings.Contains(err.Error(), "SNAPVISOR_REMOTE_TIMEOUT") || !strings.Contains(err.Error(), s.Name()) {
				t.Fatalf("push to a hung server: %v, want a timeout naming SNAPVISOR_REMOTE_TIMEOUT and the store", err)
			}
			if d > 15*time.Second {
				t.Errorf("push to a hung server took %s with a 1.5s limit", d)
			}
			if _, err := os.Stat(p + ".sha256"); err != nil {
				t.Errorf("local snapshot: %v", err)
			}
			ctx, cancel = s.WithTimeout(context.Background())
			_, err = Fetch(ctx, s, filepath.Base(p), t.TempDir())
			err = TimeoutError(ctx, err)
			cancel()
			if !errors.Is(err, ErrTimeout) {
				t.Errorf("fetch from a hung server: %v, want a timeout", err)
			}
		})
	}
}

func TestPushStream(t *testing.T) {
	ctx := storetest.Ctx(t, time.Minute)
	s := storetest.Open(t, "file://"+t.TempDir(), store.Config{})
	key := "app-20250101T000000Z.tar.zst"
	rs, err := PushStream(ctx, s, key, storetest.Gen(7, 5<<20), nil)
	if err != nil || rs.Size != 5<<20 {
		t.Fatalf("PushStream: %+v, %v", rs, err)
	}
	local, err := Fetch(ctx, s, key, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(local); err != nil || fi.Size() != 5<<20 {
		t.Errorf("fetched %v, %v", fi, err)
	}
	// A source failing midway leaves no snapshot.
	_, err = PushStream(ctx, s, "app-20250102T000000Z.tar.zst", io.MultiReader(storetest.Gen(8, 1<<20), errReader{}), nil)
	if err == nil {
		t.Fatal("PushStream of a failing source succeeded")
	}
	if snaps, _ := ListSnapshots(ctx, s, "app"); len(snaps) != 1 {
		t.Errorf("after a failed stream: %+v", snaps)
	}
}

type errReader struct{}

func (errReader) Read([]byte) (int, error) { return 0, errors.New("source broke") }

func TestOpenAll(t *testing.T) {
	dir := t.TempDir()
	blocker := filepath.Join(dir, "not-mounted")
	storetest.MustWrite(t, blocker, []byte("a file where the mount's directory should be"))
	cfg := store.Config{Retries: 1, Backoff: time.Millisecond, Timeout: time.Minute,
		Remotes: []string{"file://" + dir + "/a", "ftp://x/y", "file://" + dir + "/b", "file://" + blocker + "/c"}}
	stores, err := OpenAll(context.Background(), cfg, metrics.NewSet(), nil)
	defer CloseAll(stores)
	if len(stores) != 3 || err == nil || !strings.Contains(err.Error(), "ftp") || !strings.Contains(err.Error(), "not-mounted") {
		t.Fatalf("OpenAll = %d stores, %v; want the two good ones and the one that failed to open (the invalid URL left out)", len(stores), err)
	}
	p := storetest.MakeSnapshot(t, t.TempDir(), "db", time.Now(), ".tar", 4096)
	for _, s := range stores[:2] {
		if _, err := Push(context.Background(), s, p); err != nil {
			t.Fatal(err)
		}
		if snaps, err := ListSnapshots(context.Background(), s, "db"); err != nil || len(snaps) != 1 {
			t.Errorf("%s: %+v, %v", s.Name(), snaps, err)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "b", filepath.Base(p)+".sha256")); err != nil {
		t.Error(err)
	}
	if got := stores[0].Timeout; got != time.Minute {
		t.Errorf("Timeout = %v, want SNAPVISOR_REMOTE_TIMEOUT's 1m", got)
	}

	// The remote that failed to open is kept: each operation tries again and
	// fails naming it, until it can be opened (the mount appears).
	bad := stores[2]
	if !strings.Contains(bad.Name(), "not-mounted/c") {
		t.Errorf("name %q", bad.Name())
	}
	if _, err := ListSnapshots(context.Background(), bad, "db"); err == nil || !strings.Contains(err.Error(), bad.Name()) {
		t.Errorf("list on a remote that cannot be opened: %v, want an error naming it", err)
	}
	if _, err := Push(context.Background(), bad, p); err == nil {
		t.Error("push to a remote that cannot be opened succeeded")
	}
	if err := os.Remove(blocker); err != nil {
		t.Fatal(err)
	}
	if _, err := Push(context.Background(), bad, p); err != nil {
		t.Fatalf("push once the remote can be opened: %v", err)
	}
	if snaps, err := ListSnapshots(context.Background(), bad, "db"); err != nil || len(snaps) != 1 {
		t.Errorf("after re-opening: %+v, %v", snaps, err)
	}
}
