package restic

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// damagedRepo makes a repository with one snapshot of a small tree and
// returns it, its directory and the source.
func damagedRepo(t *testing.T) (*Repo, string, string) {
	t.Helper()
	tmp := t.TempDir()
	src := filepath.Join(tmp, "data")
	richTree(t, src)
	dir := filepath.Join(tmp, "repo")
	r := openOrInit(t, openFileStore(t, dir))
	backupNow(t, src, r)
	return r, dir, src
}

// repoFiles lists the repository files of kind t under dir.
func repoFiles(t *testing.T, dir string, kind FileType) []string {
	t.Helper()
	var out []string
	filepath.Walk(filepath.Join(dir, string(kind)), func(p string, fi os.FileInfo, err error) error {
		if err == nil && fi.Mode().IsRegular() {
			out = append(out, p)
		}
		return nil
	})
	return out
}

// restoreInto restores the newest snapshot of r (a fresh Open, so that the
// damage is seen) into a new directory.
func restoreInto(t *testing.T, dir string) error {
	t.Helper()
	ctx := context.Background()
	r, err := Open(ctx, openFileStore(t, dir), Password(testPassword))
	if err != nil {
		return err
	}
	x, err := r.LoadIndex(ctx)
	if err != nil {
		return err
	}
	snaps, err := r.Snapshots(ctx)
	if err != nil {
		return err
	}
	sn := snaps[len(snaps)-1]
	n, err := r.FindPath(ctx, x, sn, sn.Paths[0])
	if err != nil {
		return err
	}
	out := filepath.Join(t.TempDir(), "out")
	must(t, os.Mkdir(out, 0o700))
	_, err = r.RestoreTree(ctx, x, n, out, RestoreOptions{})
	return err
}

func TestRepo_BadInput(t *testing.T) {
	ctx := context.Background()
	t.Run("wrong password", func(t *testing.T) {
		_, dir, _ := damagedRepo(t)
		_, err := Open(ctx, openFileStore(t, dir), Password("not it"))
		if !errors.Is(err, ErrWrongPassword) || !strings.Contains(err.Error(), dir) {
			t.Fatalf("err = %v; want ErrWrongPassword naming %s", err, dir)
		}
	})
	t.Run("no repository", func(t *testing.T) {
		_, err := Open(ctx, openFileStore(t, t.TempDir()), Password(testPassword))
		if !errors.Is(err, ErrNoRepository) {
			t.Fatalf("err = %v; want ErrNoRepository", err)
		}
	})
	t.Run("unknown version", func(t *testing.T) {
		r, dir, _ := damagedRepo(t)
		cfg := r.cfg
		cfg.Version = 3
		b, _ := json.Marshal(cfg)
		must(t, os.WriteFile(filepath.Join(dir, "config"), r.key.Seal(nil, b), 0o600))
		_, err := Open(ctx, openFileStore(t, dir), Password(testPassword))
		if err == nil || !strings.Contains(err.Error(), "version 3 is not supported") || !strings.Contains(err.Error(), dir) {
			t.Fatalf("err = %v; want an unsupported version naming %s", err, dir)
		}
	})
	t.Run("corrupted pack", func(t *testing.T) {
		_, dir, _ := damagedRepo(t)
		data := largestPack(t, dir)
		b, _ := os.ReadFile(data)
		b[len(b)/3] ^= 0x55
		must(t, os.WriteFile(data, b, 0o600))
		err := restoreInto(t, dir)
		if !errors.Is(err, ErrDamaged) || !strings.Contains(err.Error(), filepath.Base(data)) {
			t.Fatalf("restore: %v; want ErrDamaged naming %s", err, filepath.Base(data))
		}
		r, _ := Open(ctx, openFileStore(t, dir), Password(testPassword))
		rep, err := r.Check(ctx, CheckOptions{ReadData: true})
		must(t, err)
		if rep.OK() || len(rep.Damaged) != 1 {
			t.Fatalf("check: %+v; want the one snapshot damaged", rep)
		}
	})
	t.Run("missing index", func(t *testing.T) {
		_, dir, _ := damagedRepo(t)
		for _, p := range repoFiles(t, dir, IndexFile) {
			must(t, os.Remove(p))
		}
		err := restoreInto(t, dir)
		if !errors.Is(err, ErrMissing) || !Unusable(err) {
			t.Fatalf("restore: %v; want ErrMissing", err)
		}
	})
	t.Run("pack deleted", func(t *testing.T) {
		_, dir, _ := damagedRepo(t)
		must(t, os.Remove(largestPack(t, dir)))
		err := restoreInto(t, dir)
		if !Unusable(err) || !strings.Contains(err.Error(), "data/") {
			t.Fatalf("restore: %v; want an unusable snapshot naming the pack", err)
		}
		r, _ := Open(ctx, openFileStore(t, dir), Password(testPassword))
		rep, err := r.Check(ctx, CheckOptions{})
		must(t, err)
		if rep.OK() || len(rep.Damaged) != 1 || !strings.Contains(rep.Errors[0].Error(), "missing") {
			t.Fatalf("check: %+v; want a missing pack and the snapshot damaged", rep)
		}
	})
	t.Run("truncated blob", func(t *testing.T) {
		_, dir, _ := damagedRepo(t)
		p := largestPack(t, dir)
		must(t, os.Truncate(p, mustSize(t, p)/2))
		err := restoreInto(t, dir)
		if !errors.Is(err, ErrDamaged) {
			t.Fatalf("restore: %v; want ErrDamaged", err)
		}
		r, _ := Open(ctx, openFileStore(t, dir), Password(testPassword))
		rep, err := r.Check(ctx, CheckOptions{})
		must(t, err)
		if rep.OK() || !strings.Contains(rep.Errors[0].Error(), "truncated") {
			t.Fatalf("check: %+v; want a truncated pack", rep)
		}
	})
}

// largestPack is the path of the repository's largest pack (file content).
func largestPack(t *testing.T, dir string) string {
	var data string
	for _, p := range repoFiles(t, dir, PackFile) {
		if data == "" || mustSize(t, p) > mustSize(t, data) {
			data = p
		}
	}
	return data
}

func mustSize(t *testing.T, p string) int64 {
	fi, err := os.Stat(p)
	must(t, err)
	return fi.Size()
}

func TestKey_SealOpen(t *testing.T) {
	k, err := newRandomKey()
	must(t, err)
	for _, n := range []int{0, 1, 15, 16, 17, 1 << 20} {
		msg := make([]byte, n)
		for i := range msg {
			msg[i] = byte(i)
		}
		sealed := k.Seal(nil, msg)
		if len(sealed) != n+extension {
			t.Fatalf("sealed %d bytes to %d", n, len(sealed))
		}
		got, err := k.Open(nil, sealed)
		if err != nil || string(got) != string(msg) {
			t.Fatalf("open %d: %v", n, err)
		}
		sealed[len(sealed)/2] ^= 1
		if _, err := k.Open(nil, sealed); !errors.Is(err, ErrUnauthenticated) {
			t.Fatalf("open of a flipped bit: %v", err)
		}
	}
	other, _ := newRandomKey()
	if _, err := other.Open(nil, k.Seal(nil, []byte("x"))); !errors.Is(err, ErrUnauthenticated) {
		t.Fatalf("open with another key: %v", err)
	}
}
