//go:build !initonly

package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"

	"snapvisor/jobs"
	"snapvisor/snapshot"
)

type snapFixture struct {
	a        *app
	out      *bytes.Buffer
	src, dir string
}

func newSnapFixture(t *testing.T) snapFixture {
	t.Helper()
	base := t.TempDir()
	src := filepath.Join(base, "data")
	if err := os.MkdirAll(src, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(src, "file.txt"), []byte("version 1"), 0o644); err != nil {
		t.Fatal(err)
	}
	out := &bytes.Buffer{}
	dir := filepath.Join(base, "backups")
	a := &app{log: zaptest.NewLogger(t, zaptest.Level(zap.WarnLevel)), stdout: out, stderr: out,
		cfg:  &Config{Jobs: jobs.Config{ControlSocket: filepath.Join(base, "no-supervisor.sock")}},
		snap: snapshot.Config{Sources: []string{src}, Dir: dir, Name: "snapshot", Compression: "gzip"}}
	return snapFixture{a: a, out: out, src: src, dir: dir}
}

// copyAs copies a snapshot under another time stamp with a fresh .sha256.
func copyAs(t *testing.T, from, name string) string {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(filepath.Dir(from), name)
	sum := sha256.Sum256(b)
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p+".sha256", []byte(hex.EncodeToString(sum[:])+"  "+name+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestCmdSnapshot(t *testing.T) {
	ctx := context.Background()
	f := newSnapFixture(t)
	if err := cmdSnapshot(ctx, f.a, nil); err != nil {
		t.Fatalf("snapshot: %v", err)
	}
	path := strings.TrimSpace(f.out.String())
	if filepath.Dir(path) != f.dir || !strings.HasSuffix(path, ".tar.gz") {
		t.Fatalf("snapshot printed %q, want the new archive's path", path)
	}

	t.Run("List", func(t *testing.T) {
		f.out.Reset()
		if err := cmdList(ctx, f.a, nil); err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(f.out.String(), "NAME") || !strings.Contains(f.out.String(), filepath.Base(path)) || !strings.Contains(f.out.String(), "gzip") {
			t.Fatalf("list printed:\n%s", f.out)
		}
		f.out.Reset()
		if err := cmdList(ctx, f.a, []string{"--json"}); err != nil {
			t.Fatal(err)
		}
		var list []snapshot.Info
		if err := json.Unmarshal(f.out.Bytes(), &list); err != nil || len(list) != 1 || list[0].Name != filepath.Base(path) || list[0].Size == 0 {
			t.Fatalf("list --json printed %s (%v)", f.out, err)
		}
	})

	t.Run("Verify", func(t *testing.T) {
		for _, args := range [][]string{nil, {"--all"}, {filepath.Base(path)}, {path}} {
			f.out.Reset()
			if err := cmdVerify(ctx, f.a, args); err != nil {
				t.Fatalf("verify %v: %v", args, err)
			}
			if !strings.HasPrefix(f.out.String(), "OK") {
				t.Fatalf("verify %v printed %q", args, f.out)
			}
		}
	})

	t.Run("RestoreLatestSkipsDamaged", func(t *testing.T) {
		newer := copyAs(t, path, "snapshot-29990101T000000Z.tar.gz")
		b, _ := os.ReadFile(newer)
		b[len(b)/2] ^= 1
		if err := os.WriteFile(newer, b, 0o600); err != nil {
			t.Fatal(err)
		}
		f.out.Reset()
		err := cmdVerify(ctx, f.a, []string{"--all"})
		if err == nil || !strings.Contains(f.out.String(), "FAILED snapshot-29990101T000000Z.tar.gz") {
			t.Fatalf("verify --all = %v, printed %q; want the damaged one reported", err, f.out)
		}
		if err := os.WriteFile(filepath.Join(f.src, "file.txt"), []byte("version 2"), 0o644); err != nil {
			t.Fatal(err)
		}
		f.out.Reset()
		if err := cmdRestore(ctx, f.a, []string{"--discard-current"}); err != nil {
			t.Fatalf("restore: %v", err)
		}
		if got, _ := os.ReadFile(filepath.Join(f.src, "file.txt")); string(got) != "version 1" {
			t.Fatalf("restored %q, want version 1", got)
		}
		if strings.TrimSpace(f.out.String()) != path {
			t.Fatalf("restore printed %q, want %s", f.out, path)
		}
		if err := cmdRestore(ctx, f.a, []string{filepath.Base(newer)}); !errors.Is(err, snapshot.ErrChecksum) {
			t.Fatalf("restore of the damaged snapshot = %v, want a checksum error", err)
		}
	})

	t.Run("Usage", func(t *testing.T) {
		cases := []struct {
			cmd  func(context.Context, *app, []string) error
			args []string
		}{
			{cmdSnapshot, []string{"extra"}},
			{cmdList, []string{"--bogus"}},
			{cmdRestore, []string{"a", "b"}},
			{cmdVerify, []string{"--all", "x"}},
		}
		for _, tc := range cases {
			var ue *usageError
			if err := tc.cmd(ctx, f.a, tc.args); !errors.As(err, &ue) {
				t.Errorf("%v: got %v, want a usage error", tc.args, err)
			}
		}
		f.out.Reset()
		if err := cmdRestore(ctx, f.a, []string{"-h"}); err != nil || strings.Count(f.out.String(), "Usage: entrypoint restore") != 1 ||
			!strings.Contains(f.out.String(), "-discard-current") {
			t.Fatalf("restore -h = %v, printed %q; want the usage once", err, f.out)
		}
	})
}
