package restic

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest"
	"go.uber.org/zap/zaptest/observer"

	"snapvisor/internal/testutil"
	"snapvisor/rotation"
)

const testHost = "test-host"

// helperPrune opens the repository, prints "start <unix nanoseconds>",
// prunes, logging JSON lines to stderr, and prints "done". Its argument is
// MaxUnused, optionally followed by " kill <n>": it then kills itself
// (SIGKILL) when it logs its n-th step (n from 1).
func helperPrune(t *testing.T) {
	r := openOrInit(t, openFileStore(t, os.Getenv(helperRepoEnv)))
	args := strings.Fields(os.Getenv(helperArgEnv))
	maxUnused, err := strconv.ParseFloat(args[0], 64)
	if err != nil {
		t.Fatal(err)
	}
	killAt := 0
	if len(args) == 3 && args[1] == "kill" {
		if killAt, err = strconv.Atoi(args[2]); err != nil {
			t.Fatal(err)
		}
	}
	cfg := zap.NewProductionConfig()
	cfg.Level = zap.NewAtomicLevelAt(zap.DebugLevel)
	cfg.Sampling = nil
	steps := 0
	log, err := cfg.Build(zap.Hooks(func(e zapcore.Entry) error {
		if strings.HasPrefix(e.Message, "prune: ") {
			steps++
			if steps == killAt {
				os.Stderr.Sync()
				syscall.Kill(os.Getpid(), syscall.SIGKILL)
			}
		}
		return nil
	}))
	if err != nil {
		t.Fatal(err)
	}
	fmt.Println("start", time.Now().UnixNano())
	if _, err := Prune(context.Background(), r, PruneOptions{MaxUnused: maxUnused, Log: log}); err != nil {
		t.Fatal(err)
	}
	fmt.Println("done")
}

// corpus is a source tree of random (incompressible) files that changes
// between snapshots.
type corpus struct {
	src string
	rnd *rand.Rand
}

func newCorpus(t *testing.T, seed uint64) *corpus {
	src := filepath.Join(t.TempDir(), "src")
	if err := os.MkdirAll(src, 0o755); err != nil {
		t.Fatal(err)
	}
	return &corpus{src: src, rnd: rand.New(rand.NewPCG(seed, seed))}
}

