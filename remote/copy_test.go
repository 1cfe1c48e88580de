package remote

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"snapvisor/store"
	"snapvisor/store/storetest"
)

// copyPolicy retries quickly: the copies go through the retry wrapper as in production.
var copyPolicy = store.Policy{Retries: 2, Backoff: 10 * time.Millisecond, MaxBackoff: 50 * time.Millisecond}

func retrying(s store.Store) store.Store { return store.WithRetry(s, copyPolicy, nil) }

// pushed pushes a fresh snapshot of n bytes named app-<at> to s and returns its key.
func pushed(t *testing.T, ctx context.Context, s store.Store, at time.Time, n int64) string {
	t.Helper()
	p := storetest.MakeSnapshot(t, t.TempDir(), "app", at, ".tar.zst", n)
	rs, err := Push(ctx, s, p)
	if err != nil {
		t.Fatalf("push to %s: %v", s.Name(), err)
	}
	return rs.Key
}

// keysOn is the keys of the complete snapshots on s.
func keysOn(t *testing.T, ctx context.Context, s store.Store) []string {
	t.Helper()
	list, err := ListSnapshots(ctx, s, "")
	if err != nil {
		t.Fatalf("list %s: %v", s.Name(), err)
	}
	var out []string
	for _, r := range list {
		out = append(out, r.Key)
	}
	return out
}

// checkCopied asserts that to lists exactly key and that its copy hashes to its .sha256, the source's.
func checkCopied(t *testing.T, ctx context.Context, from, to store.Store, key string) {
	t.Helper()
	if got := keysOn(t, ctx, to); len(got) != 1 || got[0] != key {
		t.Fatalf("%s lists %v, want [%s]", to.Name(), got, key)
	}
	if err := VerifyCopy(ctx, to, key); err != nil {
		t.Fatalf("verify the copy: %v", err)
	}
	want, err := readSum(ctx, from, key)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := readSum(ctx, to, key); err != nil || got != want {
		t.Fatalf("copy's .sha256 %s (%v), the source's %s", got, err, want)
	}
}

// TestCopy_Backends copies a snapshot across the store pairs that matter, on
// real servers: each kind as a source and as a destination, S3 between two
// MinIO instances (two regions) and within one (server side); a rerun skips.
func TestCopy_Backends(t *testing.T) {
	ctx := storetest.Ctx(t, 8*time.Minute)
	file := storetest.FileBackend(t)
	s3a, s3b := storetest.S3Backend(t), storetest.S3Backend(t)
	sftp := storetest.SFTPBackend(t)
	azure := storetest.AzureBackend(t)
	gs := storetest.GCSBackend(t)
	t0 := time.Date(2025, 5, 1, 10, 0, 0, 0, time.UTC)
	pairs := []struct {
		name       string
		from, to   storetest.Backend
		size       int64
		serverSide bool
	}{
		{"file-s3", file, s3a, 3 << 20, false},
		{"s3-file", s3a, file, 3 << 20, false},
		{"s3-s3TwoRegions", s3a, s3b, 20 << 20, false}, // multipart
		{"s3-s3SameEndpoint", s3a, s3a, 20 << 20, true},
		{"file-sftp", file, sftp, 3 << 20, false},
		{"sftp-azure", sftp, azure, 3 << 20, false},
		{"azure-gs", azure, gs, 3 << 20, false},
		{"gs-s3", gs, s3b, 3 << 20, false},
	}
	for i, p := range pairs {
		t.Run(p.name, func(t *testing.T) {
			from := retrying(p.from.Open(t, storetest.FreshPrefix()))
			to := retrying(p.to.Open(t, storetest.FreshPrefix()))
			key := pushed(t, ctx, from, t0.Add(time.Duration(i)*time.Hour), p.size)
			res, err := Copy(ctx, from, to, key, CopyOptions{})
			if err != nil {
				t.Fatalf("copy: %v", err)
			}
			want := CopyResult{Key: key, From: from.Name(), To: to.Name(), Bytes: p.size, ServerSide: p.serverSide}
			if res != want {
				t.Errorf("result %+v, want %+v", res, want)
			}
			checkCopied(t, ctx, from, to, key)
			res, err = Copy(ctx, from, to, key, CopyOptions{})
			if err != nil || !res.Skipped || res.Bytes != 0 {
				t.Errorf("rerun: %+v, %v; want skipped", res, err)
			}
		})
	}
}

