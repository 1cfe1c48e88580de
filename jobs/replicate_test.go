package jobs

import (
	"bytes"
	"context"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"

	"snapvisor/remote"
	"snapvisor/rotation"
	"snapvisor/snapshot"
	"snapvisor/store"
	"snapvisor/store/storetest"
)

func TestPlanReplication(t *testing.T) {
	now := time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC)
	snap := func(h int, size int64) remote.Snapshot {
		at := now.Add(-time.Duration(h) * time.Hour)
		return remote.Snapshot{Key: "app-" + at.Format(snapshot.TimeLayout) + ".tar.gz", Name: "app", Time: at, Size: size, Compression: "gzip"}
	}
	s1, s2, s3, s4 := snap(1, 10), snap(2, 10), snap(3, 10), snap(4, 10)
	t.Run("union inside the retention, newest first", func(t *testing.T) {
		lists := [][]remote.Snapshot{{s1, s2, s4}, {s3}, nil}
		pl := planReplication(lists, rotation.Policy{Keep: 3}, now, nil)
		if want := []string{s1.Key, s2.Key, s3.Key}; !reflect.DeepEqual(pl.keep, want) {
			t.Fatalf("keep %v, want %v (s4 is beyond the retention)", pl.keep, want)
		}
		if got := pl.missing(0); !reflect.DeepEqual(got, []string{s3.Key}) {
			t.Errorf("place 0 misses %v", got)
		}
		if got := pl.missing(1); !reflect.DeepEqual(got, []string{s1.Key, s2.Key}) {
			t.Errorf("place 1 misses %v", got)
		}
		if got := pl.missing(2); len(got) != 3 {
			t.Errorf("the empty place misses %v, want all three", got)
		}
		if s, ok := pl.newestOn(1); !ok || s.Key != s3.Key {
			t.Errorf("newest on place 1: %v %v", s.Key, ok)
		}
		if !pl.newest().Equal(s1.Time) {
			t.Errorf("newest %v", pl.newest())
		}
	})
	t.Run("sources: the local directory first, never the destination", func(t *testing.T) {
		lists := [][]remote.Snapshot{{s1}, {s1}, {}, {s1}}
		pl := planReplication(lists, rotation.Policy{Keep: 3}, now, nil)
		pl.local = 3
		if got := pl.sources(s1.Key, 2); !reflect.DeepEqual(got, []int{3, 0, 1}) {
			t.Errorf("sources %v, want local (3) first", got)
		}
		if got := pl.sources(s1.Key, 0); !reflect.DeepEqual(got, []int{3, 1}) {
			t.Errorf("sources %v", got)
		}
		pl.local = -1
		if got := pl.sources(s1.Key, 2); !reflect.DeepEqual(got, []int{0, 1, 3}) {
			t.Errorf("sources without a local place %v", got)
		}
	})
	t.Run("suspects: sizes that disagree, or flagged", func(t *testing.T) {
		short := s1
		short.Size = 9
		lists := [][]remote.Snapshot{{s1, s2}, {short, s2}, {s2}}
		pl := planReplication(lists, rotation.Policy{Keep: 3}, now, nil)
		none := func(int) bool { return false }
		if got := pl.suspects(s1.Key, none); !reflect.DeepEqual(got, []int{0, 1}) {
			t.Errorf("size disagreement: suspects %v, want both holders", got)
		}
		if got := pl.suspects(s2.Key, none); len(got) != 0 {
			t.Errorf("agreeing sizes: suspects %v", got)
		}
		if got := pl.suspects(s2.Key, func(i int) bool { return i == 2 }); !reflect.DeepEqual(got, []int{2}) {
			t.Errorf("flagged: suspects %v", got)
		}
	})
}

// replicaFixture is a streaming-mode runner (no local copy: every copy comes
// from another remote) over two MinIO servers, two regions.
type replicaFixture struct {
	ctx    context.Context
	src    string
	a, b   *storetest.MinIO
	stores []remote.Remote
	runner *Runner
	log    *zap.Logger
}

