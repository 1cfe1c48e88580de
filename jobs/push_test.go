package jobs

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"snapvisor/remote"

	"go.uber.org/zap/zaptest"

	"snapvisor/snapshot"
	"snapvisor/store"
	"snapvisor/store/storetest"
)

func sshKeyFile(t *testing.T) string {
	p := filepath.Join(t.TempDir(), "key")
	storetest.WriteKey(t, p)
	return p
}

// TestStreamToRemotes: one snapshot, no local file, fanned out to several
// remotes; a remote that fails or hangs is dropped (after
// SNAPVISOR_REMOTE_TIMEOUT) while the others get the snapshot.
func TestStreamToRemotes(t *testing.T) {
	ctx := context.Background()
	root := t.TempDir()
	src := filepath.Join(root, "data")
	if err := os.MkdirAll(src, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(src, "version"), []byte("streamed"), 0o644); err != nil {
		t.Fatal(err)
	}
	// Enough data that the pipe to a remote that stops reading fills up.
	if err := os.WriteFile(filepath.Join(src, "big"), make([]byte, 8<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg := snapshot.Config{Sources: []string{src}, Name: "app", Compression: snapshot.CompressionNone}
	policy := store.Policy{Retries: 2, Backoff: 10 * time.Millisecond}
	open := func(t *testing.T, u string, c store.Config) remote.Remote {
		s, err := store.Open(ctx, u, c, nil)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return remote.Remote{Store: store.WithRetry(s, policy, nil), Timeout: 2 * time.Second}
	}
	good1 := open(t, "file://"+filepath.Join(root, "r1"), store.Config{})
	good2 := open(t, "file://"+filepath.Join(root, "r2"), store.Config{})
	hung := open(t, "sftp://u@"+storetest.HungAddr(t)+"/backups", store.Config{SFTPKeyFile: sshKeyFile(t), SFTPInsecureNoHost: true})

	start := time.Now()
	info, results, err := remote.Stream(ctx, cfg, []remote.Remote{good1, hung, good2}, time.Now(), zaptest.NewLogger(t))
	elapsed := time.Since(start)
	if err != nil {
		t.Fatalf("remote.Stream: %v", err)
	}
	if info.Path != "" || info.Size == 0 || !strings.HasPrefix(info.Name, "app-") {
		t.Errorf("info %+v", info)
	}
	if len(results) != 3 || results[0].Error != "" || results[2].Error != "" {
		t.Fatalf("results %+v; want the two good remotes to succeed", results)
	}
	if !strings.Contains(results[1].Error, "SNAPVISOR_REMOTE_TIMEOUT") {
		t.Errorf("hung remote: %q, want a timeout", results[1].Error)
	}
	if elapsed > 20*time.Second {
		t.Errorf("a hung remote held the snapshot for %s with a 2s limit", elapsed)
	}
	for _, s := range []remote.Remote{good1, good2} {
		list, err := remote.ListSnapshots(ctx, s, "app")
		if err != nil || len(list) != 1 || list[0].Key != info.Name || list[0].Size != info.Size {
			t.Errorf("%s: %+v, %v", s.Name(), list, err)
		}
	}
	if ents, _ := os.ReadDir(root); len(ents) != 3 { // data, r1, r2: nothing written locally
		var names []string
		for _, e := range ents {
			names = append(names, e.Name())
		}
		t.Errorf("local entries %v", names)
	}

	// Restoring it in streaming mode brings the data back.
	if err := os.RemoveAll(src); err != nil {
		t.Fatal(err)
	}
	name, err := RestoreIfEmpty(ctx, cfg, []remote.Remote{good2}, zaptest.NewLogger(t))
	if err != nil || name != info.Name {
		t.Fatalf("RestoreIfEmpty = %q, %v", name, err)
	}
	if b, _ := os.ReadFile(filepath.Join(src, "version")); string(b) != "streamed" {
		t.Errorf("restored %q", b)
	}

	t.Run("every remote fails: the snapshot fails, nothing is listed", func(t *testing.T) {
		blocker := filepath.Join(t.TempDir(), "file")
		if err := os.WriteFile(blocker, nil, 0o600); err != nil {
			t.Fatal(err)
		}
		stores, oerr := remote.OpenAll(ctx, store.Config{Retries: 0, Backoff: time.Millisecond, Timeout: time.Minute,
			Remotes: []string{"file://" + blocker + "/x"}}, nil, nil)
		if oerr == nil || len(stores) != 1 {
			t.Fatalf("OpenAll = %d, %v", len(stores), oerr)
		}
		_, results, err := remote.Stream(ctx, cfg, stores, time.Now(), zaptest.NewLogger(t))
		if err == nil || len(results) != 1 || results[0].Error == "" || !strings.Contains(err.Error(), blocker) {
			t.Fatalf("remote.Stream to a broken remote: %v, %+v", err, results)
		}
	})
	t.Run("no remote", func(t *testing.T) {
		if _, _, err := remote.Stream(ctx, cfg, nil, time.Now(), zaptest.NewLogger(t)); !errors.Is(err, remote.ErrNoRemote) {
			t.Errorf("got %v", err)
		}
	})
}
