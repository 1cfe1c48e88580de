package jobs

import (
	"context"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"

	"snapvisor/config"
	"snapvisor/remote"
	"snapvisor/restic"
	"snapvisor/rotation"
	"snapvisor/snapshot"
	"snapvisor/store"
	"snapvisor/store/storetest"
)

// resticFixture is a source, a snapshot directory and restic settings.
type resticFixture struct {
	src, dir string
	snap     snapshot.Config
	settings restic.Settings
}

func newResticFixture(t *testing.T) resticFixture {
	root := t.TempDir()
	src := filepath.Join(root, "data")
	if err := os.MkdirAll(src, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(src, "version"), []byte("one"), 0o644); err != nil {
		t.Fatal(err)
	}
	return resticFixture{src: src, dir: filepath.Join(root, "repo"),
		snap:     snapshot.Config{Sources: []string{src}, Dir: filepath.Join(root, "repo"), Name: "app"},
		settings: restic.Settings{Password: config.Secret("pw"), LockWait: time.Second, PruneBudget: time.Minute}}
}

// TestRunner_Restic: the restic format through the runner's seam: a
// snapshot goes to SNAPVISOR_DIR's repository and every remote's; a remote
// that hangs fails alone within SNAPVISOR_REMOTE_TIMEOUT.
func TestRunner_Restic(t *testing.T) {
	ctx := context.Background()
	f := newResticFixture(t)
	open := func(u string, c store.Config) remote.Remote {
		s, err := store.Open(ctx, u, c, nil)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return remote.Remote{Store: s, Timeout: 2 * time.Second}
	}
	good := open("file://"+filepath.Join(t.TempDir(), "remote"), store.Config{})
	hung := open("sftp://u@"+storetest.HungAddr(t)+"/backups", store.Config{SFTPKeyFile: sshKeyFile(t), SFTPInsecureNoHost: true})
	r := NewRunner(Config{Freeze: FreezeNone, HookTimeout: 5 * time.Second, FreezeTimeout: time.Minute}, f.snap, rotation.Policy{Keep: 7}, nil, nil, zaptest.NewLogger(t), nil)
	r.SetRemotes([]remote.Remote{good, hung})
	r.SetRestic(f.settings)
	start := time.Now()
	res, err := r.Trigger(ctx, ReasonStandalone)
	if err != nil || !res.OK() {
		t.Fatalf("Trigger: %+v, %v", res, err)
	}
	if elapsed := time.Since(start); elapsed > 20*time.Second {
		t.Errorf("a hung remote held the snapshot for %s with a 2s limit", elapsed)
	}
	if len(res.Remotes) != 3 || res.Remotes[0].Error != "" || res.Remotes[1].Error != "" || res.Remotes[2].Error == "" {
		t.Fatalf("results %+v; want the directory and the good remote to succeed and the hung one to fail", res.Remotes)
	}
	for _, st := range []store.Store{openStore(t, "file://"+f.dir), good.Store} {
		repo, err := restic.Open(ctx, st, restic.Password("pw"))
		if err != nil {
			t.Fatal(err)
		}
		snaps, err := repo.Snapshots(ctx)
		if err != nil || len(snaps) != 1 || snaps[0].Hostname != "app" {
			t.Fatalf("%s: %v, %v", st.Name(), snaps, err)
		}
	}
}

func openStore(t *testing.T, u string) store.Store {
	s, err := store.Open(context.Background(), u, store.Config{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// TestRunner_ResticRetention: SNAPVISOR_KEEP forgets this host's old
// snapshots in every repository and prune frees the data only they used;
// another host's snapshot in the same repository is left alone.
func TestRunner_ResticRetention(t *testing.T) {
	ctx := context.Background()
	f := newResticFixture(t)
	r := NewRunner(Config{Freeze: FreezeNone, HookTimeout: 5 * time.Second, FreezeTimeout: time.Minute}, f.snap, rotation.Policy{Keep: 2}, nil, nil, zaptest.NewLogger(t), nil)
	r.SetRestic(f.settings)
	other := f.settings
	other.Host = "elsewhere"
	r2 := NewRunner(Config{Freeze: FreezeNone, HookTimeout: 5 * time.Second, FreezeTimeout: time.Minute}, f.snap, rotation.Policy{Keep: 1}, nil, nil, zaptest.NewLogger(t), nil)
	r2.SetRestic(other)
	if res, err := r2.Trigger(ctx, ReasonStandalone); err != nil || !res.OK() {
		t.Fatalf("other host: %+v, %v", res, err)
	}
	for i := range 4 {
		// Each snapshot holds a different 2 MiB file: the forgotten ones' data is prunable.
		b := make([]byte, 2<<20)
		rng := rand.New(rand.NewPCG(uint64(i), 1)) // incompressible
		for j := range b {
			b[j] = byte(rng.Uint32())
		}

		if err := os.WriteFile(filepath.Join(f.src, "big"), b, 0o644); err != nil {
			t.Fatal(err)
		}
		res, err := r.Trigger(ctx, ReasonStandalone)
		if err != nil || !res.OK() {
			t.Fatalf("snapshot %d: %+v, %v", i, res, err)
		}
		if i >= 2 && len(res.Deleted) != 1 {
			t.Errorf("snapshot %d forgot %v; want one", i, res.Deleted)
		}
	}
	repo, err := restic.Open(ctx, openStore(t, "file://"+f.dir), restic.Password("pw"))
	if err != nil {
		t.Fatal(err)
	}
	snaps, err := repo.Snapshots(ctx)
	if err != nil {
		t.Fatal(err)
	}
	hosts := map[string]int{}
	for _, s := range snaps {
		hosts[s.Hostname]++
	}
	if hosts["app"] != 2 || hosts["elsewhere"] != 1 {
		t.Fatalf("snapshots by host %v; want app 2 (KEEP=2), elsewhere 1 (untouched)", hosts)
	}
	size, err := repo.Size(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// The 2 kept snapshots' 2 MiB files remain; the 2 forgotten ones' are gone.
	if size < 4<<20 || size > 5<<20 {
		t.Errorf("repository holds %d bytes after prune; want the forgotten snapshots' data gone", size)
	}
	rep, err := repo.Check(ctx, restic.CheckOptions{ReadData: true})
	if err != nil || !rep.OK() {
		t.Fatalf("check: %+v, %v", rep, err)
	}
}
