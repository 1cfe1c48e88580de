package jobs

import (
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"

	"snapvisor/config"
	"snapvisor/internal/testutil"
	"snapvisor/rotation"
	"snapvisor/snapshot"
)

// wantConfigError fails unless err is a *config.Error for variable name.
func wantConfigError(t *testing.T, err error, name string) {
	t.Helper()
	var ce *config.Error
	if !errors.As(err, &ce) || ce.Var != name {
		t.Fatalf("error %v, want a *config.Error for %s", err, name)
	}
}

// chownOther gives p to uid 2171 (another user); it needs root.
func chownOther(t *testing.T, p string) {
	t.Helper()
	if err := os.Lchown(p, 2171, 2171); err != nil {
		testutil.Unavailable(t, "chown (needs root): %v", err)
	}
}

func listenRunner(t *testing.T, cfg Config, dir string) *Runner {
	t.Helper()
	snap := snapshot.Config{Sources: []string{filepath.Join(dir, "data")}, Dir: filepath.Join(dir, "backups"), Name: "snapshot", Compression: "gzip"}
	return NewRunner(cfg, snap, rotation.Policy{Keep: 1}, nil, nil, zaptest.NewLogger(t), nil)
}

// TestRunner_Listen: only a stale socket at SNAPVISOR_CONTROL_SOCKET is ever
// replaced; a regular file or a directory there is a configuration error and
// stays as it was. A metrics address that cannot be used here is a
// configuration error, a busy port is not.
func TestRunner_Listen(t *testing.T) {
	t.Run("regular file", func(t *testing.T) {
		dir := t.TempDir()
		p := filepath.Join(dir, "precious.txt")
		if err := os.WriteFile(p, []byte("precious"), 0o644); err != nil {
			t.Fatal(err)
		}
		_, err := listenRunner(t, Config{ControlSocket: p}, dir).Listen()
		wantConfigError(t, err, "SNAPVISOR_CONTROL_SOCKET")
		if b, err := os.ReadFile(p); err != nil || string(b) != "precious" {
			t.Fatalf("the file at the socket path: %q, %v", b, err)
		}
	})
	t.Run("directory", func(t *testing.T) {
		dir := t.TempDir()
		p := filepath.Join(dir, "sock")
		if err := os.MkdirAll(filepath.Join(p, "keep"), 0o755); err != nil {
			t.Fatal(err)
		}
		_, err := listenRunner(t, Config{ControlSocket: p}, dir).Listen()
		wantConfigError(t, err, "SNAPVISOR_CONTROL_SOCKET")
		if _, err := os.Stat(filepath.Join(p, "keep")); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("stale socket replaced, live one refused", func(t *testing.T) {
		dir := t.TempDir()
		p := filepath.Join(dir, "ctl.sock")
		stale, err := net.ListenUnix("unix", &net.UnixAddr{Name: p, Net: "unix"})
		if err != nil {
			t.Fatal(err)
		}
		stale.SetUnlinkOnClose(false)
		stale.Close()
		r := listenRunner(t, Config{ControlSocket: p}, dir)
		l, err := r.Listen()
		if err != nil {
			t.Fatalf("Listen over a stale socket: %v", err)
		}
		defer l.Close()
		var ce *config.Error
		if _, err := r.Listen(); err == nil || errors.As(err, &ce) || !strings.Contains(err.Error(), "already listening") {
			t.Fatalf("second Listen = %v, want a plain error: another snapvisor is listening", err)
		}
	})
	t.Run("metrics address", func(t *testing.T) {
		busy, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer busy.Close()
		for _, tc := range []struct {
			addr   string
			config bool
		}{
			{"192.0.2.1:9150", true}, // not an address of this host
			{busy.Addr().String(), false},
		} {
			dir := t.TempDir()
			_, err := listenRunner(t, Config{ControlSocket: filepath.Join(dir, "ctl.sock"), MetricsAddr: tc.addr}, dir).Listen()
			var ce *config.Error
			if err == nil || errors.As(err, &ce) != tc.config {
				t.Errorf("Listen(metrics %s) = %v, want a configuration error: %v", tc.addr, err, tc.config)
			}
			if _, serr := os.Stat(filepath.Join(dir, "ctl.sock")); serr == nil {
				t.Errorf("Listen(metrics %s) failed but left the control socket", tc.addr)
			}
		}
	})
	t.Run("snapshot directory not writable", func(t *testing.T) {
		dir := t.TempDir()
		r := listenRunner(t, Config{ControlSocket: filepath.Join(dir, "ctl.sock")}, dir)
		r.snap.Dir = "/proc/snapvisor-backups"
		_, err := r.Listen()
		wantConfigError(t, err, "SNAPVISOR_DIR")
	})
}

func TestBadAddress(t *testing.T) {
	for _, tc := range []struct {
		name string
		err  error
		want bool
	}{
		{"busy", &net.OpError{Op: "listen", Err: os.NewSyscallError("bind", syscall.EADDRINUSE)}, false},
		{"not here", &net.OpError{Op: "listen", Err: os.NewSyscallError("bind", syscall.EADDRNOTAVAIL)}, true},
		{"no such host", &net.OpError{Op: "listen", Err: &net.DNSError{Err: "no such host", Name: "x.invalid", IsNotFound: true}}, true},
		{"DNS timeout", &net.OpError{Op: "listen", Err: &net.DNSError{Err: "i/o timeout", Name: "x", IsTimeout: true}}, false},
	} {
		if got := badAddress(tc.err); got != tc.want {
			t.Errorf("%s: badAddress = %v, want %v", tc.name, got, tc.want)
		}
	}
}

// TestDefaultSocket: the default control socket lives in the first candidate
// directory private to the uid (created 0700 by the server); directories of
// another uid, group- or world-writable ones and symlinks are never used.
func TestDefaultSocket(t *testing.T) {
	uid := os.Geteuid()
	setup := func(t *testing.T) (root string, dirs []string) {
		root = t.TempDir()
		return root, []string{filepath.Join(root, "run", "snapvisor"), filepath.Join(root, "xdg", "snapvisor"), filepath.Join(root, "tmp", "snapvisor-0")}
	}
	t.Run("server creates the first, client finds it", func(t *testing.T) {
		_, dirs := setup(t)
		if p, err := defaultSocket(dirs, uid, false); err != nil || p != filepath.Join(dirs[0], socketName) {
			t.Fatalf("client before any server: %q, %v", p, err)
		}
		p, err := defaultSocket(dirs, uid, true)
		if err != nil || p != filepath.Join(dirs[0], socketName) {
			t.Fatalf("server: %q, %v", p, err)
		}
		fi, err := os.Stat(dirs[0])
		if err != nil || fi.Mode().Perm() != 0o700 {
			t.Fatalf("created %v, %v; want mode 0700", fi.Mode(), err)
		}
		if c, err := defaultSocket(dirs, uid, false); err != nil || c != p {
			t.Fatalf("client: %q, %v; want %q", c, err, p)
		}
	})
	t.Run("first cannot be created", func(t *testing.T) {
		root, dirs := setup(t)
		if err := os.WriteFile(filepath.Join(root, "run"), nil, 0o644); err != nil { // like a read-only /run
			t.Fatal(err)
		}
		p, err := defaultSocket(dirs, uid, true)
		if err != nil || p != filepath.Join(dirs[1], socketName) {
			t.Fatalf("server: %q, %v; want the second", p, err)
		}
		if c, err := defaultSocket(dirs, uid, false); err != nil || c != p {
			t.Fatalf("client: %q, %v; want %q", c, err, p)
		}
	})
	t.Run("first belongs to another uid", func(t *testing.T) {
		_, dirs := setup(t)
		if err := os.MkdirAll(dirs[0], 0o700); err != nil {
			t.Fatal(err)
		}
		chownOther(t, dirs[0])
		var na *NoAccessError
		if _, err := defaultSocket(dirs, uid, false); !errors.As(err, &na) || na.Owner != 2171 || !strings.Contains(err.Error(), "run as uid 2171 or root") {
			t.Fatalf("client without a socket of its own = %v, want a *NoAccessError naming uid 2171", err)
		}
		p, err := defaultSocket(dirs, uid, true)
		if err != nil || p != filepath.Join(dirs[1], socketName) {
			t.Fatalf("server: %q, %v; want the second", p, err)
		}
		if c, err := defaultSocket(dirs, uid, false); err != nil || c != p {
			t.Fatalf("client: %q, %v; want %q", c, err, p)
		}
	})
	t.Run("group-writable is skipped", func(t *testing.T) {
		_, dirs := setup(t)
		if err := os.MkdirAll(dirs[0], 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(dirs[0], 0o770); err != nil {
			t.Fatal(err)
		}
		if p, err := defaultSocket(dirs, uid, true); err != nil || p != filepath.Join(dirs[1], socketName) {
			t.Fatalf("server: %q, %v; want the second", p, err)
		}
	})
	for _, tc := range []struct {
		name string
		make func(t *testing.T, last string)
	}{
		{"last owned by another uid", func(t *testing.T, last string) {
			if err := os.MkdirAll(last, 0o700); err != nil {
				t.Fatal(err)
			}
			chownOther(t, last)
		}},
		{"last world-writable", func(t *testing.T, last string) {
			if err := os.MkdirAll(last, 0o700); err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(last, 0o777); err != nil {
				t.Fatal(err)
			}
		}},
		{"last a symlink", func(t *testing.T, last string) {
			other := filepath.Join(filepath.Dir(last), "other")
			if err := os.MkdirAll(other, 0o700); err != nil {
				t.Fatal(err)
			}
			if err := os.Symlink(other, last); err != nil {
				t.Fatal(err)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root, dirs := setup(t)
			dirs = []string{filepath.Join(root, "nowhere", "snapvisor"), dirs[2]}
			if err := os.WriteFile(filepath.Join(root, "nowhere"), nil, 0o644); err != nil {
				t.Fatal(err)
			}
			tc.make(t, dirs[1])
			for _, create := range []bool{true, false} {
				_, err := defaultSocket(dirs, uid, create)
				wantConfigError(t, err, "SNAPVISOR_CONTROL_SOCKET")
			}
		})
	}
}

// TestClient_Errors: the client tells a missing supervisor (so that
// `entrypoint snapshot` runs standalone) from a path that is not a socket
// (a configuration error), and reaches a live server.
func TestClient_Errors(t *testing.T) {
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := NewClient(filepath.Join(dir, "none.sock")).Status(ctx); !errors.Is(err, ErrNoSupervisor) {
		t.Errorf("missing socket: %v, want ErrNoSupervisor", err)
	}
	file := filepath.Join(dir, "file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := NewClient(file).Status(ctx)
	wantConfigError(t, err, "SNAPVISOR_CONTROL_SOCKET")

	sock := filepath.Join(dir, "ctl.sock")
	r := listenRunner(t, Config{ControlSocket: sock, Schedule: "@daily"}, dir)
	l, err := r.Listen()
	if err != nil {
		t.Fatal(err)
	}
	sctx, stop := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- r.Serve(sctx, l, time.Second) }()
	defer func() { stop(); <-served }()
	if st, err := NewClient(sock).Status(ctx); err != nil || st.Schedule != "@daily" {
		t.Fatalf("Status from the live server (as our own uid) = %+v, %v", st, err)
	}
}

// TestConfig_ValidateAddresses: a control socket path too long for a unix
// socket address or naming a directory, and a metrics host that looks like
// an IPv4 address but is none, are configuration errors.
func TestConfig_ValidateAddresses(t *testing.T) {
	base := Config{Schedule: "@daily", Freeze: FreezeNone, Restore: RestoreModeIfEmpty, ExitTimeout: time.Minute,
		HookTimeout: time.Second, FreezeTimeout: time.Minute}
	long := "/tmp/" + strings.Repeat("s", maxSocketPath-len("/tmp/"))
	for _, tc := range []struct {
		name    string
		mod     func(*Config)
		wantVar string
	}{
		{"default socket", func(*Config) {}, ""},
		{"socket of the longest length", func(c *Config) { c.ControlSocket = long }, ""},
		{"socket too long", func(c *Config) { c.ControlSocket = long + "s" }, "SNAPVISOR_CONTROL_SOCKET"},
		{"socket a directory", func(c *Config) { c.ControlSocket = "/tmp/" }, "SNAPVISOR_CONTROL_SOCKET"},
		{"metrics 256.1.1.1", func(c *Config) { c.MetricsAddr = "256.1.1.1:9" }, "SNAPVISOR_METRICS_ADDR"},
		{"metrics host name", func(c *Config) { c.MetricsAddr = "localhost:9150" }, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := base
			tc.mod(&c)
			err := c.Validate()
			if tc.wantVar == "" {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				return
			}
			wantConfigError(t, err, tc.wantVar)
		})
	}
}

// TestConfig_CheckSocket: a configured socket path holding anything but a
// socket is a configuration error before anything runs; missing, a socket
// and the default pass.
func TestConfig_CheckSocket(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(dir, "ctl.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	for _, p := range []string{"", filepath.Join(dir, "none.sock"), sock} {
		if err := (Config{ControlSocket: p}).CheckSocket(); err != nil {
			t.Errorf("CheckSocket(%q) = %v", p, err)
		}
	}
	for _, p := range []string{file, dir} {
		wantConfigError(t, Config{ControlSocket: p}.CheckSocket(), "SNAPVISOR_CONTROL_SOCKET")
	}
}
