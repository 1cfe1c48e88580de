package store

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"runtime/metrics"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"snapvisor/rotation"
	"snapvisor/snapshot"
)

// backend is one store kind under test, with its server running.
type backend struct {
	name string
	// open returns the bare store for a fresh prefix (bucket/container created).
	open func(t *testing.T, prefix string) Store
	// badCreds returns a store whose credentials the server refuses, and the secret in use (nil: not applicable).
	badCreds func(t *testing.T) (Store, string)
	// down returns a store pointing where no server listens.
	down func(t *testing.T) Store
	// leaveUpload leaves an unfinished upload of key on s, as an upload
	// killed midway does (nil: the service cleans them up by itself).
	leaveUpload func(t *testing.T, s Store, key string)
}

var prefixN struct {
	sync.Mutex
	n int
}

func freshPrefix() string {
	prefixN.Lock()
	defer prefixN.Unlock()
	prefixN.n++
	return "t" + strconv.Itoa(prefixN.n)
}

func mustOpen(t *testing.T, rawURL string, cfg Config) Store {
	t.Helper()
	s, err := Open(context.Background(), rawURL, cfg, zaptestLogger(t))
	if err != nil {
		t.Fatalf("open %s: %v", rawURL, err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func zaptestLogger(t *testing.T) *zap.Logger {
	if testing.Verbose() {
		l, _ := zap.NewDevelopment()
		return l
	}
	return zap.NewNop()
}

func fileBackend(t *testing.T) backend {
	root := t.TempDir()
	return backend{
		name: "file",
		open: func(t *testing.T, prefix string) Store {
			return mustOpen(t, "file://"+filepath.Join(root, prefix), Config{})
		},
		leaveUpload: func(t *testing.T, s Store, key string) { leaveTemp(t, s.(*File).root, key) },
	}
}

func s3Backend(t *testing.T) backend {
	m := startMinIO(t)
	return backend{
		name: "s3",
		open: func(t *testing.T, prefix string) Store {
			s := mustOpen(t, m.URL("snapvisor", prefix), minioConfig())
			if err := s.(*S3).makeBucket(testCtx(t, 30*time.Second)); err != nil {
				t.Fatal(err)
			}
			return s
		},
		badCreds: func(t *testing.T) (Store, string) {
			cfg := minioConfig()
			cfg.S3SecretKey = "wrong-secret-Xy7Qz"
			return mustOpen(t, m.URL("snapvisor", "bad"), cfg), "wrong-secret-Xy7Qz"
		},
		down: func(t *testing.T) Store {
			return mustOpen(t, fmt.Sprintf("s3://snapvisor/down?endpoint=%s&tls=false&region=us-east-1", deadAddr(t)), minioConfig())
		},
		leaveUpload: leaveMultipart,
	}
}

func sftpBackend(t *testing.T) backend {
	sv := startSSHD(t)
	return backend{
		name: "sftp",
		open: func(t *testing.T, prefix string) Store {
			return mustOpen(t, sv.url(prefix), sv.config())
		},
		badCreds: func(t *testing.T) (Store, string) {
			other := filepath.Join(t.TempDir(), "other_key")
			writeKey(t, other)
			cfg := sv.config()
			cfg.SFTPKeyFile = other
			cfg.SFTPPassword = "wrong-password-Xy7Qz"
			return mustOpen(t, sv.url("bad"), cfg), "wrong-password-Xy7Qz"
		},
		down: func(t *testing.T) Store {
			cfg := sv.config()
			cfg.SFTPInsecureNoHost = true
			return mustOpen(t, fmt.Sprintf("sftp://%s@%s/tmp/x", sv.user, deadAddr(t)), cfg)
		},
		// sshd runs here: the store's root is a local directory.
		leaveUpload: func(t *testing.T, s Store, key string) { leaveTemp(t, s.(*SFTP).root, key) },
	}
}

func azureBackend(t *testing.T) backend {
	endpoint := startAzurite(t)
	return backend{
		name: "azure",
		open: func(t *testing.T, prefix string) Store {
			s := mustOpen(t, "azure://snapvisor/"+prefix, azureConfig(endpoint))
			if err := s.(*Azure).makeContainer(testCtx(t, 30*time.Second)); err != nil {
				t.Fatal(err)
			}
			return s
		},
		badCreds: func(t *testing.T) (Store, string) {
			wrong := "d3Jvbmcta2V5LVh5N1F6LXdyb25nLWtleS1YeTdRei13cm9uZy1rZXk="
			cfg := Config{AzureAccount: azuriteAcct, AzureKey: "d3Jvbmcta2V5LVh5N1F6LXdyb25nLWtleS1YeTdRei13cm9uZy1rZXk=", AzureEndpoint: endpoint}
			return mustOpen(t, "azure://snapvisor/bad", cfg), wrong
		},
		down: func(t *testing.T) Store {
			return mustOpen(t, "azure://snapvisor/down", azureConfig("http://"+deadAddr(t)+"/"+azuriteAcct))
		},
	}
}

func gcsBackend(t *testing.T) backend {
	addr := startFakeGCS(t)
	return backend{
		name: "gs",
		open: func(t *testing.T, prefix string) Store {
			s := mustOpen(t, "gs://snapvisor/"+prefix, Config{GCSEmulatorHost: addr})
			if err := s.(*GCS).makeBucket(testCtx(t, 30*time.Second)); err != nil {
				t.Fatal(err)
			}
			return s
		},
		// fake-gcs-server does not authenticate: no wrong-credentials case.
		down: func(t *testing.T) Store {
			return mustOpen(t, "gs://snapvisor/down", Config{GCSEmulatorHost: deadAddr(t)})
		},
	}
}

// TestConformance runs one suite against every store kind on real servers.
func TestConformance(t *testing.T) {
	kinds := []struct {
		name string
		mk   func(*testing.T) backend
	}{{"file", fileBackend}, {"s3", s3Backend}, {"sftp", sftpBackend}, {"azure", azureBackend}, {"gs", gcsBackend}}
	for _, k := range kinds {
		mk := k.mk
		t.Run(k.name, func(t *testing.T) {
			start := time.Now()
			b := mk(t)
			t.Logf("%s server ready in %s", b.name, time.Since(start).Round(time.Millisecond))
			t.Run("basic", func(t *testing.T) { testBasic(t, b.open(t, freshPrefix())) })
			t.Run("stream100MiB", func(t *testing.T) { testStream(t, b.open(t, freshPrefix())) })
			t.Run("snapshots", func(t *testing.T) { testSnapshots(t, b.open(t, freshPrefix())) })
			t.Run("restoreIntoEmptyDirectory", func(t *testing.T) { testRestore(t, b.open(t, freshPrefix())) })
			t.Run("leases", func(t *testing.T) { testLeases(t, b.open(t, freshPrefix())) })
			t.Run("pushSameSecond", func(t *testing.T) { testPushSameSecond(t, b.open(t, freshPrefix())) })
			t.Run("unfinishedUploads", func(t *testing.T) {
				if b.leaveUpload == nil {
					t.Skip("the service discards unfinished uploads by itself (Azure: uncommitted blocks after 7 days; GCS: resumable sessions after a week)")
				}
				testUnfinishedUploads(t, b.open(t, freshPrefix()), b.leaveUpload)
			})
			t.Run("wrongCredentials", func(t *testing.T) {
				if b.badCreds == nil {
					t.Skip("the emulator does not authenticate")
				}
				s, secret := b.badCreds(t)
				testWrongCredentials(t, s, secret)
			})
			t.Run("serverDown", func(t *testing.T) {
				if b.down == nil {
					t.Skip("no server")
				}
				testServerDown(t, b.down(t))
			})
		})
	}
}

func testBasic(t *testing.T, s Store) {
	ctx := testCtx(t, time.Minute)
	if !strings.Contains(s.Name(), "://") {
		t.Errorf("Name() = %q, want a URL", s.Name())
	}
	put := func(key, data string, size int64) {
		t.Helper()
		if err := s.Put(ctx, key, strings.NewReader(data), size); err != nil {
			t.Fatalf("put %s: %v", key, err)
		}
	}
	get := func(key string) string {
		t.Helper()
		rc, err := s.Get(ctx, key)
		if err != nil {
			t.Fatalf("get %s: %v", key, err)
		}
		defer rc.Close()
		b, err := io.ReadAll(rc)
		if err != nil {
			t.Fatalf("read %s: %v", key, err)
		}
		return string(b)
	}
	put("a.txt", "hello", 5)
	put("b.txt", "world!", -1)
	put("dir/c.txt", "nested", 6)
	put("empty", "", 0)
	if got := get("a.txt"); got != "hello" {
		t.Errorf("get a.txt = %q", got)
	}
	put("a.txt", "hello again", 11) // replace
	if got := get("a.txt"); got != "hello again" {
		t.Errorf("get replaced a.txt = %q", got)
	}
	if got := get("dir/c.txt"); got != "nested" {
		t.Errorf("get dir/c.txt = %q", got)
	}
	if got := get("empty"); got != "" {
		t.Errorf("get empty = %q", got)
	}

	objs, err := s.List(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]int64{"a.txt": 11, "b.txt": 6, "dir/c.txt": 6, "empty": 0}
	if len(objs) != len(want) {
		t.Errorf("list = %+v, want keys %v", objs, want)
	}
	for i, o := range objs {
		if sz, ok := want[o.Key]; !ok || sz != o.Size {
			t.Errorf("listed %q size %d; want %v", o.Key, o.Size, want)
		}
		if o.Modified.IsZero() || time.Since(o.Modified) > time.Hour {
			t.Errorf("listed %q modified %v", o.Key, o.Modified)
		}
		if i > 0 && objs[i-1].Key >= o.Key {
			t.Errorf("list not sorted: %q before %q", objs[i-1].Key, o.Key)
		}
	}
	objs, err = s.List(ctx, "dir/")
	if err != nil || len(objs) != 1 || objs[0].Key != "dir/c.txt" {
		t.Errorf("list dir/ = %+v, %v", objs, err)
	}
	objs, err = s.List(ctx, "b")
	if err != nil || len(objs) != 1 || objs[0].Key != "b.txt" {
		t.Errorf("list b = %+v, %v", objs, err)
	}

	// A size that does not match the data fails and leaves nothing.
	if err := s.Put(ctx, "short", strings.NewReader("abc"), 10); err == nil {
		t.Errorf("put with wrong size succeeded")
	}
	if objs, _ := s.List(ctx, "short"); len(objs) != 0 {
		t.Errorf("failed put is listed: %+v", objs)
	}

	if _, err := s.Get(ctx, "missing"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("get missing: %v, want fs.ErrNotExist", err)
	} else if !strings.Contains(err.Error(), s.Name()) {
		t.Errorf("error %q does not name the store %q", err, s.Name())
	}
	for _, k := range []string{"a.txt", "dir/c.txt", "missing"} {
		if err := s.Delete(ctx, k); err != nil {
			t.Errorf("delete %s: %v", k, err)
		}
	}
	if _, err := s.Get(ctx, "a.txt"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("get deleted: %v", err)
	}
	objs, _ = s.List(ctx, "")
	if len(objs) != 2 {
		t.Errorf("after delete list = %+v", objs)
	}
	for _, bad := range []string{"", "/abs", "../up", "a/../b", "a//b"} {
		if err := s.Put(ctx, bad, strings.NewReader("x"), 1); err == nil || !IsPermanent(err) {
			t.Errorf("put %q: %v, want a permanent error", bad, err)
		}
	}
}

// genReader produces n pseudo-random bytes without holding them.
type genReader struct {
	rng *rand.ChaCha8
	n   int64
}

func newGen(seed byte, n int64) *genReader {
	var s [32]byte
	s[0] = seed
	return &genReader{rng: rand.NewChaCha8(s), n: n}
}

func (g *genReader) Read(p []byte) (int, error) {
	if g.n <= 0 {
		return 0, io.EOF
	}
	if int64(len(p)) > g.n {
		p = p[:g.n]
	}
	g.rng.Read(p)
	g.n -= int64(len(p))
	return len(p), nil
}

// heapInUse is the Go heap in use (objects, live or not yet swept, plus
// fragmentation in spans in use) — ReadMemStats' HeapInuse, read without
// stopping the world.
func heapInUse() uint64 {
	s := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}, {Name: "/memory/classes/heap/unused:bytes"}}
	metrics.Read(s)
	return s[0].Value.Uint64() + s[1].Value.Uint64()
}

// memBound is the streaming memory bound of every store.
const memBound = 64 << 20

// testStream uploads 100 MiB of unknown size (generated on the fly, never
// held) and checks the memory used stayed within memBound, measured two ways:
//   - Go heap: a goroutine samples the heap in use (runtime/metrics, the
//     equivalent of MemStats.HeapInuse without stopping the world) every 2 ms;
//     the peak minus the baseline taken after a GC;
//   - process: the peak RSS (VmHWM in /proc/self/status) after resetting it
//     with "5" > /proc/self/clear_refs, minus the RSS at the reset.
func testStream(t *testing.T, s Store) {
	ctx := testCtx(t, 3*time.Minute)
	const size = 100 << 20
	h := sha256.New()
	src := io.TeeReader(newGen(1, size), h)

	runtime.GC()
	base := heapInUse()
	rssBase := resetHWM()
	var peak uint64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		tk := time.NewTicker(2 * time.Millisecond)
		defer tk.Stop()
		for {
			if v := heapInUse(); v > peak {
				peak = v
			}
			select {
			case <-stop:
				return
			case <-tk.C:
			}
		}
	}()
	start := time.Now()
	err := s.Put(ctx, "big.bin", src, -1)
	close(stop)
	wg.Wait()
	elapsed := time.Since(start)
	if err != nil {
		t.Fatalf("streaming put: %v", err)
	}
	growth := int64(peak) - int64(base)
	rssGrowth := readStatus("VmHWM") - rssBase
	t.Logf("100 MiB streamed in %s (%.0f MiB/s); heap in use grew by %.1f MiB at peak, peak RSS by %.1f MiB (over %.1f MiB); bound %d MiB",
		elapsed.Round(time.Millisecond), 100/elapsed.Seconds(), float64(growth)/(1<<20),
		float64(rssGrowth)/(1<<20), float64(rssBase)/(1<<20), memBound>>20)
	// The heap misses buffers outside it (azblob mmaps its block buffers); RSS
	// misses heap growth into pages the process already had. Each must stay
	// within the bound.
	if growth > memBound || (rssGrowth > memBound && !raceEnabled) {
		t.Errorf("a streaming upload grew the heap by %d MiB and the peak RSS by %d MiB; bound %d MiB",
			growth>>20, rssGrowth>>20, memBound>>20)
	}

	objs, err := s.List(ctx, "big.bin")
	if err != nil || len(objs) != 1 || objs[0].Size != size {
		t.Fatalf("list big.bin = %+v, %v", objs, err)
	}
	rc, err := s.Get(ctx, "big.bin")
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	h2 := sha256.New()
	n, err := io.CopyBuffer(h2, rc, make([]byte, 1<<20))
	if err != nil || n != size {
		t.Fatalf("read back %d bytes: %v", n, err)
	}
	if !bytes.Equal(h.Sum(nil), h2.Sum(nil)) {
		t.Errorf("read back differs from what was uploaded")
	}
	if err := s.Delete(ctx, "big.bin"); err != nil {
		t.Error(err)
	}
}