// TestCopy_Resume: a copy cut short left an archive without .sha256 on the
// destination (never listed); the next copy completes it.
func TestCopy_Resume(t *testing.T) {
	ctx := storetest.Ctx(t, 3*time.Minute)
	for _, k := range []string{"file", "s3"} {
		t.Run(k, func(t *testing.T) {
			b := storetest.FileBackend(t)
			if k == "s3" {
				b = storetest.S3Backend(t)
			}
			from, to := retrying(b.Open(t, storetest.FreshPrefix())), retrying(b.Open(t, storetest.FreshPrefix()))
			key := pushed(t, ctx, from, time.Date(2025, 5, 2, 0, 0, 0, 0, time.UTC), 1<<20)
			if err := to.Put(ctx, key, bytes.NewReader([]byte("half an archive")), 15); err != nil {
				t.Fatal(err)
			}
			if got := keysOn(t, ctx, to); len(got) != 0 {
				t.Fatalf("a partial copy is listed: %v", got)
			}
			res, err := Copy(ctx, from, to, key, CopyOptions{})
			if err != nil || res.Skipped || res.Bytes != 1<<20 {
				t.Fatalf("copy: %+v, %v", res, err)
			}
			checkCopied(t, ctx, from, to, key)
		})
	}
}

// TestCopy_BadSource: a source archive whose bytes were altered after upload
// (same size) is never copied: ErrChecksum naming the source, nothing listed
// on the destination, streamed or server side.
func TestCopy_BadSource(t *testing.T) {
	ctx := storetest.Ctx(t, 3*time.Minute)
	file := storetest.FileBackend(t)
	s3a, s3b := storetest.S3Backend(t), storetest.S3Backend(t)
	for i, p := range []struct {
		name     string
		from, to storetest.Backend
		size     int64
	}{
		{"file-file", file, file, 1 << 20},
		{"s3-s3TwoRegions", s3a, s3b, 20 << 20},
		{"s3-s3SameEndpoint", s3a, s3a, 1 << 20},
		{"s3-file", s3a, file, 1 << 20},
	} {
		t.Run(p.name, func(t *testing.T) {
			from := retrying(p.from.Open(t, storetest.FreshPrefix()))
			to := retrying(p.to.Open(t, storetest.FreshPrefix()))
			key := pushed(t, ctx, from, time.Date(2025, 5, 3, i, 0, 0, 0, time.UTC), p.size)
			altered, err := io.ReadAll(storetest.Gen(99, p.size))
			if err != nil {
				t.Fatal(err)
			}
			if err := from.Put(ctx, key, bytes.NewReader(altered), p.size); err != nil {
				t.Fatal(err)
			}
			_, err = Copy(ctx, from, to, key, CopyOptions{})
			var se *store.Error
			if !errors.Is(err, ErrChecksum) || !errors.As(err, &se) || se.Store != from.Name() || !se.Permanent {
				t.Fatalf("copy of an altered source: %v; want a permanent ErrChecksum naming %s", err, from.Name())
			}
			if got := keysOn(t, ctx, to); len(got) != 0 {
				t.Fatalf("destination lists %v after a failed copy", got)
			}
			if objs, err := to.List(ctx, key); err != nil || len(objs) != 0 {
				t.Errorf("destination holds %v (%v): the bad bytes were committed", objs, err)
			}
		})
	}
}

// TestCopy_Exists: another complete snapshot of the key on the destination
// (another checksum) is never touched (ErrExists); with Replace (it failed
// verification) it is replaced by the source's.
func TestCopy_Exists(t *testing.T) {
	ctx := storetest.Ctx(t, 3*time.Minute)
	b := storetest.S3Backend(t)
	from, to := retrying(b.Open(t, storetest.FreshPrefix())), retrying(b.Open(t, storetest.FreshPrefix()))
	at := time.Date(2025, 5, 4, 0, 0, 0, 0, time.UTC)
	key := pushed(t, ctx, from, at, 1<<20)
	// Another snapshot of the same second (another seed, so other bytes) on the destination.
	other := storetest.MakeSnapshot(t, t.TempDir(), "app", at, ".tar.zst", 1<<20+1)
	if filepath.Base(other) != key {
		t.Fatalf("keys differ: %s %s", other, key)
	}
	if _, err := Push(ctx, to, other); err != nil {
		t.Fatal(err)
	}
	before, _ := readSum(ctx, to, key)
	_, err := Copy(ctx, from, to, key, CopyOptions{})
	if !errors.Is(err, ErrExists) {
		t.Fatalf("copy onto another snapshot: %v, want ErrExists", err)
	}
	if after, _ := readSum(ctx, to, key); after != before {
		t.Fatalf("the destination's snapshot was touched")
	}
	res, err := Copy(ctx, from, to, key, CopyOptions{Replace: true})
	if err != nil || res.Skipped || res.Bytes != 1<<20 {
		t.Fatalf("copy with Replace: %+v, %v", res, err)
	}
	checkCopied(t, ctx, from, to, key)
}

