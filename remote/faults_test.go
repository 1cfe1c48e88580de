package remote

import (
	"context"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"snapvisor/internal/testutil"
	"snapvisor/store"
	"snapvisor/store/storetest"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
)

// pauseReader hands out a file and, once past at bytes on the first pass,
// signals reached and waits for release. It is an io.ReadSeeker (so that the
// retry wrapper can rewind it) but not an io.ReaderAt.
type pauseReader struct {
	f        *os.File
	at, n    int64
	once     sync.Once
	reached  chan struct{}
	release  chan struct{}
	rewinds  atomic.Int32
	finished bool
}

func (p *pauseReader) Read(b []byte) (int, error) {
	if !p.finished && p.n >= p.at {
		p.once.Do(func() { close(p.reached); <-p.release })
		p.finished = true
	}
	n, err := p.f.Read(b)
	p.n += int64(n)
	return n, err
}

func (p *pauseReader) Seek(off int64, whence int) (int64, error) {
	if whence == io.SeekStart {
		p.rewinds.Add(1)
	}
	return p.f.Seek(off, whence)
}

// TestS3RestartMidUpload kills MinIO (SIGKILL) in the middle of a multipart
// upload, lets the attempt fail, starts MinIO again on the same port and data,
// and checks that a later attempt succeeds, while a watcher listing the bucket
// all along never sees the snapshot, or its archive, incomplete.
func TestS3RestartMidUpload(t *testing.T) {
	m := storetest.StartMinIO(t)
	ctx := storetest.Ctx(t, 2*time.Minute)
	m.MakeBucket(t, "snapvisor")
	bare := storetest.Open(t, m.URL("snapvisor", "restart"), storetest.MinIOConfig())
	core, logs := observer.New(zapcore.InfoLevel)
	// The retries (at least ~36 s of backoff) outlast MinIO's restart below.
	s := store.WithRetry(bare, store.Policy{Retries: 20, Backoff: 500 * time.Millisecond, MaxBackoff: 4 * time.Second}, zap.New(core))

	const size = 96 << 20
	p := storetest.MakeSnapshot(t, t.TempDir(), "app", time.Now(), ".tar.zst", size)
	key := filepath.Base(p)
	pr := &pauseReader{at: 40 << 20, reached: make(chan struct{}), release: make(chan struct{})}

	// The watcher: whatever it can list must be complete.
	var violations []string
	var seen atomic.Int32
	watchCtx, stopWatch := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for watchCtx.Err() == nil {
			if snaps, err := ListSnapshots(watchCtx, bare, "app"); err == nil {
				seen.Add(1)
				for _, r := range snaps {
					if r.Size != size {
						violations = append(violations, "listed snapshot of "+strconv.FormatInt(r.Size, 10)+" bytes")
					}
				}
			}
			if objs, err := bare.List(watchCtx, ""); err == nil {
				for _, o := range objs {
					if o.Key == key && o.Size != size {
						violations = append(violations, "listed archive of "+strconv.FormatInt(o.Size, 10)+" bytes")
					}
				}
			}
			time.Sleep(20 * time.Millisecond)
		}
	}()

	type result struct {
		rs  Snapshot
		err error
	}
	done := make(chan result, 1)
	go func() {
		rs, err := push(ctx, s, p, func(f *os.File) io.Reader { pr.f = f; return pr })
		done <- result{rs, err}
	}()

	select {
	case <-pr.reached:
	case r := <-done:
		t.Fatalf("push ended before the pause: %+v", r)
	}
	t.Log("40 MiB read: killing MinIO")
	m.Kill()
	close(pr.release)
	// Wait until the interrupted attempt has failed and a retry is scheduled.
	deadline := time.Now().Add(time.Minute)
	for logs.FilterMessage("remote operation failed; retrying").Len() == 0 {
		if time.Now().After(deadline) {
			t.Fatal("no retry after the server was killed")
		}
		time.Sleep(20 * time.Millisecond)
	}
	first := logs.FilterMessage("remote operation failed; retrying").All()[0]
	t.Logf("attempt failed: %v", first.ContextMap()["error"])
	time.Sleep(300 * time.Millisecond)
	t.Log("starting MinIO again")
	m.Start()

	var r result
	select {
	case r = <-done:
	case <-ctx.Done():
		t.Fatal("push did not finish")
	}
	stopWatch()
	wg.Wait()
	if r.err != nil {
		t.Fatalf("push after restart: %v", r.err)
	}
	if pr.rewinds.Load() == 0 {
		t.Errorf("the source was never rewound: no second attempt")
	}
	t.Logf("pushed after %d retries (%d source rewinds); the watcher listed %d times",
		logs.FilterMessage("remote operation failed; retrying").Len(), pr.rewinds.Load(), seen.Load())
	for _, v := range violations {
		t.Errorf("incomplete upload visible: %s", v)
	}
	snaps, err := ListSnapshots(ctx, bare, "app")
	if err != nil || len(snaps) != 1 || snaps[0].Size != size {
		t.Fatalf("after the push: %+v, %v", snaps, err)
	}
	if _, err := Fetch(ctx, s, key, t.TempDir()); err != nil {
		t.Errorf("fetch: %v", err)
	}
}