// resetHWM resets the process's peak RSS and returns the current RSS (bytes).
func resetHWM() int64 {
	_ = os.WriteFile("/proc/self/clear_refs", []byte("5"), 0)
	return readStatus("VmRSS")
}

func readStatus(field string) int64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, field+":"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return kb << 10
		}
	}
	return 0
}

// makeSnapshot writes a fake snapshot archive of n random bytes and its .sha256 into dir.
func makeSnapshot(t *testing.T, dir, name string, at time.Time, ext string, n int64) string {
	t.Helper()
	base := fmt.Sprintf("%s-%s%s", name, at.UTC().Format(snapshot.TimeLayout), ext)
	p := filepath.Join(dir, base)
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	h := sha256.New()
	if _, err := io.Copy(io.MultiWriter(f, h), newGen(byte(at.Unix()), n)); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	mustWrite(t, p+".sha256", sumFile(hex.EncodeToString(h.Sum(nil)), base))
	return p
}

func testSnapshots(t *testing.T, s Store) {
	ctx := testCtx(t, 2*time.Minute)
	local := t.TempDir()
	t0 := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	var paths []string
	for i, ext := range []string{".tar.gz", ".tar.zst", ".tar", ".tar.zst"} {
		paths = append(paths, makeSnapshot(t, local, "app", t0.Add(time.Duration(i)*time.Hour), ext, 300<<10+int64(i)))
	}
	foreign := makeSnapshot(t, local, "app-cache", t0.Add(10*time.Hour), ".tar.gz", 1000)
	other := makeSnapshot(t, local, "other", t0.Add(11*time.Hour), ".tar.gz", 1000)
	for _, p := range append(append([]string{}, paths...), foreign, other) {
		rs, err := Push(ctx, s, p)
		if err != nil {
			t.Fatalf("push %s: %v", filepath.Base(p), err)
		}
		fi, _ := os.Stat(p)
		if rs.Key != filepath.Base(p) || rs.Size != fi.Size() || rs.Remote != s.Name() {
			t.Errorf("push result %+v", rs)
		}
	}
	// A partial upload (archive without .sha256), a .sha256 without archive and unrelated names.
	partial := fmt.Sprintf("app-%s.tar.gz", t0.Add(20*time.Hour).Format(snapshot.TimeLayout))
	if err := s.Put(ctx, partial, strings.NewReader("partial"), 7); err != nil {
		t.Fatal(err)
	}
	orphan := fmt.Sprintf("app-%s.tar.gz", t0.Add(21*time.Hour).Format(snapshot.TimeLayout))
	sb := sumFile(strings.Repeat("0", 64), orphan)
	if err := s.Put(ctx, orphan+".sha256", bytes.NewReader(sb), int64(len(sb))); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"app-notes.txt", "app-20250301T120000Z.tar.bz2", "sub/app-20250301T230000Z.tar.gz"} {
		if err := s.Put(ctx, k, strings.NewReader("x"), 1); err != nil {
			t.Fatal(err)
		}
	}

	list, err := ListSnapshots(ctx, s, "app")
	if err != nil {
		t.Fatal(err)
	}
	var keys []string
	for _, r := range list {
		keys = append(keys, r.Key)
	}
	want := []string{filepath.Base(paths[3]), filepath.Base(paths[2]), filepath.Base(paths[1]), filepath.Base(paths[0])}
	if strings.Join(keys, " ") != strings.Join(want, " ") {
		t.Fatalf("ListSnapshots(app) = %v, want %v (newest first; no partial, foreign or orphan)", keys, want)
	}
	if list[0].Compression != "zstd" || list[1].Compression != "none" || list[3].Compression != "gzip" || !list[0].Time.Equal(t0.Add(3*time.Hour)) ||
		list[0].Name != "app" || list[0].Size != 300<<10+3 {
		t.Errorf("ListSnapshots(app)[0] = %+v", list[0])
	}
	if all, _ := ListSnapshots(ctx, s, ""); len(all) != 6 {
		t.Errorf("ListSnapshots(\"\") lists %d, want 6", len(all))
	}

	// Pushing again uploads nothing (the modified time stays).
	again, err := Push(ctx, s, paths[3])
	if err != nil || !again.Modified.Equal(list[0].Modified) {
		t.Errorf("second push: %+v, %v; want the first upload's time %v", again, err, list[0].Modified)
	}

	// Fetch into an empty directory: same bytes, .sha256 beside it, no temporaries.
	dst := filepath.Join(t.TempDir(), "restore")
	got, err := Fetch(ctx, s, list[0].Key, dst)
	if err != nil {
		t.Fatalf("fetch: %v", err)
	}
	if !sameFile(t, got, paths[3]) || !sameFile(t, got+".sha256", paths[3]+".sha256") {
		t.Errorf("fetched files differ from the pushed ones")
	}
	if ents, _ := os.ReadDir(dst); len(ents) != 2 {
		t.Errorf("fetch left %d entries in %s, want 2", len(ents), dst)
	}
	// A corrupted remote archive: checksum error, nothing left behind.
	bad := filepath.Base(paths[0])
	if err := s.Put(ctx, bad, strings.NewReader(strings.Repeat("z", 1000)), 1000); err != nil {
		t.Fatal(err)
	}
	dst2 := t.TempDir()
	if _, err := Fetch(ctx, s, bad, dst2); !errors.Is(err, ErrChecksum) {
		t.Errorf("fetch of a corrupted archive: %v, want ErrChecksum", err)
	}
	if ents, _ := os.ReadDir(dst2); len(ents) != 0 {
		t.Errorf("failed fetch left %d entries", len(ents))
	}
	// Pushing repairs it: the stale .sha256 goes first, then a full upload.
	if _, err := Push(ctx, s, paths[0]); err != nil {
		t.Fatal(err)
	}
	if _, err := Fetch(ctx, s, bad, dst2); err != nil {
		t.Errorf("fetch after repair: %v", err)
	}

	// Rotation keeps the newest 2 of this name only.
	_, deleted, err := Rotate(ctx, s, "app", rotation.Policy{Keep: 2}, t0.Add(24*time.Hour), nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(deleted) != 2 {
		t.Errorf("rotation deleted %v, want the 2 oldest", deleted)
	}
	list, _ = ListSnapshots(ctx, s, "app")
	if len(list) != 2 || list[0].Key != want[0] || list[1].Key != want[1] {
		t.Errorf("after rotation: %+v", list)
	}
	for _, k := range deleted {
		if objs, _ := s.List(ctx, k); len(objs) != 0 {
			t.Errorf("rotation left %+v", objs)
		}
	}
	if fl, _ := ListSnapshots(ctx, s, "app-cache"); len(fl) != 1 {
		t.Errorf("rotation of app touched app-cache: %+v", fl)
	}
	if err := DeleteSnapshot(ctx, s, filepath.Base(foreign)); err != nil {
		t.Fatal(err)
	}
	if fl, _ := ListSnapshots(ctx, s, "app-cache"); len(fl) != 0 {
		t.Errorf("after DeleteSnapshot: %+v", fl)
	}
	// The local snapshots are untouched.
	for _, p := range paths {
		if _, err := os.Stat(p + ".sha256"); err != nil {
			t.Errorf("local snapshot changed: %v", err)
		}
	}
}