func newReplicaFixture(t *testing.T) *replicaFixture {
	t.Helper()
	f := &replicaFixture{ctx: context.Background(), src: filepath.Join(t.TempDir(), "data")}
	if err := os.MkdirAll(f.src, 0o755); err != nil {
		t.Fatal(err)
	}
	f.log = zaptest.NewLogger(t, zaptest.Level(zap.InfoLevel))
	f.a, f.b = storetest.StartMinIO(t), storetest.StartMinIO(t)
	f.a.MakeBucket(t, "region-a")
	f.b.MakeBucket(t, "region-b")
	f.stores = []remote.Remote{f.open(t, f.a.URL("region-a", "app")), f.open(t, f.b.URL("region-b", "app"))}
	f.runner = f.newRunner(f.stores...)
	return f
}

func (f *replicaFixture) open(t *testing.T, u string) remote.Remote {
	t.Helper()
	s, err := store.Open(f.ctx, u, storetest.MinIOConfig(), f.log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return remote.Remote{Store: store.WithRetry(s, store.Policy{Retries: 1, Backoff: 10 * time.Millisecond}, f.log), Timeout: 20 * time.Second}
}

func (f *replicaFixture) newRunner(remotes ...remote.Remote) *Runner {
	cfg := snapshot.Config{Sources: []string{f.src}, Name: "app", Compression: snapshot.CompressionGzip}
	r := NewRunner(Config{}, cfg, rotation.Policy{Keep: 3}, nil, nil, f.log, nil)
	r.SetRemotes(remotes)
	return r
}

// snap writes content into the source and takes a snapshot.
func (f *replicaFixture) snap(t *testing.T, content string) Result {
	t.Helper()
	if err := os.WriteFile(filepath.Join(f.src, "content"), []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	res, err := f.runner.Trigger(f.ctx, "schedule")
	if err != nil || !res.OK() {
		t.Fatalf("snapshot: %+v %v", res, err)
	}
	return res
}

func keys(t *testing.T, s store.Store) []string {
	t.Helper()
	list, err := remote.ListSnapshots(context.Background(), s, "app")
	if err != nil {
		t.Fatalf("%s: %v", s.Name(), err)
	}
	var out []string
	for _, x := range list {
		out = append(out, x.Key)
	}
	return out
}

func metricValue(r *Runner, line string) string {
	var b bytes.Buffer
	r.metrics.WritePrometheus(&b)
	for _, l := range strings.Split(b.String(), "\n") {
		if v, ok := strings.CutPrefix(l, line+" "); ok {
			return v
		}
	}
	return ""
}

// corrupt rewrites key on s with the same size and one byte flipped,
// leaving its .sha256 alone (bit rot, or a tampered copy).
func corrupt(t *testing.T, s store.Store, key string) {
	t.Helper()
	rc, err := s.Get(context.Background(), key)
	if err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(rc)
	rc.Close()
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)/2] ^= 0xff
	if err := s.Put(context.Background(), key, bytes.NewReader(b), int64(len(b))); err != nil {
		t.Fatal(err)
	}
}

