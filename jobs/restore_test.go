package jobs

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"snapvisor/remote"

	"go.uber.org/zap/zaptest"

	"snapvisor/internal/testutil"
	"snapvisor/snapshot"
	"snapvisor/store"
	"snapvisor/store/storetest"
)

// remoteFixture: a source to restore into, snapshots of known contents on
// file:// stores (real stores on the local file system).
type remoteFixture struct {
	root   string
	cfg    snapshot.Config // Sources: root/data (missing: a new volume)
	stores []remote.Remote
	t0     time.Time
}

func newRemoteFixture(t *testing.T, nStores int, dir string) *remoteFixture {
	t.Helper()
	root := t.TempDir()
	f := &remoteFixture{root: root, t0: time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC),
		cfg: snapshot.Config{Sources: []string{filepath.Join(root, "data")}, Dir: dir, Name: "app", Compression: snapshot.CompressionGzip}}
	for i := 0; i < nStores; i++ {
		s, err := store.Open(context.Background(), "file://"+filepath.Join(root, "remote"+string(rune('a'+i))), store.Config{}, nil)
		if err != nil {
			t.Fatal(err)
		}
		f.stores = append(f.stores, remote.Remote{Store: s})
	}
	return f
}

// snap makes a real snapshot whose data/version file holds content, named for t0+hours.
func (f *remoteFixture) snap(t *testing.T, content string, hours int) string {
	t.Helper()
	src := filepath.Join(t.TempDir(), "data")
	if err := os.MkdirAll(src, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(src, "version"), []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg := f.cfg
	cfg.Sources, cfg.Dir = []string{src}, t.TempDir()
	info, err := snapshot.Create(context.Background(), cfg, zaptest.NewLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	// Rename to the wanted time (a fresh .sha256 naming it).
	name := snapshot.FileName(cfg, f.t0.Add(time.Duration(hours)*time.Hour))
	p := filepath.Join(filepath.Dir(info.Path), name)
	if err := os.Rename(info.Path, p); err != nil {
		t.Fatal(err)
	}
	os.Remove(info.Path + ".sha256")
	writeSum(t, p)
	return p
}

func writeSum(t *testing.T, p string) {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(b)
	if err := os.WriteFile(p+".sha256", []byte(hex.EncodeToString(sum[:])+"  "+filepath.Base(p)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
}

func (f *remoteFixture) push(t *testing.T, i int, p string) {
	t.Helper()
	if _, err := remote.Push(context.Background(), f.stores[i], p); err != nil {
		t.Fatal(err)
	}
}

// corrupt overwrites a pushed archive on store i with other bytes of the same size.
func (f *remoteFixture) corrupt(t *testing.T, i int, p string) {
	t.Helper()
	fi, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.stores[i].Put(context.Background(), filepath.Base(p), strings.NewReader(strings.Repeat("x", int(fi.Size()))), fi.Size()); err != nil {
		t.Fatal(err)
	}
}

func (f *remoteFixture) restored(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(f.cfg.Sources[0], "version"))
	if err != nil {
		return "(nothing: " + err.Error() + ")"
	}
	return string(b)
}

// leftovers lists what is beside the target other than the target and the remotes.
func (f *remoteFixture) leftovers(t *testing.T) []string {
	t.Helper()
	ents, _ := os.ReadDir(f.root)
	var out []string
	for _, e := range ents {
		if n := e.Name(); n != "data" && !strings.HasPrefix(n, "remote") && n != "backups" {
			out = append(out, n)
		}
	}
	return out
}

func TestRestoreIfEmpty_Remotes(t *testing.T) {
	ctx := context.Background()

	t.Run("streaming mode: newest that verifies, newest first across remotes, no local files left", func(t *testing.T) {
		f := newRemoteFixture(t, 2, "")
		v1, v2, v3 := f.snap(t, "v1", 1), f.snap(t, "v2", 2), f.snap(t, "v3", 3)
		f.push(t, 0, v1)
		f.push(t, 1, v2) // the second remote has the newer ones
		f.push(t, 1, v3)
		f.corrupt(t, 1, v3) // the newest does not verify: v2 next (not v1 of the first remote)
		name, err := RestoreIfEmpty(ctx, f.cfg, f.stores, zaptest.NewLogger(t))
		if err != nil || name != filepath.Base(v2) || f.restored(t) != "v2" {
			t.Fatalf("RestoreIfEmpty = %q, %v; restored %q; want v2", name, err, f.restored(t))
		}
		if l := f.leftovers(t); len(l) != 0 {
			t.Errorf("left beside the target: %v (the temporary download must be deleted)", l)
		}
	})
	t.Run("a corrupt copy falls back to the same snapshot on the next remote", func(t *testing.T) {
		f := newRemoteFixture(t, 2, filepath.Join(t.TempDir(), "backups"))
		v1, v2 := f.snap(t, "v1", 1), f.snap(t, "v2", 2)
		for i := range f.stores {
			f.push(t, i, v1)
			f.push(t, i, v2)
		}
		f.corrupt(t, 0, v2)
		name, err := RestoreIfEmpty(ctx, f.cfg, f.stores, zaptest.NewLogger(t))
		if err != nil || name != filepath.Base(v2) || f.restored(t) != "v2" {
			t.Fatalf("RestoreIfEmpty = %q, %v; restored %q; want v2 from the second remote", name, err, f.restored(t))
		}
		// With a snapshot directory the download stays there as a local snapshot.
		if list, _ := snapshot.List(f.cfg.Dir, "app"); len(list) != 1 || list[0].Name != filepath.Base(v2) {
			t.Errorf("local snapshots after the restore: %+v", list)
		}
	})
	t.Run("local snapshots that do not verify fall back to the remotes", func(t *testing.T) {
		f := newRemoteFixture(t, 1, filepath.Join(t.TempDir(), "backups"))
		v1, v2 := f.snap(t, "v1", 1), f.snap(t, "v2", 2)
		f.push(t, 0, v1)
		if err := os.MkdirAll(f.cfg.Dir, 0o700); err != nil {
			t.Fatal(err)
		}
		local := filepath.Join(f.cfg.Dir, filepath.Base(v2))
		if err := os.WriteFile(local, []byte("garbage"), 0o600); err != nil {
			t.Fatal(err)
		}
		writeSum(t, local) // a matching checksum, but not an archive: ErrCorrupt
		name, err := RestoreIfEmpty(ctx, f.cfg, f.stores, zaptest.NewLogger(t))
		if err != nil || name != filepath.Base(v1) || f.restored(t) != "v1" {
			t.Fatalf("RestoreIfEmpty = %q, %v; restored %q; want v1 from the remote", name, err, f.restored(t))
		}
	})
	t.Run("a local fault stops: older snapshots are not tried", func(t *testing.T) {
		f := newRemoteFixture(t, 1, filepath.Join(t.TempDir(), "backups"))
		v1, v2 := f.snap(t, "v1", 1), f.snap(t, "v2", 2)
		f.push(t, 0, v1)
		f.push(t, 0, v2)
		// A directory where the download of the newest must go: renaming it
		// into place fails locally (as a full disk or a permission would).
		if err := os.MkdirAll(filepath.Join(f.cfg.Dir, filepath.Base(v2), "x"), 0o700); err != nil {
			t.Fatal(err)
		}
		name, err := RestoreIfEmpty(ctx, f.cfg, f.stores, zaptest.NewLogger(t))
		if err == nil || !errors.Is(err, ErrRestoreFailed) || !strings.Contains(err.Error(), "not the snapshot's") {
			t.Fatalf("RestoreIfEmpty = %q, %v; want a failure that does not fall back", name, err)
		}
		if got := f.restored(t); got == "v1" {
			t.Errorf("the older snapshot was restored after a local fault")
		}
	})
	t.Run("a remote that cannot be listed, and no snapshot elsewhere: fail, do not start empty", func(t *testing.T) {
		f := newRemoteFixture(t, 1, "")
		blocker := filepath.Join(f.root, "nfs")
		if err := os.WriteFile(blocker, []byte("not mounted"), 0o600); err != nil {
			t.Fatal(err)
		}
		all, oerr := remote.OpenAll(ctx, store.Config{Retries: 1, Backoff: time.Millisecond, Timeout: time.Minute,
			Remotes: []string{"file://" + filepath.Join(f.root, "remotea"), "file://" + blocker + "/backups"}}, nil, nil)
		if oerr == nil || len(all) != 2 {
			t.Fatalf("OpenAll = %d, %v", len(all), oerr)
		}
		_, err := RestoreIfEmpty(ctx, f.cfg, all, zaptest.NewLogger(t))
		if !errors.Is(err, ErrRestoreFailed) || !errors.Is(err, ErrRemoteUnavailable) ||
			!strings.Contains(err.Error(), blocker) || !strings.Contains(err.Error(), "SNAPVISOR_RESTORE=never") {
			t.Fatalf("RestoreIfEmpty = %v; want a failure naming the remote and the way out", err)
		}
		// Another remote has a snapshot: it is restored (the unreadable one is warned about).
		f.push(t, 0, f.snap(t, "v1", 1))
		name, err := RestoreIfEmpty(ctx, f.cfg, all, zaptest.NewLogger(t))
		if err != nil || f.restored(t) != "v1" {
			t.Fatalf("RestoreIfEmpty = %q, %v; want v1 from the readable remote", name, err)
		}
	})
	t.Run("a hung remote delays neither the others' listing nor the restore beyond its own limit", func(t *testing.T) {
		f := newRemoteFixture(t, 1, "")
		f.push(t, 0, f.snap(t, "v1", 1))
		const limit = 3 * time.Second
		hung, err := store.Open(ctx, "s3://bucket/app?endpoint="+storetest.HungAddr(t)+"&tls=false&region=us-east-1",
			store.Config{S3AccessKey: "minio", S3SecretKey: "minio-secret"}, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer hung.Close()
		good := &listTimed{Store: f.stores[0].Store}
		start := time.Now()
		name, err := RestoreIfEmpty(ctx, f.cfg, []remote.Remote{{Store: hung, Timeout: limit}, {Store: good}}, zaptest.NewLogger(t))
		elapsed := time.Since(start)
		if err != nil || f.restored(t) != "v1" {
			t.Fatalf("RestoreIfEmpty = %q, %v; want v1 from the remote that answers", name, err)
		}
		if d := good.listed().Sub(start); d <= 0 || d > limit/2 {
			t.Errorf("the second remote was listed %s after the start: it waited for the hung first one (limit %s)", d, limit)
		}
		if elapsed > limit+2*time.Second {
			t.Errorf("auto-restore took %s with one hung remote limited to %s", elapsed, limit)
		}
	})
	t.Run("reachable remotes without snapshots: start with empty data", func(t *testing.T) {
		f := newRemoteFixture(t, 2, "")
		name, err := RestoreIfEmpty(ctx, f.cfg, f.stores, zaptest.NewLogger(t))
		if err != nil || name != "" {
			t.Fatalf("RestoreIfEmpty = %q, %v", name, err)
		}
	})
	t.Run("every remote snapshot corrupt: fail", func(t *testing.T) {
		f := newRemoteFixture(t, 1, "")
		v1 := f.snap(t, "v1", 1)
		f.push(t, 0, v1)
		f.corrupt(t, 0, v1)
		_, err := RestoreIfEmpty(ctx, f.cfg, f.stores, zaptest.NewLogger(t))
		if !errors.Is(err, ErrRestoreFailed) || !errors.Is(err, snapshot.ErrChecksum) {
			t.Fatalf("RestoreIfEmpty = %v, want a checksum failure", err)
		}
		if l := f.leftovers(t); len(l) != 0 {
			t.Errorf("left beside the target: %v", l)
		}
	})
}

// TestRestoreIfEmpty_Empty: a data directory holding only lost+found (a
// fresh ext4 volume) and leftovers of restore's own is empty: the newest
// snapshot is restored (lost+found stays at a mount point's root); any
// other entry is data and nothing is restored.
func TestRestoreIfEmpty_Empty(t *testing.T) {
	ctx := context.Background()
	mkdir := func(t *testing.T, p string) {
		t.Helper()
		if err := os.MkdirAll(p, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct {
		name     string
		mount    bool
		plant    func(t *testing.T, data string)
		restored bool
	}{
		{"only lost+found", false, func(t *testing.T, data string) { mkdir(t, filepath.Join(data, "lost+found")) }, true},
		{"lost+found at a mount point's root", true, func(t *testing.T, data string) { mkdir(t, filepath.Join(data, "lost+found")) }, true},
		{"lost+found and an interrupted restore's staging", true, func(t *testing.T, data string) {
			mkdir(t, filepath.Join(data, "lost+found"))
			mkdir(t, filepath.Join(data, ".snapvisor-restore-123", "half"))
		}, true},
		{"a staging directory beside", false, func(t *testing.T, data string) {
			mkdir(t, data)
			mkdir(t, filepath.Join(filepath.Dir(data), ".data.restore-123", "half"))
		}, true},
		{"lost+found and data", true, func(t *testing.T, data string) {
			mkdir(t, filepath.Join(data, "lost+found"))
			if err := os.WriteFile(filepath.Join(data, "version"), []byte("live"), 0o644); err != nil {
				t.Fatal(err)
			}
		}, false},
		{"lost+found as a file is data", false, func(t *testing.T, data string) {
			mkdir(t, data)
			if err := os.WriteFile(filepath.Join(data, "lost+found"), []byte("live"), 0o644); err != nil {
				t.Fatal(err)
			}
		}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newRemoteFixture(t, 0, filepath.Join(t.TempDir(), "backups"))
			mkdir(t, f.cfg.Dir)
			v1 := f.snap(t, "v1", 1)
			if err := os.Rename(v1, filepath.Join(f.cfg.Dir, filepath.Base(v1))); err != nil {
				t.Fatal(err)
			}
			if err := os.Rename(v1+".sha256", filepath.Join(f.cfg.Dir, filepath.Base(v1))+".sha256"); err != nil {
				t.Fatal(err)
			}
			data := f.cfg.Sources[0]
			if tc.mount {
				mkdir(t, data)
				if err := syscall.Mount("tmpfs", data, "tmpfs", 0, "size=16m"); err != nil {
					testutil.Unavailable(t, "cannot mount a tmpfs (needs root): %v", err)
				}
				t.Cleanup(func() { syscall.Unmount(data, syscall.MNT_DETACH) })
			}
			tc.plant(t, data)
			name, err := RestoreIfEmpty(ctx, f.cfg, nil, zaptest.NewLogger(t))
			if err != nil {
				t.Fatal(err)
			}
			if !tc.restored {
				if name != "" || f.restored(t) == "v1" {
					t.Fatalf("RestoreIfEmpty = %q: restored over data", name)
				}
				return
			}
			if name != filepath.Base(v1) || f.restored(t) != "v1" {
				t.Fatalf("RestoreIfEmpty = %q, restored %q; want v1", name, f.restored(t))
			}
			if tc.mount {
				if fi, err := os.Lstat(filepath.Join(data, "lost+found")); err != nil || !fi.IsDir() {
					t.Errorf("lost+found is gone from the mount point's root: %v", err)
				}
			}
			if m, _ := filepath.Glob(filepath.Join(data, ".snapvisor-*")); len(m) > 0 {
				t.Errorf("work files left in the target: %v", m)
			}
			if l := f.leftovers(t); len(l) != 0 {
				t.Errorf("left beside the target: %v", l)
			}
		})
	}
}

// listTimed is a store that notes when its last List returned.
type listTimed struct {
	store.Store
	mu sync.Mutex
	at time.Time
}

func (l *listTimed) List(ctx context.Context, prefix string) ([]store.Object, error) {
	objs, err := l.Store.List(ctx, prefix)
	l.mu.Lock()
	l.at = time.Now()
	l.mu.Unlock()
	return objs, err
}

func (l *listTimed) listed() time.Time {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.at
}