func sameFile(t *testing.T, a, b string) bool {
	t.Helper()
	x, err := os.ReadFile(a)
	if err != nil {
		t.Fatal(err)
	}
	y, err := os.ReadFile(b)
	if err != nil {
		t.Fatal(err)
	}
	return bytes.Equal(x, y)
}

func testWrongCredentials(t *testing.T, s Store, secret string) {
	ctx := testCtx(t, time.Minute)
	core, logs := observer.New(zapcore.DebugLevel)
	r := WithRetry(s, Policy{Retries: 3, Backoff: 2 * time.Second}, zap.New(core))
	local := t.TempDir()
	p := makeSnapshot(t, local, "app", time.Now(), ".tar.gz", 1000)
	start := time.Now()
	_, err := Push(ctx, r, p)
	if err == nil {
		t.Fatal("push with wrong credentials succeeded")
	}
	msg := err.Error()
	t.Logf("error: %s", msg)
	if !strings.Contains(msg, s.Name()) {
		t.Errorf("error %q does not name the store %q", msg, s.Name())
	}
	if strings.Contains(msg, secret) || strings.Contains(s.Name(), secret) {
		t.Errorf("error or name reveals the secret: %q", msg)
	}
	if !IsPermanent(err) {
		t.Errorf("refused credentials are not a permanent error: %v", err)
	}
	if d := time.Since(start); d > 20*time.Second {
		t.Errorf("took %s: refused credentials should not be retried patiently", d)
	}
	for _, e := range logs.All() {
		for _, f := range e.Context {
			if strings.Contains(fmt.Sprint(f.Interface, f.String), secret) {
				t.Errorf("log line reveals the secret: %+v", e)
			}
		}
	}
}

