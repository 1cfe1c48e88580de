//go:build !initonly

package main

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestCmdVerify_AllReportsBadChecksums: a snapshot whose .sha256 is empty,
// damaged or missing is not left out of verify --all (as List leaves it out)
// but reported as FAILED, and the exit code is non-zero.
func TestCmdVerify_AllReportsBadChecksums(t *testing.T) {
	ctx := context.Background()
	f := newSnapFixture(t)
	if err := cmdSnapshot(ctx, f.a, nil); err != nil {
		t.Fatal(err)
	}
	good := filepath.Base(strings.TrimSpace(f.out.String()))
	broken := map[string]func(sum string) error{
		"snapshot-29990101T000000Z.tar.gz": func(sum string) error { return os.WriteFile(sum, nil, 0o600) },
		"snapshot-29980101T000000Z.tar.gz": func(sum string) error { return os.WriteFile(sum, []byte("garbage\n"), 0o600) },
		"snapshot-29970101T000000Z.tar.gz": os.Remove,
	}
	for name, damage := range broken {
		p := copyAs(t, filepath.Join(f.dir, good), name)
		if err := damage(p + ".sha256"); err != nil {
			t.Fatal(err)
		}
	}

	t.Run("All", func(t *testing.T) {
		f.out.Reset()
		err := cmdVerify(ctx, f.a, []string{"--all"})
		if err == nil || !strings.Contains(err.Error(), "3 of 4") {
			t.Fatalf("verify --all = %v, want 3 of 4 failed; printed:\n%s", err, f.out)
		}
		for name := range broken {
			if !strings.Contains(f.out.String(), "FAILED "+name+": ") {
				t.Errorf("verify --all did not report %s as FAILED:\n%s", name, f.out)
			}
		}
		if !strings.Contains(f.out.String(), "OK     "+good) {
			t.Errorf("verify --all did not report %s as OK:\n%s", good, f.out)
		}
	})

	t.Run("Newest", func(t *testing.T) {
		f.out.Reset()
		if err := cmdVerify(ctx, f.a, nil); err == nil || !strings.HasPrefix(f.out.String(), "FAILED snapshot-29990101T000000Z.tar.gz") {
			t.Fatalf("verify = %v, printed %q; want the newest archive (empty checksum file) reported", err, f.out)
		}
	})

	t.Run("ExitCode", func(t *testing.T) {
		cmd := exec.Command(binPath, "verify", "--all")
		cmd.Env = append(os.Environ(), "SNAPVISOR_DIR="+f.dir, "SNAPVISOR_SOURCE="+f.src, "SNAPVISOR_LOG_FORMAT=console")
		out, err := cmd.CombinedOutput()
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 1 {
			t.Fatalf("entrypoint verify --all = %v, want exit 1; output:\n%s", err, out)
		}
	})
}

// TestCmdVerify_ExitCodes runs the real binary: a damaged snapshot is a
// failure (1) naming the file and the fault once (the FAILED line, not the
// same error again as a log line); a bad flag is a usage error (64).
func TestCmdVerify_ExitCodes(t *testing.T) {
	f := newSnapFixture(t)
	if err := cmdSnapshot(context.Background(), f.a, nil); err != nil {
		t.Fatal(err)
	}
	path := strings.TrimSpace(f.out.String())
	b, _ := os.ReadFile(path)
	b[len(b)/2] ^= 1
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	env := append(os.Environ(), "SNAPVISOR_DIR="+f.dir, "SNAPVISOR_SOURCE="+f.src, "SNAPVISOR_LOG_FORMAT=console")
	cases := []struct {
		name   string
		args   []string
		code   int
		stderr []string
	}{
		{"Damaged", []string{"verify", filepath.Base(path)}, 1, []string{"FAILED " + filepath.Base(path), "checksum mismatch"}},
		{"BadFlag", []string{"list", "--bogus"}, 64, []string{"flag provided but not defined"}},
		{"OK", []string{"list"}, 0, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cmd := exec.Command(binPath, tc.args...)
			cmd.Env = env
			var stderr bytes.Buffer // with stdout: each message once, wherever it goes
			cmd.Stdout, cmd.Stderr = &stderr, &stderr
			err := cmd.Run()
			code := 0
			var ee *exec.ExitError
			if errors.As(err, &ee) {
				code = ee.ExitCode()
			} else if err != nil {
				t.Fatal(err)
			}
			if code != tc.code {
				t.Fatalf("%v: exit %d, want %d; stderr:\n%s", tc.args, code, tc.code, &stderr)
			}
			for _, s := range tc.stderr {
				if !strings.Contains(stderr.String(), s) {
					t.Errorf("%v: output lacks %q:\n%s", tc.args, s, &stderr)
				}
			}
			if n := strings.Count(stderr.String(), "checksum mismatch"); tc.name == "Damaged" && n != 1 {
				t.Errorf("%v: the failure is printed %d times, want once:\n%s", tc.args, n, &stderr)
			}
		})
	}
}
