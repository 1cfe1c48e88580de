package jobs

import (
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"snapvisor/remote"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"

	"snapvisor/internal/testutil"
	"snapvisor/rotation"
	"snapvisor/snapshot"
	"snapvisor/store"
)

// retentionFixture is a runner without a service (hooks and freeze off)
// snapshotting root/data into root/backups, and a file:// remote.
type retentionFixture struct {
	runner *Runner
	snap   snapshot.Config
	src    string
	remote store.Store
}

func newRetentionFixture(t *testing.T, dir string, p rotation.Policy, withRemote bool) *retentionFixture {
	t.Helper()
	root := t.TempDir()
	if dir == "" {
		dir = filepath.Join(root, "backups")
	}
	f := &retentionFixture{src: filepath.Join(root, "data")}
	if err := os.MkdirAll(f.src, 0o755); err != nil {
		t.Fatal(err)
	}
	f.snap = snapshot.Config{Sources: []string{f.src}, Dir: dir, Name: "snapshot", Compression: snapshot.CompressionGzip}
	log := zaptest.NewLogger(t, zaptest.Level(zap.WarnLevel))
	f.runner = NewRunner(Config{}, f.snap, p, nil, nil, log, nil)
	if withRemote {
		s, err := store.Open(context.Background(), "file://"+filepath.Join(root, "remote"), store.Config{}, log)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		f.remote = s
		f.runner.SetRemotes([]remote.Remote{{Store: s}})
	}
	return f
}