func testServerDown(t *testing.T, s Store) {
	ctx := testCtx(t, 2*time.Minute)
	core, logs := observer.New(zapcore.WarnLevel)
	r := WithRetry(s, Policy{Retries: 2, Backoff: 50 * time.Millisecond}, zap.New(core))
	local := t.TempDir()
	p := makeSnapshot(t, local, "app", time.Now(), ".tar.gz", 64<<10)
	before, _ := os.ReadFile(p)
	start := time.Now()
	_, err := Push(ctx, r, p)
	if err == nil {
		t.Fatal("push to a server that is down succeeded")
	}
	t.Logf("after %s: %s", time.Since(start).Round(time.Millisecond), err)
	if !strings.Contains(err.Error(), s.Name()) {
		t.Errorf("error %q does not name the store %q", err, s.Name())
	}
	if !strings.Contains(err.Error(), "gave up after 3 attempts") {
		t.Errorf("error %q does not tell the attempts", err)
	}
	if n := logs.FilterMessage("remote operation failed; retrying").Len(); n != 2 {
		t.Errorf("%d retry warnings logged, want 2", n)
	}
	after, err := os.ReadFile(p)
	if err != nil || !bytes.Equal(before, after) {
		t.Errorf("local snapshot changed: %v", err)
	}
	if _, err := os.Stat(p + ".sha256"); err != nil {
		t.Errorf("local .sha256: %v", err)
	}
}

