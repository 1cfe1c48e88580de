package jobs

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"
	"golang.org/x/sys/unix"

	"snapvisor/config"
	"snapvisor/gitsnap"
	"snapvisor/internal/testutil"
	"snapvisor/remote"
	"snapvisor/rotation"
	"snapvisor/snapshot"
	"snapvisor/store"
	"snapvisor/store/storetest"
)

// drillFixture: a runner (no service) with real data, a local snapshot
// directory and remotes on MinIO (real S3), each holding one snapshot.
type drillFixture struct {
	r       *Runner
	m       *Metrics
	root    string
	data    string
	out     string // a directory outside everything, for drill commands to write to
	minio   *storetest.MinIO
	raw     []store.Store // the remotes' stores without wrappers (to damage objects)
	snapKey string
}

func newDrillFixture(t *testing.T, cfg Config, nRemotes int, dataBytes int) *drillFixture {
	t.Helper()
	root := t.TempDir()
	f := &drillFixture{m: NewMetrics(), root: root, data: filepath.Join(root, "data"), out: t.TempDir()}
	if err := os.MkdirAll(filepath.Join(f.data, "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	storetest.MustWrite(t, filepath.Join(f.data, "dump.rdb"), []byte("REDIS0011 the data that must come back\n"))
	big := make([]byte, dataBytes)
	if _, err := rand.Read(big); err != nil {
		t.Fatal(err)
	}
	storetest.MustWrite(t, filepath.Join(f.data, "sub", "random.bin"), big)
	snap := snapshot.Config{Sources: []string{f.data}, Dir: filepath.Join(root, "backups"), Name: "app", Compression: snapshot.CompressionGzip}
	if cfg.HookTimeout == 0 {
		cfg.HookTimeout = 30 * time.Second
	}
	cfg.Freeze, cfg.Restore, cfg.ControlSocket = FreezeNone, RestoreModeNever, filepath.Join(root, "control.sock")
	log := zaptest.NewLogger(t, zaptest.Level(zap.InfoLevel))
	f.r = NewRunner(cfg, snap, rotation.Policy{Keep: 10}, nil, os.Environ(), log, f.m)
	var remotes []remote.Remote
	if nRemotes > 0 {
		f.minio = storetest.StartMinIO(t)
		f.minio.MakeBucket(t, "snapvisor")
	}
	for i := range nRemotes {
		s := storetest.Open(t, f.minio.URL("snapvisor", "region"+string(rune('a'+i))), storetest.MinIOConfig())
		f.raw = append(f.raw, s)
		remotes = append(remotes, remote.Remote{Store: store.WithRetry(s, store.Policy{Retries: 1, Backoff: time.Millisecond}, log), Timeout: time.Minute})
	}
	f.r.SetRemotes(remotes)
	res, err := f.r.Trigger(context.Background(), "test")
	if err != nil || !res.OK() {
		t.Fatalf("snapshot: %+v, %v", res, err)
	}
	for _, p := range res.Remotes {
		if p.Error != "" {
			t.Fatalf("push: %+v", p)
		}
	}
	f.snapKey = res.Snapshot
	return f
}

// hashTree hashes every entry under root: path, mode, and content.
func hashTree(t *testing.T, root string) string {
	t.Helper()
	h := sha256.New()
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		io.WriteString(h, rel+"\x00"+fi.Mode().String()+"\x00"+fi.ModTime().String()+"\x00")
		if d.Type().IsRegular() {
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			h.Write(b)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// metric returns the value of the metric line name (with labels) on the metrics page, "" when absent.
func (f *drillFixture) metric(name string) string {
	var buf bytes.Buffer
	f.m.WritePrometheus(&buf)
	for _, l := range strings.Split(buf.String(), "\n") {
		if v, ok := strings.CutPrefix(l, name+" "); ok {
			return v
		}
	}
	return ""
}

// scratchLeft lists what is left in the drills' scratch directory.
func (f *drillFixture) scratchLeft(t *testing.T) []string {
	t.Helper()
	ents, err := os.ReadDir(drillBase(f.r.cfg, f.r.snap))
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range ents {
		out = append(out, e.Name())
	}
	return out
}

func (f *drillFixture) drill(t *testing.T, from string) DrillResult {
	t.Helper()
	before := hashTree(t, f.data)
	res, err := f.r.Drill(storetest.Ctx(t, 2*time.Minute), from)
	if err != nil {
		t.Fatalf("drill: %v", err)
	}
	if after := hashTree(t, f.data); after != before {
		t.Fatalf("the data directory changed during the drill")
	}
	if left := f.scratchLeft(t); len(left) > 0 {
		t.Fatalf("scratch directory not emptied: %v", left)
	}
	return res
}

func TestRunner_Drill(t *testing.T) {
	t.Run("GoodSnapshotPasses", func(t *testing.T) {
		out := filepath.Join(t.TempDir(), "out")
		f := newDrillFixture(t, Config{
			DrillCommand:      `cmp "$SNAPVISOR_DRILL_DIR/data/dump.rdb" "$WANT" && cut -d' ' -f19 /proc/self/stat > "$OUT" && echo checked`,
			HealthDrillMaxAge: time.Hour,
		}, 1, 1<<20)
		f.r.env = append(f.r.env, "WANT="+filepath.Join(f.data, "dump.rdb"), "OUT="+out)
		res := f.drill(t, "")
		name := f.r.remotes[0].Name()
		if !res.OK() || res.Remote != name || res.Snapshot != f.snapKey || res.Bytes < 1<<20 || !strings.Contains(res.Output, "checked") {
			t.Fatalf("drill: %+v, want a pass of %s from %s", res, f.snapKey, name)
		}
		if nice, err := os.ReadFile(out); err != nil || strings.TrimSpace(string(nice)) != "10" {
			t.Fatalf("drill command's nice: %q, %v; want 10", nice, err)
		}
		if own, _ := os.ReadFile("/proc/self/stat"); strings.Fields(string(own))[18] != "0" {
			t.Fatalf("the test process itself was niced: %s", own)
		}
		label := `{remote="` + name + `"}`
		if ts := f.metric("snapvisor_drill_last_success_timestamp_seconds" + label); ts == "" || ts == "0" {
			t.Fatalf("last success timestamp: %q", ts)
		}
		if ok := f.metric("snapvisor_drill_last_ok" + label); ok != "1" {
			t.Fatalf("last_ok = %q, want 1", ok)
		}
		st := f.r.status(time.Time{}, time.Hour)
		if len(st.Drills) != 1 || !st.Drills[0].OK() || !st.Healthy {
			t.Fatalf("status: %+v", st)
		}
	})

	t.Run("AlteredSnapshotFails", func(t *testing.T) {
		f := newDrillFixture(t, Config{HealthDrillMaxAge: time.Hour}, 1, 1<<20)
		name := f.r.remotes[0].Name()
		if res := f.drill(t, ""); !res.OK() {
			t.Fatalf("first drill: %+v", res)
		}
		// Flip bytes of the archive on MinIO, same size, the old .sha256 kept.
		ctx := storetest.Ctx(t, time.Minute)
		rc, err := f.raw[0].Get(ctx, f.snapKey)
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(rc)
		rc.Close()
		if err != nil {
			t.Fatal(err)
		}
		for i := len(b) / 2; i < len(b)/2+64; i++ {
			b[i] ^= 0xff
		}
		if err := f.raw[0].Put(ctx, f.snapKey, bytes.NewReader(b), int64(len(b))); err != nil {
			t.Fatal(err)
		}
		res := f.drill(t, "")
		if res.OK() || !strings.Contains(res.Error, snapshot.ErrChecksum.Error()) {
			t.Fatalf("drill of an altered snapshot: %+v, want a checksum failure", res)
		}
		label := `{remote="` + name + `"}`
		if ok := f.metric("snapvisor_drill_last_ok" + label); ok != "0" {
			t.Fatalf("last_ok = %q, want 0", ok)
		}
		if n := f.metric("snapvisor_drill_failures_total" + label); n != "1" {
			t.Fatalf("failures = %q, want 1", n)
		}
		st := f.r.status(time.Time{}, time.Hour)
		if st.Healthy || !strings.Contains(st.Problem, name) || !strings.Contains(st.Problem, "SNAPVISOR_HEALTH_DRILL_MAX_AGE") {
			t.Fatalf("status after a failed drill: healthy=%v problem=%q", st.Healthy, st.Problem)
		}
	})

	t.Run("FailingCommandFails", func(t *testing.T) {
		f := newDrillFixture(t, Config{DrillCommand: "echo the check says no; exit 1"}, 1, 4096)
		res := f.drill(t, "")
		if res.OK() || !strings.Contains(res.Error, "SNAPVISOR_DRILL_COMMAND") || !strings.Contains(res.Output, "the check says no") {
			t.Fatalf("drill with a failing command: %+v", res)
		}
		if ok := f.metric(`snapvisor_drill_last_ok{remote="` + f.r.remotes[0].Name() + `"}`); ok != "0" {
			t.Fatalf("last_ok = %q, want 0", ok)
		}
	})

	t.Run("NoSpaceRefused", func(t *testing.T) {
		small := mountTmpfs(t, 1<<20)
		f := newDrillFixture(t, Config{DrillDir: small}, 1, 2<<20)
		res := f.drill(t, "")
		if res.OK() || !strings.Contains(res.Error, "SNAPVISOR_DRILL_DIR") || !strings.Contains(res.Error, "free") {
			t.Fatalf("drill into a full tmpfs: %+v, want a refusal naming SNAPVISOR_DRILL_DIR", res)
		}
	})

	t.Run("RoundRobin", func(t *testing.T) {
		f := newDrillFixture(t, Config{}, 2, 4096)
		a, b := f.r.remotes[0].Name(), f.r.remotes[1].Name()
		var got []string
		for range 3 {
			res := f.drill(t, "")
			if !res.OK() {
				t.Fatalf("drill: %+v", res)
			}
			got = append(got, res.Remote)
		}
		if want := []string{a, b, a}; strings.Join(got, " ") != strings.Join(want, " ") {
			t.Fatalf("drilled %v, want %v", got, want)
		}
		if res := f.drill(t, f.minio.URL("snapvisor", "regionb")); res.Remote != b || !res.OK() {
			t.Fatalf("drill --from the second remote: %+v", res)
		}
		if _, err := f.r.Drill(context.Background(), "file:///elsewhere"); !errors.Is(err, ErrDrillRemote) {
			t.Fatalf("drill from an unknown remote: %v, want ErrDrillRemote", err)
		}
	})

	t.Run("Local", func(t *testing.T) {
		f := newDrillFixture(t, Config{}, 0, 4096)
		if res := f.drill(t, ""); !res.OK() || res.Remote != DrillLocal || res.Snapshot != f.snapKey {
			t.Fatalf("local drill: %+v", res)
		}
	})

	t.Run("ScratchInsideSourceRefused", func(t *testing.T) {
		f := newDrillFixture(t, Config{}, 0, 4096)
		f.r.cfg.DrillDir = filepath.Join(f.data, "scratch")
		before := hashTree(t, f.data)
		res, err := f.r.Drill(context.Background(), "")
		if err != nil || res.OK() || !strings.Contains(res.Error, "SNAPVISOR_DRILL_DIR") {
			t.Fatalf("drill into the source: %+v, %v", res, err)
		}
		if hashTree(t, f.data) != before {
			t.Fatal("the data directory changed")
		}
	})

	t.Run("Restic", func(t *testing.T) {
		rf := newResticFixture(t)
		m := NewMetrics()
		r := NewRunner(Config{Freeze: FreezeNone, HookTimeout: 30 * time.Second, FreezeTimeout: time.Minute,
			DrillCommand: `grep -q one "$SNAPVISOR_DRILL_DIR/data/version"`}, rf.snap, rotation.Policy{Keep: 7}, nil, nil, zaptest.NewLogger(t), m)
		r.SetRestic(rf.settings)
		minio := storetest.StartMinIO(t)
		minio.MakeBucket(t, "snapvisor")
		s := storetest.Open(t, minio.URL("snapvisor", "restic"), storetest.MinIOConfig())
		r.SetRemotes([]remote.Remote{{Store: s, Timeout: time.Minute}})
		if res, err := r.Trigger(context.Background(), "test"); err != nil || !res.OK() {
			t.Fatalf("restic snapshot: %+v, %v", res, err)
		}
		before := hashTree(t, rf.src)
		res, err := r.Drill(storetest.Ctx(t, 2*time.Minute), "")
		if err != nil || !res.OK() || res.Remote != s.Name() {
			t.Fatalf("restic drill: %+v, %v", res, err)
		}
		if hashTree(t, rf.src) != before {
			t.Fatal("the data directory changed during the drill")
		}
		if ents, _ := os.ReadDir(drillBase(r.cfg, r.snap)); len(ents) != 0 {
			t.Fatalf("scratch directory left: %v", ents)
		}
	})

	t.Run("WaitsForSnapshot", func(t *testing.T) {
		log := filepath.Join(t.TempDir(), "order")
		gate := filepath.Join(t.TempDir(), "go")
		f := newDrillFixture(t, Config{DrillCommand: `echo drill >> "$ORDER"`, HookTimeout: time.Minute}, 0, 4096)
		f.r.env = append(f.r.env, "ORDER="+log, "GATE="+gate)
		f.r.cfg.PreCommand = `echo pre >> "$ORDER"; while [ ! -e "$GATE" ]; do sleep 0.02; done`
		f.r.cfg.PostCommand = `echo post >> "$ORDER"`
		f.r.cfg.MinInterval = 0
		snapDone := make(chan Result, 1)
		go func() { res, _ := f.r.Trigger(context.Background(), "test"); snapDone <- res }()
		testutil.Eventually(t, 30*time.Second, "the pre-hook starts", func() bool { b, _ := os.ReadFile(log); return strings.Contains(string(b), "pre") })
		drillDone := make(chan DrillResult, 1)
		go func() { res, _ := f.r.Drill(context.Background(), ""); drillDone <- res }()
		// The drill is asked for while the pre-hook holds the slot; give it
		// time to reach the slot (it must not get it whatever the delay).
		select {
		case res := <-drillDone:
			t.Fatalf("drill ran during a snapshot: %+v", res)
		case <-time.After(200 * time.Millisecond):
		}
		storetest.MustWrite(t, gate, nil)
		snap := <-snapDone
		res := <-drillDone
		if !snap.OK() || !res.OK() {
			t.Fatalf("snapshot %+v, drill %+v", snap, res)
		}
		b, _ := os.ReadFile(log)
		if got := strings.Fields(string(b)); strings.Join(got, " ") != "pre post drill" {
			t.Fatalf("order %v, want pre post drill", got)
		}
	})
}

// TestRunner_DrillHealth: with SNAPVISOR_HEALTH_DRILL_MAX_AGE, a remote
// without a passed drill is a problem once that age has passed since the
// runner's start (injected times), and a passed drill resets it.
func TestRunner_DrillHealth(t *testing.T) {
	r := NewRunner(Config{HealthDrillMaxAge: time.Hour}, snapshot.Config{Dir: t.TempDir(), Name: "app"}, rotation.Policy{}, nil, nil, zap.NewNop(), nil)
	start := r.started
	for _, tc := range []struct {
		name    string
		now     time.Time
		pass    time.Time // a passed drill's end; zero: none
		problem string
	}{
		{"FreshWithinAge", start.Add(30 * time.Minute), time.Time{}, ""},
		{"NoneWithinAge", start.Add(2 * time.Hour), time.Time{}, "no restore drill of local has passed within SNAPVISOR_HEALTH_DRILL_MAX_AGE"},
		{"PassedRecently", start.Add(2 * time.Hour), start.Add(90 * time.Minute), ""},
		{"PassedLongAgo", start.Add(5 * time.Hour), start.Add(90 * time.Minute), "the last passed restore drill of local is 3h30m0s old"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r.drills = drillState{}
			if !tc.pass.IsZero() {
				r.drills.last = map[string]DrillResult{DrillLocal: {Remote: DrillLocal, Snapshot: "x", Started: tc.pass}}
				r.drills.lastPass = map[string]time.Time{DrillLocal: tc.pass}
			}
			r.mu.Lock()
			_, problem := r.drillStatus(tc.now)
			r.mu.Unlock()
			if (tc.problem == "") != (problem == "") || !strings.Contains(problem, tc.problem) {
				t.Fatalf("problem %q, want %q", problem, tc.problem)
			}
		})
	}
}

// TestCheckDrillDir: the scratch directory apart from every source, both ways.
func TestCheckDrillDir(t *testing.T) {
	root := t.TempDir()
	snap := snapshot.Config{Sources: []string{filepath.Join(root, "srv", "data")}, Dir: filepath.Join(root, "backups"), Name: "app"}
	for _, tc := range []struct {
		name, dir string
		bad       bool
	}{
		{"Default", "", false},
		{"Apart", filepath.Join(root, "scratch"), false},
		{"InsideSource", filepath.Join(root, "srv", "data", "scratch"), true},
		{"IsSource", filepath.Join(root, "srv", "data"), true},
		{"HoldsSource", filepath.Join(root, "srv"), true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := CheckDrillDir(Config{DrillDir: tc.dir}, snap)
			var ce *config.Error
			if tc.bad != (err != nil) || (tc.bad && (!errors.As(err, &ce) || ce.Var != "SNAPVISOR_DRILL_DIR")) {
				t.Fatalf("CheckDrillDir(%s) = %v, bad=%v", tc.dir, err, tc.bad)
			}
		})
	}
}

// TestRunner_DrillGit: the git format's drill fetches the git remote's
// branch into the scratch directory and restores its head commit there;
// a damaged object in the remote's repository fails it (no fallback to the
// parent, which would hide the damage); without git remotes the local
// repository's head is drilled.
func TestRunner_DrillGit(t *testing.T) {
	root := t.TempDir()
	data := filepath.Join(root, "data")
	if err := os.MkdirAll(data, 0o755); err != nil {
		t.Fatal(err)
	}
	storetest.MustWrite(t, filepath.Join(data, "dump.rdb"), []byte("REDIS0011 committed\n"))
	snap := snapshot.Config{Sources: []string{data}, Dir: filepath.Join(root, "backups"), Name: "app"}
	newRunner := func(t *testing.T, remotes ...string) (*Runner, *Metrics) {
		set, err := gitsnap.NewSet(snap.Dir, snap.Name, gitsnap.Settings{Remotes: remotes, Author: "t <t@localhost>", MaxFileSize: config.NewSize("1MiB")}, time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		m := NewMetrics()
		cfg := Config{HookTimeout: 30 * time.Second, Freeze: FreezeNone, Restore: RestoreModeNever,
			DrillDir: filepath.Join(root, "drill"), DrillCommand: `grep -q committed "$SNAPVISOR_DRILL_DIR/data/dump.rdb"`}
		r := NewRunner(cfg, snap, rotation.Policy{Keep: 10}, nil, os.Environ(), zaptest.NewLogger(t, zaptest.Level(zap.InfoLevel)), m)
		r.SetGit(set)
		return r, m
	}
	bare := filepath.Join(root, "remote.git")
	r, _ := newRunner(t, "git+file://"+bare)
	if res, err := r.Trigger(context.Background(), "test"); err != nil || !res.OK() || len(res.Remotes) != 1 || res.Remotes[0].Error != "" {
		t.Fatalf("snapshot: %+v %v", res, err)
	}
	before := hashTree(t, data)

	res, err := r.Drill(storetest.Ctx(t, 2*time.Minute), "")
	if err != nil || !res.OK() || res.Remote != "git+file://"+bare || len(res.Snapshot) != 12 {
		t.Fatalf("drill of the git remote: %+v %v", res, err)
	}
	if ents, _ := os.ReadDir(filepath.Join(root, "drill")); len(ents) != 0 {
		t.Errorf("scratch left: %v", ents)
	}

	t.Run("a damaged object in the remote fails the drill", func(t *testing.T) {
		packs, _ := filepath.Glob(filepath.Join(bare, "objects", "pack", "*.pack"))
		if len(packs) == 0 {
			t.Fatalf("no pack in %s", bare)
		}
		for _, p := range packs {
			b, err := os.ReadFile(p)
			if err != nil {
				t.Fatal(err)
			}
			for i := 40; i < len(b)-20; i += 7 {
				b[i] ^= 0x55
			}
			if err := os.WriteFile(p, b, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		res, err := r.Drill(storetest.Ctx(t, 2*time.Minute), "")
		if err != nil || res.OK() {
			t.Fatalf("drill of a damaged remote: %+v %v; want a failed drill", res, err)
		}
	})

	t.Run("without git remotes the local repository is drilled", func(t *testing.T) {
		local, m := newRunner(t)
		res, err := local.Drill(storetest.Ctx(t, 2*time.Minute), "")
		if err != nil || !res.OK() || res.Remote != DrillLocal {
			t.Fatalf("local drill: %+v %v", res, err)
		}
		var buf bytes.Buffer
		m.WritePrometheus(&buf)
		if !strings.Contains(buf.String(), `snapvisor_drill_last_ok{remote="local"} 1`) {
			t.Errorf("metrics:\n%s", buf.String())
		}
	})
	if after := hashTree(t, data); after != before {
		t.Errorf("the data directory changed during the drills")
	}
}

// TestNiced_EntrypointNotNiced: niced runs its command's start on a thread
// at nice 10 and leaves every thread of the entrypoint that goes on running
// at its own nice: the main thread too, which Go never ends (a goroutine
// that exits locked to it wedges it instead, niced for good: the
// entrypoint, PID 1, then shows nice 10). The goroutine that calls niced
// runs on the main thread now and then: many calls, each checked.
func TestNiced_EntrypointNotNiced(t *testing.T) {
	mainNice := func() string {
		b, err := os.ReadFile("/proc/self/stat")
		if err != nil {
			t.Fatal(err)
		}
		return strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:]))[16] // field 19
	}
	before := mainNice()
	for i := range 200 {
		var prio int
		var err error
		niced(func() { prio, err = unix.Getpriority(unix.PRIO_PROCESS, unix.Gettid()) }, zap.NewNop())
		// getpriority's raw value is 20 - nice.
		if err != nil || 20-prio != drillNice {
			t.Fatalf("call %d: fn ran at nice %d (%v), want %d", i+1, 20-prio, err, drillNice)
		}
		if n := mainNice(); n != before {
			t.Fatalf("call %d: the main thread is left at nice %s (it ran at %s)", i+1, n, before)
		}
	}
}