// TestS3DownThenUp: the server is down when the push starts and comes up
// during the retries; the push succeeds and the local snapshot is intact.
// The server is started once a failed attempt was logged, and the retries
// (at least ~38 s of backoff) outlast its start-up (WaitReady allows 60 s;
// 1-2 s on a loaded machine): not a start after a fixed sleep racing retries
// of ~6 s, from a goroutine that could fail the test after it had ended.
func TestS3DownThenUp(t *testing.T) {
	m := storetest.StartMinIO(t)
	ctx := storetest.Ctx(t, 2*time.Minute)
	m.MakeBucket(t, "snapvisor")
	bare := storetest.Open(t, m.URL("snapvisor", "late"), storetest.MinIOConfig())
	m.Kill()
	core, logs := observer.New(zapcore.WarnLevel)
	s := store.WithRetry(bare, store.Policy{Retries: 40, Backoff: 300 * time.Millisecond, MaxBackoff: 2 * time.Second}, zap.New(core))
	p := storetest.MakeSnapshot(t, t.TempDir(), "app", time.Now(), ".tar.gz", 1<<20)
	done := make(chan error, 1)
	go func() {
		_, err := Push(ctx, s, p)
		done <- err
	}()
	testutil.Eventually(t, time.Minute, "a failed attempt is logged", func() bool {
		return logs.FilterMessage("remote operation failed; retrying").Len() > 0
	})
	m.Start()
	if err := <-done; err != nil {
		t.Fatalf("push: %v", err)
	}
	if snaps, err := ListSnapshots(ctx, s, "app"); err != nil || len(snaps) != 1 {
		t.Errorf("list: %+v, %v", snaps, err)
	}
}

// TestS3MissingBucket: a bucket that does not exist yet is an empty remote:
// its keys do not exist (Get, the lease) and the first writer takes the lease
// and pushes (Put creates the bucket), as on a fresh MinIO.
func TestS3MissingBucket(t *testing.T) {
	m := storetest.StartMinIO(t)
	ctx := storetest.Ctx(t, time.Minute)
	s := storetest.Open(t, m.URL("not-yet", "app"), storetest.MinIOConfig())
	if _, err := s.Get(ctx, "app.lease"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Get in a missing bucket: %v, want fs.ErrNotExist", err)
	}
	if l, ok, err := ReadLease(ctx, s, "app"); ok || err != nil {
		t.Errorf("ReadLease in a missing bucket: %+v, %v, %v", l, ok, err)
	}
	if _, err := AcquireLease(ctx, s, "app", ThisWriter(), time.Minute, time.Now()); err != nil {
		t.Fatalf("AcquireLease in a missing bucket: %v", err)
	}
	p := storetest.MakeSnapshot(t, t.TempDir(), "app", time.Now(), ".tar.gz", 1<<10)
	if _, err := Push(ctx, s, p); err != nil {
		t.Fatalf("push: %v", err)
	}
	if snaps, err := ListSnapshots(ctx, s, "app"); err != nil || len(snaps) != 1 {
		t.Errorf("list: %+v, %v", snaps, err)
	}
}