// testRestore is the new-node case against a real store: a real snapshot of
// a directory tree, pushed from its local copy and also streamed with no
// local copy (snapshot.Stream into PushStream), each fetched into an empty
// directory and restored with snapshot.Restore into an empty target; the
// restored tree must equal the source (content, modes, symlinks, hardlinks).
func testRestore(t *testing.T, s Store) {
	ctx := testCtx(t, 2*time.Minute)
	src := filepath.Join(t.TempDir(), "data")
	writeTree(t, src)
	want := treeOf(t, src)
	log := zaptestLogger(t)

	t.Run("pushed", func(t *testing.T) {
		cfg := snapshot.Config{Sources: []string{src}, Dir: t.TempDir(), Name: "app", Compression: snapshot.CompressionZstd}
		info, err := snapshot.Create(ctx, cfg, log)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := Push(ctx, s, info.Path); err != nil {
			t.Fatal(err)
		}
		restoreAndCompare(t, ctx, s, "app", want)
	})
	t.Run("streamed", func(t *testing.T) {
		cfg := snapshot.Config{Sources: []string{src}, Name: "streamed", Compression: snapshot.CompressionGzip} // no Dir
		key := snapshot.FileName(cfg, time.Now())
		pr, pw := io.Pipe()
		done := make(chan error, 1)
		var rs RemoteSnapshot
		go func() {
			var err error
			rs, err = PushStream(ctx, s, key, pr)
			pr.CloseWithError(err)
			done <- err
		}()
		info, err := snapshot.Stream(ctx, cfg, pw, log)
		pw.CloseWithError(err)
		if perr := <-done; err != nil || perr != nil {
			t.Fatalf("stream: %v; push: %v", err, perr)
		}
		if info.Name != key || rs.Size != info.Size {
			t.Fatalf("streamed %+v, stored %+v", info, rs)
		}
		restoreAndCompare(t, ctx, s, "streamed", want)
	})
}