// write puts n random (incompressible) bytes into the source as name.
func (f *retentionFixture) write(t *testing.T, name string, n int) {
	t.Helper()
	b := make([]byte, n)
	_, _ = rand.Read(b)
	if err := os.WriteFile(filepath.Join(f.src, name), b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// empty removes everything from the source.
func (f *retentionFixture) empty(t *testing.T) {
	t.Helper()
	ents, _ := os.ReadDir(f.src)
	for _, e := range ents {
		if err := os.RemoveAll(filepath.Join(f.src, e.Name())); err != nil {
			t.Fatal(err)
		}
	}
}

// run triggers one snapshot for reason and returns its result; ok says whether it must succeed.
func (f *retentionFixture) run(t *testing.T, reason string, ok bool) Result {
	t.Helper()
	res, err := f.runner.Trigger(context.Background(), reason)
	if err != nil {
		t.Fatal(err)
	}
	if res.OK() != ok {
		t.Fatalf("snapshot ok=%v, want %v: %+v", res.OK(), ok, res)
	}
	return res
}

// local lists the local snapshots, newest first.
func (f *retentionFixture) local(t *testing.T) []string {
	t.Helper()
	list, err := snapshot.List(f.snap.Dir, f.snap.Name)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, s := range list {
		out = append(out, s.Name)
	}
	return out
}

// remoteList lists the remote's snapshots, newest first.
func (f *retentionFixture) remoteList(t *testing.T) []string {
	t.Helper()
	list, err := remote.ListSnapshots(context.Background(), f.remote, f.snap.Name)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, s := range list {
		out = append(out, s.Key)
	}
	return out
}

// metric returns the value of the metric line named name, "" when absent.
func (f *retentionFixture) metric(name string) string {
	var b bytes.Buffer
	f.runner.metrics.WritePrometheus(&b)
	for _, line := range strings.Split(b.String(), "\n") {
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			return v
		}
	}
	return ""
}

func TestRunner_ShrinkGuard(t *testing.T) {
	t.Run("empty source after good snapshots: flagged, nothing good deleted here or on the remote", func(t *testing.T) {
		f := newRetentionFixture(t, "", rotation.Policy{Keep: 2}, true)
		f.write(t, "db", 256<<10)
		var good []string
		for range 3 {
			good = append(good, f.run(t, "schedule", true).Snapshot)
		}
		good = good[1:] // KEEP=2 rotated the first one away as usual
		slices.Reverse(good)
		if st := f.runner.status(time.Time{}, time.Hour); !st.Healthy || f.metric("snapvisor_last_snapshot_shrunk") != "0" {
			t.Fatalf("before the shrink: healthy=%v (%s), gauge %q", st.Healthy, st.Problem, f.metric("snapvisor_last_snapshot_shrunk"))
		}

		f.empty(t)
		var empties []string
		for range 4 {
			res := f.run(t, "schedule", true)
			if res.Shrunk == "" {
				t.Errorf("snapshot %s of an empty source not flagged", res.Snapshot)
			}
			empties = append([]string{res.Snapshot}, empties...)
		}
		want := append(slices.Clone(empties[:2]), good...) // KEEP empty ones besides the good ones
		if got := f.local(t); !slices.Equal(got, want) {
			t.Errorf("local snapshots %v, want %v", got, want)
		}
		if got := f.remoteList(t); !slices.Equal(got, want) {
			t.Errorf("remote snapshots %v, want %v", got, want)
		}
		st := f.runner.status(time.Time{}, time.Hour)
		if st.Healthy || !strings.Contains(st.Problem, "SNAPVISOR_ALLOW_SHRINK") || !strings.Contains(st.Problem, good[0]) {
			t.Errorf("status healthy=%v problem %q, want unhealthy naming the good snapshot and SNAPVISOR_ALLOW_SHRINK", st.Healthy, st.Problem)
		}
		if g, c := f.metric("snapvisor_last_snapshot_shrunk"), f.metric("snapvisor_shrunk_snapshots_total"); g != "1" || c != "4" {
			t.Errorf("gauge %q, counter %q; want 1 and 4", g, c)
		}

		// The data comes back: the flag clears.
		f.write(t, "db", 256<<10)
		if res := f.run(t, "schedule", true); res.Shrunk != "" {
			t.Errorf("snapshot with the data back flagged: %s", res.Shrunk)
		}
		if st := f.runner.status(time.Time{}, time.Hour); !st.Healthy {
			t.Errorf("status with the data back: %s", st.Problem)
		}
		if g := f.metric("snapvisor_last_snapshot_shrunk"); g != "0" {
			t.Errorf("gauge %q with the data back, want 0", g)
		}
	})

	t.Run("ALLOW_SHRINK: rotated as usual, reported but healthy", func(t *testing.T) {
		f := newRetentionFixture(t, "", rotation.Policy{Keep: 2, AllowShrink: true}, true)
		f.write(t, "db", 256<<10)
		for range 2 {
			f.run(t, "schedule", true)
		}
		f.empty(t)
		var empties []string
		for range 2 {
			res := f.run(t, "schedule", true)
			empties = append([]string{res.Snapshot}, empties...)
			if res.Shrunk == "" {
				t.Errorf("snapshot %s of an empty source not reported", res.Snapshot)
			}
		}
		if got := f.local(t); !slices.Equal(got, empties) {
			t.Errorf("local snapshots %v, want only the empty ones %v", got, empties)
		}
		if got := f.remoteList(t); !slices.Equal(got, empties) {
			t.Errorf("remote snapshots %v, want only the empty ones %v", got, empties)
		}
		if st := f.runner.status(time.Time{}, time.Hour); !st.Healthy {
			t.Errorf("status: %s, want healthy", st.Problem)
		}
		if g := f.metric("snapvisor_last_snapshot_shrunk"); g != "0" {
			t.Errorf("gauge %q, want 0", g)
		}
		// The big ones are gone: the empty ones are compared with each other.
		if res := f.run(t, "schedule", true); res.Shrunk != "" {
			t.Errorf("still flagged once the larger snapshots are gone: %s", res.Shrunk)
		}
	})
}

// copyAs copies the snapshot at p into dir under the name of cfg at time at, with its .sha256.
func copyAs(t *testing.T, p, dir string, cfg snapshot.Config, at time.Time) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	dst := filepath.Join(dir, snapshot.FileName(cfg, at))
	if err := os.WriteFile(dst, b, 0o600); err != nil {
		t.Fatal(err)
	}
	writeSum(t, dst)
	return filepath.Base(dst)
}

func TestRunner_OnDemand(t *testing.T) {
	t.Run("a week of dailies survives a storm of requests", func(t *testing.T) {
		f := newRetentionFixture(t, "", rotation.Policy{Keep: 7}, false)
		f.write(t, "db", 4<<10)
		// A week of scheduled dailies, taken before this runner started.
		seed := f.snap
		seed.Dir = t.TempDir()
		info, err := snapshot.Create(context.Background(), seed, zaptest.NewLogger(t))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.MkdirAll(f.snap.Dir, 0o700); err != nil {
			t.Fatal(err)
		}
		today := time.Now().UTC().Truncate(24 * time.Hour)
		var dailies []string
		for d := 7; d >= 1; d-- {
			dailies = append([]string{copyAs(t, info.Path, f.snap.Dir, f.snap, today.AddDate(0, 0, -d))}, dailies...)
		}

		var requests []string
		for range 8 {
			requests = append([]string{f.run(t, ReasonRequest, true).Snapshot}, requests...)
		}
		want := append(slices.Clone(requests[:7]), dailies...)
		if got := f.local(t); !slices.Equal(got, want) {
			t.Fatalf("after 8 requests: %v\nwant the 7 newest requests and every daily: %v", got, want)
		}

		// The next scheduled snapshot pushes the oldest daily out, and the
		// oldest request kept so far, which is no longer among the newest 7.
		next := f.run(t, "schedule", true).Snapshot
		want = slices.Concat([]string{next}, requests[:6], dailies[:6])
		if got := f.local(t); !slices.Equal(got, want) {
			t.Errorf("after a scheduled snapshot: %v\nwant %v", got, want)
		}
	})
}