// write (re)writes name with size random bytes.
func (c *corpus) write(t *testing.T, name string, size int) {
	t.Helper()
	b := make([]byte, size+8)
	for i := 0; i < size; i += 8 {
		binary.LittleEndian.PutUint64(b[i:], c.rnd.Uint64())
	}
	b = b[:size]
	p := filepath.Join(c.src, name)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

func (c *corpus) remove(t *testing.T, name string) {
	t.Helper()
	if err := os.RemoveAll(filepath.Join(c.src, name)); err != nil {
		t.Fatal(err)
	}
}

// history is a repository and, for each of its snapshots, a copy of the
// source as the snapshot holds it.
type history struct {
	dir  string // the repository
	r    *Repo  // nil until the repository is opened by us
	c    *corpus
	want map[string]string // snapshot ID -> copy of the source
	tmp  string
}

func newHistory(t *testing.T, c *corpus) *history {
	h := &history{dir: filepath.Join(t.TempDir(), "repo"), c: c, want: map[string]string{}, tmp: t.TempDir()}
	return h
}

func (h *history) open(t *testing.T) *Repo {
	t.Helper()
	if h.r == nil {
		h.r = openOrInit(t, openFileStore(t, h.dir))
	}
	return h.r
}

// keep copies the source as snapshot id holds it.
func (h *history) keep(t *testing.T, id string) {
	t.Helper()
	dst := filepath.Join(h.tmp, id)
	if out, err := exec.Command("cp", "-a", h.c.src, dst).CombinedOutput(); err != nil {
		t.Fatalf("cp: %v\n%s", err, out)
	}
	h.want[id] = dst
}

// backup takes a snapshot with our Backup at when (its index reloaded
// first: another client may have changed it).
func (h *history) backup(t *testing.T, when time.Time) *Snapshot {
	t.Helper()
	r := h.open(t)
	if _, err := r.LoadIndex(context.Background()); err != nil {
		t.Fatal(err)
	}
	res, err := Backup(context.Background(), []*Repo{r}, BackupOptions{Sources: []string{h.c.src}, Host: testHost, Time: when, Log: zaptest.NewLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	if res[0].Err != nil {
		t.Fatal(res[0].Err)
	}
	h.keep(t, res[0].Snapshot.ID.String())
	return res[0].Snapshot
}

// resticBackup takes a snapshot with the restic CLI.
func (h *history) resticBackup(t *testing.T) string {
	t.Helper()
	before := h.resticSnapshots(t)
	resticCLI(t, h.dir, "backup", "--host", testHost, h.c.src)
	for _, s := range h.resticSnapshots(t) {
		if !slices.Contains(before, s) {
			h.keep(t, s)
			return s
		}
	}
	t.Fatal("restic backup made no snapshot")
	return ""
}

// resticSnapshots lists the snapshot IDs restic sees.
func (h *history) resticSnapshots(t *testing.T) []string {
	t.Helper()
	var list []struct {
		ID string `json:"id"`
	}
	if err := json.Unmarshal([]byte(resticCLI(t, h.dir, "snapshots", "--json", "--no-lock")), &list); err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, s := range list {
		out = append(out, s.ID)
	}
	slices.Sort(out)
	return out
}

// verify runs restic check (with --read-data when readData) and restores
// every snapshot restic lists with restic restore, comparing each with the
// source it was taken of.
func (h *history) verify(t *testing.T, readData bool) {
	t.Helper()
	args := []string{"check"}
	if readData {
		args = append(args, "--read-data")
	}
	resticCLI(t, h.dir, args...)
	for _, id := range h.resticSnapshots(t) {
		want, ok := h.want[id]
		if !ok {
			t.Fatalf("restic lists snapshot %s that no step took", id[:8])
		}
		out := filepath.Join(t.TempDir(), "restore")
		resticCLI(t, h.dir, "restore", id, "--target", out)
		if b, err := exec.Command("diff", "-r", "--no-dereference", want, filepath.Join(out, h.c.src)).CombinedOutput(); err != nil {
			t.Fatalf("snapshot %s restores differently: %v\n%s", id[:8], err, b)
		}
	}
}

// size is the bytes of every file under dir.
func dirSize(t *testing.T, dir string) int64 {
	t.Helper()
	var n int64
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.Type().IsRegular() {
			fi, err := d.Info()
			if err != nil {
				return err
			}
			n += fi.Size()
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// listing is every file of the repository and its size.
func listing(t *testing.T, dir string) map[string]int64 {
	t.Helper()
	out := map[string]int64{}
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			fi, _ := d.Info()
			out[strings.TrimPrefix(p, dir)] = fi.Size()
		}
		return err
	})
	return out
}

// churn changes the corpus a little: some files rewritten, some removed,
// some added.
func churn(t *testing.T, c *corpus, step int) {
	for i := 0; i < 4; i++ {
		c.write(t, fmt.Sprintf("d%d/f%02d", i%3, (step*5+i)%24), 100<<10+c.rnd.IntN(400<<10))
	}
	c.remove(t, fmt.Sprintf("d%d/f%02d", step%3, (step*7+11)%24))
	c.write(t, fmt.Sprintf("new/s%d", step), 50<<10+c.rnd.IntN(200<<10))
}

// seedCorpus fills c with about 8 MiB in 24 files.
func seedCorpus(t *testing.T, c *corpus) {
	for i := 0; i < 24; i++ {
		c.write(t, fmt.Sprintf("d%d/f%02d", i%3, i), 100<<10+c.rnd.IntN(500<<10))
	}
	writeTree(t, c.src, map[string]string{"small/a.txt": "hello", "small/b.txt": strings.Repeat("b", 1000)})
}

var policyKeep2 = rotation.Policy{Keep: 2}

func TestForget(t *testing.T) {
	ctx := context.Background()
	now := time.Date(2025, 3, 10, 12, 0, 0, 0, time.UTC)
	day := 24 * time.Hour
	type snap struct {
		ago   time.Duration
		host  string
		paths string // "a", "b" or "ab": which sources
	}
	for _, tc := range []struct {
		name    string
		snaps   []snap
		host    string
		paths   string
		policy  rotation.Policy
		deleted []int // indexes into snaps
		err     bool
	}{
		{name: "keep 2 of 5", snaps: []snap{{4 * day, testHost, "a"}, {3 * day, testHost, "a"}, {2 * day, testHost, "a"}, {day, testHost, "a"}, {0, testHost, "a"}},
			host: testHost, paths: "a", policy: policyKeep2, deleted: []int{0, 1, 2}},
		{name: "max age", snaps: []snap{{4 * day, testHost, "a"}, {3 * day, testHost, "a"}, {2 * day, testHost, "a"}, {day, testHost, "a"}, {0, testHost, "a"}},
			host: testHost, paths: "a", policy: rotation.Policy{Keep: 1, MaxAge: 2*day + time.Hour}, deleted: []int{0, 1}},
		{name: "other hosts and paths untouched", snaps: []snap{{5 * day, "other", "a"}, {4 * day, "other", "a"}, {4 * day, testHost, "ab"}, {3 * day, testHost, "b"},
			{2 * day, testHost, "a"}, {day, testHost, "a"}, {0, testHost, "a"}},
			host: testHost, paths: "a", policy: rotation.Policy{Keep: 1}, deleted: []int{4, 5}},
		{name: "paths compared sorted", snaps: []snap{{2 * day, testHost, "ab"}, {day, testHost, "ab"}, {0, testHost, "a"}},
			host: testHost, paths: "ba", policy: rotation.Policy{Keep: 1}, deleted: []int{0}},
		{name: "daily", snaps: []snap{{day + 2*time.Hour, testHost, "a"}, {day + time.Hour, testHost, "a"}, {2 * time.Hour, testHost, "a"}, {time.Hour, testHost, "a"}, {0, testHost, "a"}},
			host: testHost, paths: "a", policy: rotation.Policy{Daily: 2}, deleted: []int{0, 2, 3}},
		{name: "one snapshot stays", snaps: []snap{{40 * day, testHost, "a"}},
			host: testHost, paths: "a", policy: rotation.Policy{Keep: 1, MaxAge: day}},
		{name: "no snapshot of this host", snaps: []snap{{day, "other", "a"}, {0, "other", "a"}},
			host: testHost, paths: "a", policy: rotation.Policy{Keep: 1}},
		{name: "invalid policy deletes nothing", snaps: []snap{{day, testHost, "a"}, {0, testHost, "a"}},
			host: testHost, paths: "a", policy: rotation.Policy{}, err: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tmp := t.TempDir()
			srcs := map[byte]string{'a': filepath.Join(tmp, "a"), 'b': filepath.Join(tmp, "b")}
			writeTree(t, srcs['a'], map[string]string{"x": "a"})
			writeTree(t, srcs['b'], map[string]string{"y": "b"})
			pathsOf := func(s string) []string {
				var out []string
				for i := range len(s) {
					out = append(out, srcs[s[i]])
				}
				return out
			}
			dir := filepath.Join(tmp, "repo")
			r := openOrInit(t, openFileStore(t, dir))
			var ids []ID
			for _, s := range tc.snaps {
				res, err := Backup(ctx, []*Repo{r}, BackupOptions{Sources: pathsOf(s.paths), Host: s.host, Time: now.Add(-s.ago)})
				if err != nil {
					t.Fatal(err)
				}
				ids = append(ids, res[0].Snapshot.ID)
			}
			got, err := Forget(ctx, r, tc.host, pathsOf(tc.paths), tc.policy, now)
			if tc.err != (err != nil) {
				t.Fatalf("err = %v, want an error: %v", err, tc.err)
			}
			var gotIDs, wantIDs, rest []string
			for _, s := range got {
				gotIDs = append(gotIDs, s.ID.String())
			}
			for i, id := range ids {
				if slices.Contains(tc.deleted, i) {
					wantIDs = append(wantIDs, id.String())
				} else {
					rest = append(rest, id.String())
				}
			}
			slices.Sort(gotIDs)
			slices.Sort(wantIDs)
			slices.Sort(rest)
			if !slices.Equal(gotIDs, wantIDs) {
				t.Errorf("deleted %v, want %v", gotIDs, wantIDs)
			}
			h := &history{dir: dir}
			if left := h.resticSnapshots(t); !slices.Equal(left, rest) {
				t.Errorf("restic lists %v, want %v", left, rest)
			}
		})
	}

	t.Run("waits for a lock, bounded by the context", func(t *testing.T) {
		r, _ := newTestRepo(t)
		src := filepath.Join(t.TempDir(), "a")
		writeTree(t, src, map[string]string{"x": "a"})
		for _, ago := range []time.Duration{day, 0} {
			if _, err := Backup(ctx, []*Repo{r}, BackupOptions{Sources: []string{src}, Host: testHost, Time: now.Add(-ago)}); err != nil {
				t.Fatal(err)
			}
		}
		holder, err := r.Lock(ctx, false, 0)
		if err != nil {
			t.Fatal(err)
		}
		defer holder.Unlock()
		cctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
		defer cancel()
		_, err = Forget(cctx, r, testHost, []string{src}, rotation.Policy{Keep: 1}, now)
		var le *LockedError
		if !errors.As(err, &le) {
			t.Fatalf("forget beside a backup's lock: %v, want a *LockedError", err)
		}
		if snaps, _ := r.Snapshots(ctx); len(snaps) != 2 {
			t.Errorf("%d snapshots left, want 2", len(snaps))
		}
	})
}

func TestPlanPrune(t *testing.T) {
	id := func(s string) ID { return Hash([]byte(s)) }
	blob := func(typ BlobType, name string, n uint32) Blob {
		n <<= 10 // large enough not to count as small packs
		return Blob{Type: typ, ID: id(name), Length: n, RawLength: n * 2}
	}
	pack := func(bs ...Blob) []Blob { return bs }
	size := func(bs []Blob) int64 {
		n := headerSize(bs)
		for _, b := range bs {
			n += int64(b.Length)
		}
		return n
	}
	used := func(names ...string) map[blobKey]struct{} {
		m := map[blobKey]struct{}{}
		for _, n := range names {
			t := DataBlob
			if strings.HasPrefix(n, "t") {
				t = TreeBlob
			}
			m[blobKey{t, id(n)}] = struct{}{}
		}
		return m
	}
	full := pack(blob(DataBlob, "a", 1000), blob(DataBlob, "b", 1000))
	half := pack(blob(DataBlob, "c", 1000), blob(DataBlob, "x", 1000))
	little := pack(blob(DataBlob, "d", 1000), blob(DataBlob, "y", 50))
	gone := pack(blob(DataBlob, "z", 1000))
	trees := pack(blob(TreeBlob, "t1", 100), blob(TreeBlob, "t2", 100))
	dup := pack(blob(DataBlob, "a", 1000))
	idx := func(m map[string][]Blob) (map[ID][]Blob, map[ID]int64) {
		indexed, listed := map[ID][]Blob{}, map[ID]int64{}
		for name, bs := range m {
			p := id("pack " + name)
			var cp []Blob
			for _, b := range bs {
				b.Pack = p
				cp = append(cp, b)
			}
			indexed[p] = cp
			listed[p] = size(bs)
		}
		return indexed, listed
	}
	names := func(ids []ID, m map[string][]Blob) []string {
		var out []string
		for _, i := range ids {
			for n := range m {
				if id("pack "+n) == i {
					out = append(out, n)
				}
			}
		}
		return out
	}
	for _, tc := range []struct {
		name                    string
		packs                   map[string][]Blob
		used                    map[blobKey]struct{}
		maxUnused               float64
		orphan, unlisted, wrong string // a pack listed but not indexed, indexed but not listed, listed with a wrong size
		remove, repack          []string
		err                     string
	}{
		{name: "unused pack removed, full kept", packs: map[string][]Blob{"full": full, "gone": gone, "trees": trees},
			used: used("a", "b", "t1", "t2"), maxUnused: 0.05, remove: []string{"gone"}},
		{name: "half used pack repacked above the limit", packs: map[string][]Blob{"full": full, "half": half},
			used: used("a", "b", "c"), maxUnused: 0.05, repack: []string{"half"}},
		{name: "half used pack kept within the limit", packs: map[string][]Blob{"full": full, "half": half},
			used: used("a", "b", "c"), maxUnused: 0.5},
		{name: "most unused first, then the limit holds", packs: map[string][]Blob{"full": full, "half": half, "little": little},
			used: used("a", "b", "c", "d"), maxUnused: 0.1, repack: []string{"half"}},
		{name: "tree packs always repacked", packs: map[string][]Blob{"full": full, "trees": trees},
			used: used("a", "b", "t1"), maxUnused: 0.9, repack: []string{"trees"}},
		{name: "duplicate in a pack of its own goes", packs: map[string][]Blob{"full": full, "dup": dup},
			used: used("a", "b"), maxUnused: 0.05, remove: []string{"dup"}},
		{name: "orphan", packs: map[string][]Blob{"full": full}, orphan: "o",
			used: used("a", "b"), maxUnused: 0.05},
		{name: "missing unused pack is dropped", packs: map[string][]Blob{"full": full, "gone": gone}, unlisted: "gone",
			used: used("a", "b"), maxUnused: 0.05},
		{name: "missing used pack refused", packs: map[string][]Blob{"full": full, "half": half}, unlisted: "half",
			used: used("a", "b", "c"), maxUnused: 0.05, err: "missing"},
		{name: "used blob in no index refused", packs: map[string][]Blob{"full": full},
			used: used("a", "b", "q"), maxUnused: 0.05, err: "in no index"},
		{name: "used pack of the wrong size refused", packs: map[string][]Blob{"full": full, "half": half}, wrong: "half",
			used: used("a", "b", "c"), maxUnused: 0.05, err: "the index says"},
		{name: "unused pack of the wrong size removed", packs: map[string][]Blob{"full": full, "gone": gone}, wrong: "gone",
			used: used("a", "b"), maxUnused: 0.05, remove: []string{"gone"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			indexed, listed := idx(tc.packs)
			if tc.orphan != "" {
				listed[id("pack "+tc.orphan)] = 1234
			}
			if tc.unlisted != "" {
				delete(listed, id("pack "+tc.unlisted))
			}
			if tc.wrong != "" {
				listed[id("pack "+tc.wrong)]--
			}
			plan, err := planPrune(indexed, listed, tc.used, tc.maxUnused)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err = %v, want one saying %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := names(plan.remove, tc.packs); !slices.Equal(got, tc.remove) {
				t.Errorf("remove %v, want %v", got, tc.remove)
			}
			if got := names(plan.repack, tc.packs); !slices.Equal(got, tc.repack) {
				t.Errorf("repack %v, want %v", got, tc.repack)
			}
			if (tc.orphan != "") != (len(plan.orphans) == 1) || len(plan.orphans) > 1 {
				t.Errorf("orphans %v", plan.orphans)
			}
			if (tc.unlisted != "") != (len(plan.missing) == 1) {
				t.Errorf("missing %v", plan.missing)
			}
		})
	}
}

// forgetAndPrune forgets all but the newest keep snapshots and prunes.
func forgetAndPrune(t *testing.T, r *Repo, src string, keep int, opts PruneOptions) PruneStats {
	t.Helper()
	ctx := context.Background()
	if _, err := Forget(ctx, r, testHost, []string{src}, rotation.Policy{Keep: keep}, time.Now()); err != nil {
		t.Fatal(err)
	}
	opts.Log = zaptest.NewLogger(t)
	st, err := Prune(ctx, r, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("prune: %+v", st)
	return st
}

// grownHistory makes a repository of 6 snapshots of a changing corpus, one
// of which held a large file that is gone after it.
func grownHistory(t *testing.T, seed uint64) *history {
	c := newCorpus(t, seed)
	seedCorpus(t, c)
	h := newHistory(t, c)
	now := time.Now()
	for step := range 6 {
		if step == 1 {
			c.write(t, "big", 10<<20)
		}
		if step == 2 {
			c.remove(t, "big")
		}
		churn(t, c, step)
		h.backup(t, now.Add(time.Duration(step-6)*time.Hour))
	}
	return h
}

func TestPrune_ForgetThenPrune(t *testing.T) {
	h := grownHistory(t, 1)
	before := dirSize(t, h.dir)
	st := forgetAndPrune(t, h.r, h.c.src, 2, PruneOptions{})
	after := dirSize(t, h.dir)
	t.Logf("repository %d -> %d bytes", before, after)
	if after >= before || st.BytesFreed <= 0 || st.PacksDeleted == 0 {
		t.Errorf("the repository did not shrink: %d -> %d bytes, %+v", before, after, st)
	}
	h.verify(t, true)
	if n := len(h.resticSnapshots(t)); n != 2 {
		t.Errorf("%d snapshots left, want 2", n)
	}
	// A second prune has nothing left to do.
	st, err := Prune(context.Background(), h.r, PruneOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if st.PacksDeleted != 0 || st.PacksRepacked != 0 {
		t.Errorf("second prune: %+v, want nothing done", st)
	}
	// Our repository stays usable after the prune: a backup on the same Repo.
	churn(t, h.c, 9)
	h.backup(t, time.Now())
	h.verify(t, true)
}

func TestPrune_Orphans(t *testing.T) {
	ctx := context.Background()
	h := grownHistory(t, 2)
	r := h.r
	// A backup killed after uploading a pack, before its index: an orphan.
	w := newWriter(r, r.index)
	data := make([]byte, packTarget+1)
	for i := range data {
		data[i] = byte(i * 7 % 251)
	}
	if err := w.Add(ctx, DataBlob, Hash(data), data, 0); err != nil {
		t.Fatal(err)
	}
	w.Abandon()
	packs, _ := r.List(ctx, PackFile)
	x, _ := r.LoadIndex(ctx)
	var orphan ID
	for id := range packs {
		if _, ok := x.Packs()[id]; !ok {
			orphan = id
		}
	}
	if orphan.IsNull() {
		t.Fatal("no orphaned pack was made")
	}
	if out := resticCLI(t, h.dir, "check"); !strings.Contains(out, orphan.String()) {
		t.Errorf("restic check does not report the orphan %s:\n%s", orphan.Str(), out)
	}
	st, err := Prune(ctx, r, PruneOptions{Log: zaptest.NewLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	if st.OrphansDeleted != 1 {
		t.Errorf("%+v, want 1 orphan deleted", st)
	}
	if _, err := os.Stat(filepath.Join(h.dir, key(PackFile, orphan))); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("the orphan is still there: %v", err)
	}
	h.verify(t, true)
}

func TestPrune_Repack(t *testing.T) {
	h := grownHistory(t, 3)
	st := forgetAndPrune(t, h.r, h.c.src, 3, PruneOptions{MaxUnused: 1e-9})
	if st.PacksRepacked == 0 || st.PacksWritten == 0 || st.BlobsRepacked == 0 {
		t.Errorf("%+v: nothing repacked", st)
	}
	h.verify(t, true)
	// Nothing unused is left: the next prune finds nothing to do.
	st, err := Prune(context.Background(), h.r, PruneOptions{MaxUnused: 1e-9})
	if err != nil {
		t.Fatal(err)
	}
	if st.PacksDeleted != 0 {
		t.Errorf("second prune: %+v", st)
	}
}

func TestPrune_Budget(t *testing.T) {
	h := grownHistory(t, 4)
	st := forgetAndPrune(t, h.r, h.c.src, 2, PruneOptions{MaxUnused: 1e-9, Budget: time.Nanosecond})
	if st.Skipped == "" || st.PacksRepacked != 0 {
		t.Errorf("%+v: the repack was not skipped", st)
	}
	if st.PacksDeleted == 0 {
		t.Errorf("%+v: unused packs are deleted whatever the budget", st)
	}
	h.verify(t, true)
	// With time enough, the next prune repacks what was left.
	st, err := Prune(context.Background(), h.r, PruneOptions{MaxUnused: 1e-9, Budget: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	if st.Skipped != "" || st.PacksRepacked == 0 {
		t.Errorf("%+v: want a full repack", st)
	}
	h.verify(t, false)
}

func TestPrune_ResticWritten(t *testing.T) {
	c := newCorpus(t, 5)
	seedCorpus(t, c)
	h := newHistory(t, c)
	resticCLI(t, h.dir, "init", "--repository-version", "2")
	for step := range 4 {
		if step == 1 {
			c.write(t, "big", 20<<20)
		}
		if step == 2 {
			c.remove(t, "big")
		}
		churn(t, c, step)
		h.resticBackup(t)
	}
	resticCLI(t, h.dir, "forget", "--keep-last", "2")
	r := h.open(t)
	before := dirSize(t, h.dir)
	st, err := Prune(context.Background(), r, PruneOptions{MaxUnused: 1e-9, Log: zaptest.NewLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("prune: %+v; repository %d -> %d bytes", st, before, dirSize(t, h.dir))
	if st.PacksDeleted == 0 || st.BytesFreed <= 0 {
		t.Errorf("%+v: nothing freed", st)
	}
	h.verify(t, true)
}

func TestPrune_Interleaved(t *testing.T) {
	c := newCorpus(t, 6)
	seedCorpus(t, c)
	h := newHistory(t, c)
	step := 0
	next := func() { churn(t, c, step); step++ }
	h.backup(t, time.Now())
	h.verify(t, true)
	next()
	h.resticBackup(t)
	h.verify(t, true)
	next()
	h.backup(t, time.Now())
	next()
	h.resticBackup(t)
	resticCLI(t, h.dir, "forget", "--keep-last", "2", "--prune")
	h.verify(t, true)
	next()
	h.backup(t, time.Now())
	h.verify(t, true)
	forgetAndPrune(t, h.r, c.src, 2, PruneOptions{MaxUnused: 1e-9})
	h.verify(t, true)
	ours, err := h.r.Snapshots(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, s := range ours {
		ids = append(ids, s.ID.String())
	}
	slices.Sort(ids)
	if theirs := h.resticSnapshots(t); !slices.Equal(ids, theirs) {
		t.Errorf("we list %v, restic %v", ids, theirs)
	}
	next()
	h.resticBackup(t)
	next()
	h.backup(t, time.Now())
	h.verify(t, true)
}

func TestPrune_Locked(t *testing.T) {
	ctx := context.Background()
	h := grownHistory(t, 7)
	if _, err := Forget(ctx, h.r, testHost, []string{h.c.src}, policyKeep2, time.Now()); err != nil {
		t.Fatal(err)
	}
	// restic backup --stdin holds its (shared) lock while its stdin is open.
	cmd := exec.Command("restic", "-r", h.dir, "--no-cache", "backup", "--host", "other", "--stdin", "--stdin-filename", "piped")
	cmd.Env = append(os.Environ(), "RESTIC_PASSWORD="+testPassword)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	testutil.RequireTool(t, "restic")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		if cmd.ProcessState == nil {
			cmd.Process.Kill()
			cmd.Wait()
		}
	}()
	testutil.Eventually(t, 30*time.Second, "restic backup holds a lock", func() bool { return len(resticLocks(t, h.dir)) == 1 })
	before := listing(t, h.dir)

	_, err = Prune(ctx, h.r, PruneOptions{})
	var le *LockedError
	if !errors.As(err, &le) || le.PID != cmd.Process.Pid || le.Exclusive {
		t.Fatalf("prune beside restic backup: %v, want a *LockedError naming pid %d", err, cmd.Process.Pid)
	}
	if after := listing(t, h.dir); !mapsEqual(before, after) {
		t.Errorf("the refused prune changed the repository")
	}

	core, logs := observer.New(zap.InfoLevel)
	type result struct {
		st  PruneStats
		err error
	}
	got := make(chan result, 1)
	go func() {
		st, err := Prune(ctx, h.r, PruneOptions{LockWait: 2 * time.Minute, Log: zap.New(core)})
		got <- result{st, err}
	}()
	testutil.Eventually(t, 30*time.Second, "our prune waits for the lock", func() bool {
		return logs.FilterMessageSnippet("waiting").Len() > 0
	})
	stdin.Write([]byte("piped data"))
	stdin.Close()
	if err := cmd.Wait(); err != nil {
		t.Fatal(err)
	}
	var res result
	select {
	case res = <-got:
	case <-time.After(2 * time.Minute):
		t.Fatal("our prune did not finish after restic released its lock")
	}
	if res.err != nil || res.st.PacksDeleted == 0 {
		t.Fatalf("prune after restic backup: %+v, %v", res.st, res.err)
	}
	resticCLI(t, h.dir, "check", "--read-data")
}

func mapsEqual(a, b map[string]int64) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

func TestPrune_DamagedTree(t *testing.T) {
	ctx := context.Background()
	h := grownHistory(t, 8)
	if _, err := Forget(ctx, h.r, testHost, []string{h.c.src}, policyKeep2, time.Now()); err != nil {
		t.Fatal(err)
	}
	x, err := h.r.LoadIndex(ctx)
	if err != nil {
		t.Fatal(err)
	}
	snaps, _ := h.r.Snapshots(ctx)
	root, _ := x.Lookup(TreeBlob, *snaps[len(snaps)-1].Tree)
	p := filepath.Join(h.dir, key(PackFile, root.Pack))
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	b[root.Offset+root.Length/2] ^= 0xff
	os.Chmod(p, 0o644)
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	before := listing(t, h.dir)
	_, err = Prune(ctx, h.r, PruneOptions{MaxUnused: 1e-9})
	if err == nil || !strings.Contains(err.Error(), snaps[len(snaps)-1].ID.Str()) {
		t.Fatalf("prune of a repository with a damaged tree: %v, want an error naming snapshot %s", err, snaps[len(snaps)-1].ID.Str())
	}
	t.Log(err)
	if after := listing(t, h.dir); !mapsEqual(before, after) {
		t.Errorf("prune changed the repository though a tree could not be read")
	}
}

// pruneSteps are the steps a prune helper logged (JSON lines on its
// stderr), with their times since it printed "start <unix nanoseconds>".
func pruneSteps(t *testing.T, startLine, stderr string) (steps []string, at []time.Duration) {
	t.Helper()
	ns, err := strconv.ParseInt(strings.TrimPrefix(startLine, "start "), 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(stderr, "\n") {
		var e struct {
			TS  float64 `json:"ts"`
			Msg string  `json:"msg"`
		}
		if json.Unmarshal([]byte(l), &e) == nil && strings.HasPrefix(e.Msg, "prune: ") {
			steps = append(steps, strings.TrimPrefix(e.Msg, "prune: "))
			at = append(at, time.Duration(e.TS*1e9-float64(ns)))
		}
	}
	return steps, at
}

// TestPrune_Crash kills a prune (kill -9, in a helper process) at random
// points: restic check stays clean (orphaned packs allowed), every snapshot
// restores, and the next prune finishes the work.
func TestPrune_Crash(t *testing.T) {
	ctx := context.Background()
	template := grownHistory(t, 9)
	// An orphan too, from a killed backup.
	w := newWriter(template.r, template.r.index)
	data := make([]byte, packTarget+1)
	for i := range data {
		data[i] = byte(i * 13 % 251)
	}
	if err := w.Add(ctx, DataBlob, Hash(data), data, 0); err != nil {
		t.Fatal(err)
	}
	w.Abandon()
	if _, err := Forget(ctx, template.r, testHost, []string{template.c.src}, policyKeep2, time.Now()); err != nil {
		t.Fatal(err)
	}
	copyRepo := func(t *testing.T) *history {
		h := *template
		h.r = nil
		h.dir = filepath.Join(t.TempDir(), "repo")
		if out, err := exec.Command("cp", "-a", template.dir, h.dir).CombinedOutput(); err != nil {
			t.Fatalf("cp: %v\n%s", err, out)
		}
		return &h
	}
	const maxUnused = "0.000000001" // every partly used pack is repacked
	// One prune to the end: how long it takes, and when it starts to change
	// the repository.
	h := copyRepo(t)
	p := startHelper(t, "prune", h.dir, maxUnused)
	start := p.waitLine(t, "start", time.Minute)
	p.waitLine(t, "done", 5*time.Minute)
	p.cmd.Wait()
	allSteps, at := pruneSteps(t, start, p.cmd.Stderr.(*testWriter).String())
	if len(allSteps) < 5 || allSteps[0] != "planned" || allSteps[len(allSteps)-1] != "done" {
		t.Fatalf("the prune logged the steps %v", allSteps)
	}
	full := at[len(at)-1]
	h.verify(t, false)
	t.Logf("an uninterrupted prune: done after %v, %d steps: %v", full, len(allSteps), allSteps)

	// Kill points: one at each kind of step (at a random one of its
	// occurrences: each file deleted is a step; the hook in the helper
	// kills it as it logs the step), in random order, and three at a random
	// time (in the midst of a step).
	rnd := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 1))
	byKind := map[string][]int{}
	var kinds []string
	for i, s := range allSteps[:len(allSteps)-1] { // never at "done"
		if byKind[s] == nil {
			kinds = append(kinds, s)
		}
		byKind[s] = append(byKind[s], i+1)
	}
	rnd.Shuffle(len(kinds), func(i, j int) { kinds[i], kinds[j] = kinds[j], kinds[i] })
	type point struct {
		arg   string
		after time.Duration
	}
	var points []point
	for _, k := range kinds {
		n := byKind[k][rnd.IntN(len(byKind[k]))]
		points = append(points, point{arg: fmt.Sprintf("%s kill %d", maxUnused, n)})
	}
	for range 3 {
		points = append(points, point{arg: maxUnused, after: 1 + time.Duration(rnd.Int64N(int64(full)))})
	}
	for i, pt := range points {
		arg, after := pt.arg, pt.after
		t.Run(fmt.Sprintf("kill %d", i), func(t *testing.T) {
			h := copyRepo(t)
			p := startHelper(t, "prune", h.dir, arg)
			start := p.waitLine(t, "start", time.Minute)
			if after > 0 {
				time.Sleep(after) // the sleep is the random kill point itself
				p.kill()
			} else {
				p.exit(t, 5*time.Minute)
				if ws, ok := p.cmd.ProcessState.Sys().(syscall.WaitStatus); !ok || ws.Signal() != syscall.SIGKILL {
					t.Fatalf("the helper ended with %v, not killed by its hook", p.cmd.ProcessState)
				}
			}
			steps, _ := pruneSteps(t, start, p.cmd.Stderr.(*testWriter).String())
			last := "(none)"
			if len(steps) > 0 {
				last = steps[len(steps)-1]
			}
			t.Logf("killed (%s, after %v) after step %d of %d: %q", arg, after, len(steps), len(allSteps), last)
			// Our killed lock is stale for restic: same host, dead pid.
			resticCLI(t, h.dir, "unlock")
			if got := resticLocks(t, h.dir); len(got) != 0 {
				t.Fatalf("restic unlock left %v", got)
			}
			h.verify(t, false)
			// The next prune finishes the work: every blob still reads back
			// (restores were compared above).
			if _, err := Prune(ctx, h.open(t), PruneOptions{MaxUnused: 1e-9, Log: zaptest.NewLogger(t)}); err != nil {
				t.Fatal(err)
			}
			resticCLI(t, h.dir, "check", "--read-data")
		})
	}
}

// TestPrune_VersusRestic prunes copies of one repository with ours and with
// restic prune and logs both times; both results check clean.
func TestPrune_VersusRestic(t *testing.T) {
	ctx := context.Background()
	h := grownHistory(t, 10)
	if _, err := Forget(ctx, h.r, testHost, []string{h.c.src}, policyKeep2, time.Now()); err != nil {
		t.Fatal(err)
	}
	theirs := filepath.Join(t.TempDir(), "repo")
	if out, err := exec.Command("cp", "-a", h.dir, theirs).CombinedOutput(); err != nil {
		t.Fatalf("cp: %v\n%s", err, out)
	}
	size := dirSize(t, h.dir)
	r := openOrInit(t, openFileStore(t, h.dir))
	t0 := time.Now()
	st, err := Prune(ctx, r, PruneOptions{})
	if err != nil {
		t.Fatal(err)
	}
	ours := time.Since(t0)
	t0 = time.Now()
	resticCLI(t, theirs, "prune")
	restic := time.Since(t0)
	t.Logf("repository of %d bytes: our prune %v (%d bytes left, %+v), restic prune %v (%d bytes left)",
		size, ours, dirSize(t, h.dir), st, restic, dirSize(t, theirs))
	h.verify(t, true)
	resticCLI(t, theirs, "check", "--read-data")
}

func TestIndex_Packs(t *testing.T) {
	// A blob stored twice (a repack killed before the old index was
	// replaced leaves this): each pack lists its own copy.
	id := Hash([]byte("blob"))
	p1, p2 := Hash([]byte("pack 1")), Hash([]byte("pack 2"))
	x := newIndex()
	x.add([]Blob{{Type: DataBlob, ID: Hash([]byte("other")), Pack: p1, Offset: 0, Length: 100}, {Type: DataBlob, ID: id, Pack: p1, Offset: 100, Length: 50}})
	x.add([]Blob{{Type: DataBlob, ID: id, Pack: p2, Offset: 0, Length: 60}})
	packs := x.Packs()
	for _, tc := range []struct {
		pack         ID
		offset, size uint32
	}{{p1, 100, 50}, {p2, 0, 60}} {
		var found bool
		for _, b := range packs[tc.pack] {
			if b.ID == id {
				found = true
				if b.Pack != tc.pack || b.Offset != tc.offset || b.Length != tc.size {
					t.Errorf("pack %s lists the blob at %s+%d (%d bytes), want its own copy at %d (%d bytes)", tc.pack.Str(), b.Pack.Str(), b.Offset, b.Length, tc.offset, tc.size)
				}
			}
		}
		if !found {
			t.Errorf("pack %s does not list the blob", tc.pack.Str())
		}
	}
}

func TestPrune_DuplicateBlobs(t *testing.T) {
	// A repack killed after its new packs were indexed, before the old
	// index was replaced: the blobs of partly used packs are stored twice.
	ctx := context.Background()
	h := grownHistory(t, 11)
	if _, err := Forget(ctx, h.r, testHost, []string{h.c.src}, policyKeep2, time.Now()); err != nil {
		t.Fatal(err)
	}
	x, err := h.r.LoadIndex(ctx)
	if err != nil {
		t.Fatal(err)
	}
	w := newWriter(h.r, newIndex())
	copied := 0
	for id, bs := range x.Packs() {
		data, err := h.r.get(ctx, key(PackFile, id))
		if err != nil {
			t.Fatal(err)
		}
		for _, b := range bs {
			payload, err := h.r.key.Open(nil, data[b.Offset:b.Offset+b.Length])
			if err != nil {
				t.Fatal(err)
			}
			if err := w.Add(ctx, b.Type, b.ID, payload, int(b.RawLength)); err != nil {
				t.Fatal(err)
			}
			copied++
		}
	}
	if err := w.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	t.Logf("%d blobs stored twice", copied)
	h.verify(t, false)
	st := forgetAndPrune(t, h.r, h.c.src, 2, PruneOptions{MaxUnused: 1e-9})
	if st.PacksDeleted == 0 {
		t.Errorf("%+v: the duplicates were not deleted", st)
	}
	h.verify(t, true)
}

func TestIndex_Add(t *testing.T) {
	// A pack named by two index files (a prune killed while it deleted the
	// old index files leaves this) lists its blobs once.
	p := Hash([]byte("pack"))
	bs := []Blob{{Type: DataBlob, ID: Hash([]byte("a")), Pack: p, Offset: 0, Length: 100}, {Type: TreeBlob, ID: Hash([]byte("b")), Pack: p, Offset: 100, Length: 50}}
	x := newIndex()
	x.add(bs)
	x.add(append([]Blob(nil), bs...))
	if got := x.Packs()[p]; len(got) != len(bs) {
		t.Errorf("the pack lists %d blobs, want %d", len(got), len(bs))
	}
	if x.Len() != 2 {
		t.Errorf("Len = %d, want 2", x.Len())
	}
}