// restoreAndCompare fetches the newest snapshot named name into an empty
// directory, restores it into an empty target and compares the tree.
func restoreAndCompare(t *testing.T, ctx context.Context, s Store, name string, want map[string]string) {
	t.Helper()
	list, err := ListSnapshots(ctx, s, name)
	if err != nil || len(list) != 1 {
		t.Fatalf("ListSnapshots(%s) = %+v, %v", name, list, err)
	}
	fetched := filepath.Join(t.TempDir(), "fetched") // does not exist yet
	p, err := Fetch(ctx, s, list[0].Key, fetched)
	if err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(fetched); err != nil || fi.Mode().Perm() != 0o700 {
		t.Errorf("Fetch created %s with mode %v (%v), want 0700", fetched, fi.Mode().Perm(), err)
	}
	target := filepath.Join(t.TempDir(), "data") // same base name as the source: a new node's volume
	cfg := snapshot.Config{Sources: []string{target}, Dir: fetched, Name: name, Compression: snapshot.CompressionGzip}
	if err := snapshot.Restore(ctx, cfg, p, snapshot.RestoreOptions{}, zaptestLogger(t)); err != nil {
		t.Fatalf("restore %s from %s: %v", list[0].Key, s.Name(), err)
	}
	got := treeOf(t, target)
	for k, v := range want {
		if got[k] != v {
			t.Errorf("restored %s = %q, want %q", k, got[k], v)
		}
	}
	for k := range got {
		if _, ok := want[k]; !ok {
			t.Errorf("restored an extra entry %s", k)
		}
	}
}