func TestRunner_Replicate(t *testing.T) {
	f := newReplicaFixture(t)
	a, b := f.stores[0], f.stores[1]
	f.snap(t, "one")

	// Region B is down during three scheduled snapshots: A alone gets them.
	f.b.Kill()
	for _, c := range []string{"two", "three", "four"} {
		res := f.snap(t, c)
		if res.Remotes[1].Error == "" {
			t.Fatalf("B is down, yet its push succeeded: %+v", res.Remotes)
		}
	}
	f.b.Start()
	wantSet := keys(t, a)
	if len(wantSet) != 3 {
		t.Fatalf("A holds %v, want the 3 retained", wantSet)
	}
	if got := keys(t, b); len(got) != 1 {
		t.Fatalf("B holds %v before the replication, want the first snapshot only", got)
	}

	t.Run("a remote that was down catches up and holds exactly the retained set", func(t *testing.T) {
		res, err := f.runner.Replicate(f.ctx)
		if err != nil {
			t.Fatalf("Replicate: %v (%+v)", err, res)
		}
		if got := keys(t, b); !reflect.DeepEqual(got, wantSet) {
			t.Fatalf("B holds %v, want exactly A's retained set %v", got, wantSet)
		}
		if rb := res.Remotes[1]; rb.MissingBefore != 3 || rb.Missing != 0 || len(rb.Copied) != 3 || rb.Bytes == 0 || len(rb.Deleted) != 1 {
			t.Errorf("B's result %+v: want 3 missing before, 3 copied, the old one rotated out", rb)
		}
		for _, s := range wantSet {
			if err := remote.VerifyCopy(f.ctx, b, s); err != nil {
				t.Errorf("B's copy of %s: %v", s, err)
			}
		}
		l := `{remote="` + b.Name() + `"}`
		if v := metricValue(f.runner, "snapvisor_replication_missing_snapshots"+l); v != "0" {
			t.Errorf("missing metric %q", v)
		}
		if v := metricValue(f.runner, "snapvisor_replication_lag_seconds"+l); v != "0" {
			t.Errorf("lag metric %q", v)
		}
		if v := metricValue(f.runner, "snapvisor_replication_copied_bytes_total"+l); v == "" || v == "0" {
			t.Errorf("copied bytes metric %q", v)
		}
		st := f.runner.status(time.Time{}, time.Hour)
		if len(st.Remotes) != 2 || st.Remotes[1].Newest != wantSet[0] {
			t.Errorf("status remotes %+v, want B's newest %s", st.Remotes, wantSet[0])
		}
	})

	t.Run("a second run finds nothing to do", func(t *testing.T) {
		res, err := f.runner.Replicate(f.ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, rr := range res.Remotes {
			if len(rr.Copied)+len(rr.Replaced) > 0 || rr.Bytes != 0 {
				t.Errorf("%s: %+v, want nothing copied", rr.Remote, rr)
			}
		}
	})

	t.Run("an added empty remote is filled", func(t *testing.T) {
		c := f.open(t, "file://"+filepath.Join(t.TempDir(), "region-c"))
		r := f.newRunner(a, b, c)
		if _, err := r.Replicate(f.ctx); err != nil {
			t.Fatal(err)
		}
		if got := keys(t, c); !reflect.DeepEqual(got, wantSet) {
			t.Fatalf("C holds %v, want %v", got, wantSet)
		}
	})

	t.Run("a damaged copy is reported and replaced from a good one", func(t *testing.T) {
		newest := wantSet[0]
		corrupt(t, b, newest)
		// A loses its copy: B's damaged one is the first source tried.
		if err := remote.DeleteSnapshot(f.ctx, a, newest); err != nil {
			t.Fatal(err)
		}
		c := f.open(t, "file://"+filepath.Join(t.TempDir(), "region-c"))
		r := f.newRunner(a, b, c)
		res, err := r.Replicate(f.ctx)
		if err == nil {
			t.Fatalf("Replicate: no error, want C (empty, every source of %s damaged) to be reported: %+v", newest, res)
		}
		if len(res.Damaged) != 1 || !strings.Contains(res.Damaged[0], newest) || !strings.Contains(res.Damaged[0], b.Name()) {
			t.Errorf("damaged %v, want %s on B", res.Damaged, newest)
		}
		// Nothing verifies: nothing is deleted, nothing replaced with bad bytes.
		if got := keys(t, b); !reflect.DeepEqual(got, wantSet) {
			t.Errorf("B holds %v: the only copy, damaged, must stay", got)
		}

		// The good copy comes back (a third place still had it): now the damaged one is replaced.
		if _, err := remote.Copy(f.ctx, f.stores[0], f.stores[0], newest, remote.CopyOptions{}); err == nil {
			t.Fatal("copy onto itself accepted")
		}
		good := f.open(t, "file://"+filepath.Join(t.TempDir(), "region-d"))
		if err := reseed(f.ctx, good, b, newest); err != nil {
			t.Fatal(err)
		}
		r = f.newRunner(a, b, good)
		r.damagedCopy(b.Name(), newest) // what a failed drill notes
		res, err = r.Replicate(f.ctx)
		if err != nil {
			t.Fatalf("Replicate: %v %+v", err, res)
		}
		if rb := res.Remotes[1]; !reflect.DeepEqual(rb.Replaced, []string{newest}) {
			t.Errorf("B: %+v, want %s replaced", rb, newest)
		}
		for _, s := range []store.Store{a, b} {
			if err := remote.VerifyCopy(f.ctx, s, newest); err != nil {
				t.Errorf("%s: %v", s.Name(), err)
			}
		}
	})
}

// reseed puts a good copy of key on dst: the archive the damaged copy on
// damaged was made from, rebuilt by flipping the byte back.
func reseed(ctx context.Context, dst, damaged store.Store, key string) error {
	rc, err := damaged.Get(ctx, key)
	if err != nil {
		return err
	}
	b, err := io.ReadAll(rc)
	rc.Close()
	if err != nil {
		return err
	}
	b[len(b)/2] ^= 0xff
	if err := dst.Put(ctx, key, bytes.NewReader(b), int64(len(b))); err != nil {
		return err
	}
	rc, err = damaged.Get(ctx, key+snapshot.SumSuffix)
	if err != nil {
		return err
	}
	sum, err := io.ReadAll(rc)
	rc.Close()
	if err != nil {
		return err
	}
	return dst.Put(ctx, key+snapshot.SumSuffix, bytes.NewReader(sum), int64(len(sum)))
}

// TestRunner_Exclusive: a replication or a drill holds the single slot; a
// snapshot triggered meanwhile waits for it (never beside it, so never
// inside a freeze), then runs as a snapshot of its own, not as a joiner.
func TestRunner_Exclusive(t *testing.T) {
	f := newRetentionFixture(t, "", rotation.Policy{Keep: 3}, false)
	f.write(t, "a", 100)
	entered, release := make(chan struct{}), make(chan struct{})
	held := make(chan error, 1)
	go func() {
		held <- f.runner.exclusive(context.Background(), kindReplicate, func(ctx context.Context) {
			close(entered)
			<-release
		})
	}()
	<-entered
	type out struct {
		res Result
		err error
	}
	done := make(chan out, 1)
	go func() {
		res, err := f.runner.Trigger(context.Background(), "schedule")
		done <- out{res, err}
	}()
	// The trigger must wait: no snapshot appears while the slot is held.
	deadline := time.Now().Add(500 * time.Millisecond)
	for time.Now().Before(deadline) {
		select {
		case o := <-done:
			t.Fatalf("snapshot ran while a replication held the slot: %+v %v", o.res, o.err)
		default:
		}
		if st := f.runner.status(time.Time{}, time.Hour); st.Running {
			t.Fatal("status says a snapshot is running while a replication holds the slot")
		}
		if len(f.local(t)) != 0 {
			t.Fatal("a snapshot was written while a replication held the slot")
		}
		time.Sleep(20 * time.Millisecond)
	}
	close(release)
	if err := <-held; err != nil {
		t.Fatal(err)
	}
	select {
	case o := <-done:
		if o.err != nil || !o.res.OK() || o.res.Coalesced {
			t.Fatalf("snapshot after the replication: %+v %v", o.res, o.err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the snapshot never ran after the slot was released")
	}

	t.Run("a context that ends while waiting for the slot runs nothing", func(t *testing.T) {
		f.runner.mu.Lock()
		busy := &flight{done: make(chan struct{}), kind: kindSnapshot}
		f.runner.inflight = busy
		f.runner.mu.Unlock()
		ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
		defer cancel()
		ran := false
		err := f.runner.exclusive(ctx, kindDrill, func(context.Context) { ran = true })
		if err == nil || ran {
			t.Errorf("exclusive: %v, ran %v; want ctx's error and nothing run", err, ran)
		}
		f.runner.mu.Lock()
		f.runner.inflight = nil
		f.runner.mu.Unlock()
		close(busy.done)
	})
}

// TestRunner_LocalPlace: a relative SNAPVISOR_DIR is still the local
// directory replication copies from (not a URL host).
func TestRunner_LocalPlace(t *testing.T) {
	dir := t.TempDir()
	t.Chdir(dir)
	if err := os.MkdirAll(filepath.Join(dir, "backups"), 0o700); err != nil {
		t.Fatal(err)
	}
	storetest.MustWrite(t, filepath.Join(dir, "backups", "x"), []byte("x"))
	r := NewRunner(Config{}, snapshot.Config{Dir: "backups", Name: "app"}, rotation.Policy{Keep: 1}, nil, nil, zaptest.NewLogger(t), nil)
	p, err := r.localPlace(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer p.s.Close()
	objs, err := p.s.List(context.Background(), "")
	if err != nil || len(objs) != 1 || objs[0].Key != "x" {
		t.Fatalf("local place %s lists %+v, %v", p.s.Name(), objs, err)
	}
}