// mountTmpfs mounts a tmpfs of size bytes at a new directory (as root).
func mountTmpfs(t *testing.T, size int) string {
	t.Helper()
	testutil.RequireRoot(t, "mounting a tmpfs")
	dir := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", fmt.Sprintf("size=%d,mode=0700", size), "tmpfs", dir).CombinedOutput(); err != nil {
		t.Fatalf("mount tmpfs: %v: %s", err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", dir).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v: %s", dir, err, out)
		}
	})
	return dir
}

func TestRunner_NoSpace(t *testing.T) {
	const mib = 1 << 20
	// fill takes KEEP=3 snapshots of 1 MiB of random data into a 4 MiB
	// tmpfs, which holds them but not a fourth, then grows the source.
	fill := func(t *testing.T, p rotation.Policy) *retentionFixture {
		f := newRetentionFixture(t, mountTmpfs(t, 4*mib), p, false)
		f.write(t, "db", mib)
		for range 3 {
			f.run(t, "schedule", true)
		}
		f.write(t, "db", mib+mib/5)
		return f
	}

	t.Run("on-enospc: the failure says so, the next run makes room first", func(t *testing.T) {
		f := fill(t, rotation.Policy{Keep: 3, RotateBefore: rotation.RotateBeforeOnENOSPC})
		before := f.local(t)
		res := f.run(t, "schedule", false)
		for _, want := range []string{"no space left in SNAPVISOR_DIR", "3 snapshots", "bytes free", "make room for KEEP+1 snapshots", "SNAPVISOR_KEEP", "beyond 2"} {
			if !strings.Contains(res.Error, want) {
				t.Errorf("error %q lacks %q", res.Error, want)
			}
		}
		if got := f.local(t); !slices.Equal(got, before) {
			t.Fatalf("after the failure %v, want the 3 snapshots untouched %v", got, before)
		}
		for range 2 {
			res = f.run(t, "schedule", true)
			if got := f.local(t); len(got) != 3 || got[0] != res.Snapshot {
				t.Errorf("after a run that made room: %v, want 3 snapshots, the newest %s", got, res.Snapshot)
			}
		}
	})

	t.Run("on-enospc: a new process (restart, the next standalone run) makes room first too", func(t *testing.T) {
		f := fill(t, rotation.Policy{Keep: 3, RotateBefore: rotation.RotateBeforeOnENOSPC})
		f.run(t, "schedule", false)
		f.runner = NewRunner(Config{}, f.snap, rotation.Policy{Keep: 3, RotateBefore: rotation.RotateBeforeOnENOSPC}, nil, nil, zaptest.NewLogger(t, zaptest.Level(zap.WarnLevel)), nil)
		for range 2 {
			res := f.run(t, "standalone", true)
			if got := f.local(t); len(got) != 3 || got[0] != res.Snapshot {
				t.Errorf("after a run that made room: %v, want 3 snapshots, the newest %s", got, res.Snapshot)
			}
		}
		// Smaller snapshots leave room for one more: the mode, and its
		// marker, end.
		f.write(t, "db", mib/2)
		f.run(t, "standalone", true)
		if left, _ := filepath.Glob(filepath.Join(f.snap.Dir, ".*")); len(left) > 0 {
			t.Errorf("left in SNAPVISOR_DIR once there is room again: %v", left)
		}
	})

	t.Run("never: every run fails, nothing deleted", func(t *testing.T) {
		f := fill(t, rotation.Policy{Keep: 3, RotateBefore: rotation.RotateBeforeNever})
		before := f.local(t)
		for range 2 {
			res := f.run(t, "schedule", false)
			for _, want := range []string{"no space left in SNAPVISOR_DIR", "make room for KEEP+1 snapshots", "SNAPVISOR_ROTATE_BEFORE=never"} {
				if !strings.Contains(res.Error, want) {
					t.Errorf("error %q lacks %q", res.Error, want)
				}
			}
		}
		if got := f.local(t); !slices.Equal(got, before) {
			t.Errorf("snapshots %v, want untouched %v", got, before)
		}
	})
}