// writeTree writes a small tree with nested directories, modes, a symlink,
// a hardlink, an empty file and 3 MiB of data (several S3/Azure parts are not
// needed: the streaming tests cover size).
func writeTree(t *testing.T, root string) {
	t.Helper()
	for _, d := range []string{"a/b/c", "empty-dir"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o750); err != nil {
			t.Fatal(err)
		}
	}
	files := map[string]string{"a/hello.txt": "hello", "a/b/c/deep.txt": "deep", "empty": ""}
	for name, body := range files {
		if err := os.WriteFile(filepath.Join(root, name), []byte(body), 0o640); err != nil {
			t.Fatal(err)
		}
	}
	f, err := os.Create(filepath.Join(root, "a/big.bin"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(f, newGen(9, 3<<20)); err != nil {
		t.Fatal(err)
	}
	f.Close()
	if err := os.Chmod(filepath.Join(root, "a/big.bin"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("hello.txt", filepath.Join(root, "a/link")); err != nil {
		t.Fatal(err)
	}
	if err := os.Link(filepath.Join(root, "a/hello.txt"), filepath.Join(root, "hard")); err != nil {
		t.Fatal(err)
	}
}

// treeOf describes every entry under root: type, mode and content hash or link target.
func treeOf(t *testing.T, root string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		fi, err := d.Info()
		if err != nil {
			return err
		}
		desc := fi.Mode().String()
		switch {
		case fi.Mode()&fs.ModeSymlink != 0:
			target, err := os.Readlink(p)
			if err != nil {
				return err
			}
			desc += " -> " + target
		case fi.Mode().IsRegular():
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			sum := sha256.Sum256(b)
			desc += " " + hex.EncodeToString(sum[:8])
		}
		out[rel] = desc
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}