// TestCopy_SameLocation: from and to the same place is refused before anything is read.
func TestCopy_SameLocation(t *testing.T) {
	ctx := storetest.Ctx(t, time.Minute)
	dir := t.TempDir()
	a := storetest.Open(t, "file://"+dir, store.Config{})
	b := storetest.Open(t, "file://"+dir+"/", store.Config{})
	// No snapshot there at all: the refusal comes before the source is read.
	_, err := Copy(ctx, a, b, "app-20250101T000000Z.tar.gz", CopyOptions{})
	if !errors.Is(err, ErrSameLocation) {
		t.Fatalf("file:///a to file:///a/: %v, want ErrSameLocation", err)
	}
	m := storetest.StartMinIO(t)
	m.MakeBucket(t, "snapvisor")
	s1 := storetest.Open(t, m.URL("snapvisor", "x"), storetest.MinIOConfig())
	s2 := storetest.Open(t, "s3://snapvisor/x/?endpoint=http://"+m.Addr+"&tls=false&region=eu-west-1", storetest.MinIOConfig())
	if _, err := Copy(ctx, s1, s2, "app-20250101T000000Z.tar.gz", CopyOptions{}); !errors.Is(err, ErrSameLocation) {
		t.Fatalf("one bucket and prefix twice: %v, want ErrSameLocation", err)
	}
	s3 := storetest.Open(t, m.URL("snapvisor", "y"), storetest.MinIOConfig())
	if SameLocation(s1, s3) {
		t.Fatalf("%s and %s are not the same location", s1.Name(), s3.Name())
	}
}

// TestCopy_NoWrite: a destination that refuses writes (MinIO with a wrong
// secret; a read-only mount) fails the copy clearly; nothing is listed there.
func TestCopy_NoWrite(t *testing.T) {
	ctx := storetest.Ctx(t, 3*time.Minute)
	m := storetest.StartMinIO(t)
	m.MakeBucket(t, "snapvisor")
	from := retrying(storetest.Open(t, m.URL("snapvisor", "src"), storetest.MinIOConfig()))
	key := pushed(t, ctx, from, time.Date(2025, 5, 5, 0, 0, 0, 0, time.UTC), 1<<20)

	t.Run("s3WrongSecret", func(t *testing.T) {
		cfg := storetest.MinIOConfig()
		cfg.S3SecretKey = "wrong-secret-Xy7Qz"
		to := retrying(storetest.Open(t, m.URL("snapvisor", "dst"), cfg))
		_, err := Copy(ctx, from, to, key, CopyOptions{})
		if err == nil || !store.IsPermanent(err) {
			t.Fatalf("copy to a store refusing the credentials: %v, want a permanent error", err)
		}
		good := storetest.Open(t, m.URL("snapvisor", "dst"), storetest.MinIOConfig())
		if got := keysOn(t, ctx, good); len(got) != 0 {
			t.Fatalf("destination lists %v", got)
		}
	})
	t.Run("fileReadOnly", func(t *testing.T) {
		dir := t.TempDir()
		if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "ro,size=8m", "tmpfs", dir).CombinedOutput(); err != nil {
			t.Fatalf("mount a read-only tmpfs (root needed): %v: %s", err, out)
		}
		t.Cleanup(func() { _ = exec.Command("umount", dir).Run() })
		to := retrying(storetest.Open(t, "file://"+dir, store.Config{}))
		_, err := Copy(ctx, from, to, key, CopyOptions{})
		if err == nil {
			t.Fatal("copy onto a read-only mount succeeded")
		}
		if got := keysOn(t, ctx, to); len(got) != 0 {
			t.Fatalf("destination lists %v", got)
		}
		if ents, _ := os.ReadDir(dir); len(ents) != 0 {
			t.Errorf("read-only destination holds %d entries", len(ents))
		}
	})
}
