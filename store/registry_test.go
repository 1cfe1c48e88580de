package store

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"snapvisor/config"
)

// TestRegistry: the registered backends give the lists users see exactly as
// they read when the generic code named every backend.
func TestRegistry(t *testing.T) {
	t.Run("accepted URLs", func(t *testing.T) {
		const want = "comma-separated URLs: file:///path, s3://bucket/prefix?endpoint=host:port&region=R&tls=false, " +
			"sftp://user@host:port/path, azure://container/prefix, gs://bucket/prefix, " +
			"redis://[user@]host:port/DB?prefix=P, rediss://[user@]host:port/DB?prefix=P (TLS), postgres://user@host:port/db?sslmode=require&table=snapvisor_objects, sqlite:///path/to/file.db"
		if got := acceptedURLs(); got != want {
			t.Errorf("acceptedURLs() = %q, want %q", got, want)
		}
		var ce *config.Error
		if _, err := parseRemote("ftp://host/x"); !errors.As(err, &ce) || ce.Accepted != want {
			t.Errorf("parseRemote(ftp://...) = %v, want a config error accepting %q", err, want)
		}
	})
	t.Run("credentials", func(t *testing.T) {
		for scheme, want := range map[string]string{
			"file":       "see entrypoint env",
			"s3":         "AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY",
			"sftp":       "SNAPVISOR_SFTP_KEY_FILE or SNAPVISOR_SFTP_PASSWORD",
			"azure":      "AZURE_STORAGE_CONNECTION_STRING, e.g. BlobEndpoint=URL;SharedAccessSignature=TOKEN, or AZURE_STORAGE_ACCOUNT and AZURE_STORAGE_KEY",
			"gs":         "GOOGLE_APPLICATION_CREDENTIALS",
			"redis":      "SNAPVISOR_REDIS_PASSWORD (with the URL's user for an ACL user)",
			"postgres":   "SNAPVISOR_POSTGRES_PASSWORD, or a line of PGPASSFILE",
			"postgresql": "SNAPVISOR_POSTGRES_PASSWORD, or a line of PGPASSFILE",
			"sqlite":     "see entrypoint env",
			"ftp":        "see entrypoint env",
		} {
			if got := credentialVars(scheme); got != want {
				t.Errorf("credentialVars(%q) = %q, want %q", scheme, got, want)
			}
		}
	})
	t.Run("stream buffer", func(t *testing.T) {
		if got := maxStreamBuffer(); got != 32<<20 { // s3's two 16 MiB parts
			t.Errorf("maxStreamBuffer() = %d, want %d", got, 32<<20)
		}
		for _, b := range registered() {
			if b.streamBuffer <= 0 || b.streamBuffer > maxStreamBuffer() {
				t.Errorf("backend %s: stream buffer %d", b.scheme, b.streamBuffer)
			}
		}
		dir := t.TempDir()
		if got := StreamBuffer(mustOpen(t, "file://"+dir, Config{})); got != backends["file"].streamBuffer {
			t.Errorf("StreamBuffer(file store) = %d, want the backend's %d", got, backends["file"].streamBuffer)
		}
	})
	t.Run("unknown scheme", func(t *testing.T) {
		_, err := Open(context.Background(), "ftp://host/x", Config{}, nil)
		var ce *config.Error
		if !errors.As(err, &ce) || ce.Var != "SNAPVISOR_REMOTES" || !strings.Contains(err.Error(), `unknown scheme "ftp"`) {
			t.Errorf("Open(ftp://...) = %v, want a SNAPVISOR_REMOTES config error", err)
		}
	})
}

// TestRegistry_BuildTags: a build tag leaves a backend out of the binary
// (//go:build !snapvisor_no_<scheme> on its file); its URLs are then a
// configuration error (exit 78 naming SNAPVISOR_REMOTES and what the binary
// accepts), not a panic, and the other backends still work.
func TestRegistry_BuildTags(t *testing.T) {
	gobin, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("the go command is needed to build the entrypoint: %v", err)
	}
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		tags     string
		url      string // refused (were it not, its server is on the loopback: nothing is reached)
		accepted string // the accepted-URL list of that binary
	}{
		{"snapvisor_no_azure", "azure://container/prefix?endpoint=http://127.0.0.1:1/acct", "accepted: comma-separated URLs: file:///path, s3://bucket/prefix?endpoint=host:port&region=R&tls=false, sftp://user@host:port/path, gs://bucket/prefix, redis://[user@]host:port/DB?prefix=P, rediss://[user@]host:port/DB?prefix=P (TLS), postgres://user@host:port/db?sslmode=require&table=snapvisor_objects, sqlite:///path/to/file.db\n"},
		{"snapvisor_no_s3,snapvisor_no_sftp,snapvisor_no_azure,snapvisor_no_gs,snapvisor_no_redis,snapvisor_no_postgres,snapvisor_no_sqlite", "s3://bucket/prefix?endpoint=127.0.0.1:1&tls=false", "accepted: comma-separated URLs: file:///path\n"},
	} {
		t.Run(tc.tags, func(t *testing.T) {
			bin := filepath.Join(t.TempDir(), "entrypoint")
			build := exec.Command(gobin, "build", "-trimpath", "-tags", tc.tags, "-o", bin, "./cmd/entrypoint")
			build.Dir, build.Env = root, append(os.Environ(), "CGO_ENABLED=0")
			if out, err := build.CombinedOutput(); err != nil {
				t.Fatalf("go build -tags %s: %v\n%s", tc.tags, err, out)
			}
			run := func(args ...string) (int, string) {
				cmd := exec.Command(bin, args...)
				cmd.Dir, cmd.Env = t.TempDir(), []string{"PATH=" + os.Getenv("PATH"), "HOME=" + t.TempDir(), "SNAPVISOR_REMOTE_RETRIES=0"}
				out, err := cmd.CombinedOutput()
				var ee *exec.ExitError
				if err != nil && !errors.As(err, &ee) {
					t.Fatalf("%s %v: %v", bin, args, err)
				}
				return cmd.ProcessState.ExitCode(), string(out)
			}
			code, out := run("list", "--remote", tc.url)
			if code != 78 || !strings.Contains(out, "SNAPVISOR_REMOTES") ||
				!strings.Contains(out, "not built into this binary") || !strings.HasSuffix(out, tc.accepted) {
				t.Errorf("list --remote %s: exit %d, output:\n%s\nwant exit 78, a SNAPVISOR_REMOTES error ending %q", tc.url, code, out, tc.accepted)
			}
			if code, out := run("list", "--remote", "file://"+t.TempDir()); code != 0 {
				t.Errorf("list --remote file://...: exit %d, output:\n%s", code, out)
			}
		})
	}
}
