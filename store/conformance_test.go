package store_test

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"runtime"
	"runtime/metrics"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"snapvisor/remote"
	"snapvisor/store"
	"snapvisor/store/storetest"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
)

// TestConformance runs one storage suite against every store kind on real
// servers (storetest.Backends; remote's TestBackends runs the snapshot suite).
func TestConformance(t *testing.T) {
	for _, k := range storetest.Backends {
		t.Run(k.Name, func(t *testing.T) {
			start := time.Now()
			b := k.Start(t)
			t.Logf("%s server ready in %s", b.Name, time.Since(start).Round(time.Millisecond))
			t.Run("basic", func(t *testing.T) { testBasic(t, b.Open(t, storetest.FreshPrefix())) })
			t.Run("stream100MiB", func(t *testing.T) { testStream(t, b.Open(t, storetest.FreshPrefix())) })
			t.Run("wrongCredentials", func(t *testing.T) {
				if b.BadCreds == nil {
					t.Skip("the emulator does not authenticate")
				}
				s, secret := b.BadCreds(t)
				testWrongCredentials(t, s, secret)
			})
			t.Run("serverDown", func(t *testing.T) {
				if b.Down == nil {
					t.Skip("no server")
				}
				testServerDown(t, b.Down(t))
			})
		})
	}
}

func testBasic(t *testing.T, s store.Store) {
	ctx := storetest.Ctx(t, time.Minute)
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
		if err := s.Put(ctx, bad, strings.NewReader("x"), 1); err == nil || !store.IsPermanent(err) {
			t.Errorf("put %q: %v, want a permanent error", bad, err)
		}
	}
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
func testStream(t *testing.T, s store.Store) {
	ctx := storetest.Ctx(t, 3*time.Minute)
	const size = 100 << 20
	h := sha256.New()
	src := io.TeeReader(storetest.Gen(1, size), h)

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

func testWrongCredentials(t *testing.T, s store.Store, secret string) {
	ctx := storetest.Ctx(t, time.Minute)
	core, logs := observer.New(zapcore.DebugLevel)
	r := store.WithRetry(s, store.Policy{Retries: 3, Backoff: 2 * time.Second}, zap.New(core))
	local := t.TempDir()
	p := storetest.MakeSnapshot(t, local, "app", time.Now(), ".tar.gz", 1000)
	start := time.Now()
	_, err := remote.Push(ctx, r, p)
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
	if !store.IsPermanent(err) {
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

func testServerDown(t *testing.T, s store.Store) {
	ctx := storetest.Ctx(t, 2*time.Minute)
	core, logs := observer.New(zapcore.WarnLevel)
	r := store.WithRetry(s, store.Policy{Retries: 2, Backoff: 50 * time.Millisecond}, zap.New(core))
	local := t.TempDir()
	p := storetest.MakeSnapshot(t, local, "app", time.Now(), ".tar.gz", 64<<10)
	before, _ := os.ReadFile(p)
	start := time.Now()
	_, err := remote.Push(ctx, r, p)
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
