// Package storetest starts the real storage servers the tests of several
// packages need (store, cmd/entrypoint), on 127.0.0.1, each with its own
// free port and temporary directory, stopped by PID in t.Cleanup. The
// executables come from scripts/servers.sh install (MinIO, fake-gcs-server,
// Azurite under $SNAPVISOR_TOOLS or ~/.cache/snapvisor-tools; sshd and
// redis-server from Debian's openssh-server and redis-server).
//
// A server that is not installed: with CI=true (or SNAPVISOR_TEST_INSTALL=1)
// the test installs it through the script, and fails if it cannot; otherwise
// it skips, saying how to install. A server that is installed but does not
// start always fails the test.
//
// Backends (backends.go) opens each store kind on its server for suites
// that run against all of them (store, remote). It is imported by tests only.
package storetest

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"snapvisor/internal/testutil"
)

// MinIO's credentials in the tests.
const (
	MinIOUser     = "snapvisor"
	MinIOPassword = "snapvisor-secret-key"
)

var installMu sync.Mutex

// repoRoot finds the module root (the directory with go.mod) above the working directory.
func repoRoot(t testing.TB) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for d := dir; ; d = filepath.Dir(d) {
		if _, err := os.Stat(filepath.Join(d, "go.mod")); err == nil {
			return d
		}
		if filepath.Dir(d) == d {
			t.Fatalf("no go.mod above %s", dir)
		}
	}
}

// Tool returns the executable of server (minio, gcs, azurite, sshd, redis), installing it when allowed.
func Tool(t testing.TB, server string) string {
	t.Helper()
	script := filepath.Join(repoRoot(t), "scripts", "servers.sh")
	out, err := exec.Command(script, "path", server).Output()
	if err != nil {
		t.Fatalf("scripts/servers.sh path %s: %v", server, err)
	}
	bin := strings.TrimSpace(string(out))
	if isExecutable(bin) {
		return bin
	}
	if !testutil.InCI() && os.Getenv("SNAPVISOR_TEST_INSTALL") != "1" {
		testutil.Unavailable(t, "%s is not installed (%s): run scripts/servers.sh install %s, or set SNAPVISOR_TEST_INSTALL=1", server, bin, server)
	}
	installMu.Lock()
	defer installMu.Unlock()
	if !isExecutable(bin) {
		t.Logf("installing %s with scripts/servers.sh install %s (minutes when cold)", server, server)
		cmd := exec.Command(script, "install", server)
		var buf bytes.Buffer
		cmd.Stdout, cmd.Stderr = &buf, &buf
		if err := cmd.Run(); err != nil {
			testutil.Unavailable(t, "scripts/servers.sh install %s failed: %v\n%s", server, err, buf.String())
		}
	}
	if !isExecutable(bin) {
		testutil.Unavailable(t, "%s still missing after install", bin)
	}
	return bin
}

func isExecutable(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0
}

// FreePort returns a TCP port on 127.0.0.1 that nothing listens on (now).
func FreePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// DeadAddr returns a 127.0.0.1 address where nothing listens, until the
// test ends: its port is held by a socket bound to it that does not listen
// (connections are refused), so that no other process can listen there in
// the meantime (a port FreePort returns is free only until something binds it).
func DeadAddr(t testing.TB) string {
	t.Helper()
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { syscall.Close(fd) })
	if err := syscall.Bind(fd, &syscall.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		t.Fatal(err)
	}
	sa, err := syscall.Getsockname(fd)
	if err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("127.0.0.1:%d", sa.(*syscall.SockaddrInet4).Port)
}

// HungAddr returns a 127.0.0.1 address that accepts TCP connections and
// never answers on them; they are closed at the end of the test.
func HungAddr(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var held []net.Conn
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			held = append(held, c) // read nothing, answer nothing
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		l.Close()
		mu.Lock()
		for _, c := range held {
			c.Close()
		}
		mu.Unlock()
	})
	return l.Addr().String()
}

// PortOf returns the port of host:port.
func PortOf(addr string) string {
	_, p, _ := net.SplitHostPort(addr)
	return p
}

// Proc is a server process started by a test.
type Proc struct {
	Name string
	Cmd  *exec.Cmd
	Out  *SyncBuffer // its stdout and stderr (the first MiB)
	done chan struct{}
}

// SyncBuffer collects output from several goroutines, up to 1 MiB.
type SyncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *SyncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.b.Len() > 1<<20 {
		return len(p), nil
	}
	return s.b.Write(p)
}

func (s *SyncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// StartProc starts bin in its own process group (killed with the test process).
func StartProc(t testing.TB, name string, env []string, bin string, args ...string) *Proc {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), env...)
	out := &SyncBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	p := &Proc{Name: name, Cmd: cmd, Out: out, done: make(chan struct{})}
	go func() { cmd.Wait(); close(p.done) }()
	return p
}

// Stop ends the process (and its process group) by PID: TERM, then KILL after grace.
func (p *Proc) Stop(grace time.Duration) {
	select {
	case <-p.done:
		return
	default:
	}
	pid := p.Cmd.Process.Pid
	if grace > 0 {
		_ = syscall.Kill(-pid, syscall.SIGTERM)
		select {
		case <-p.done:
			return
		case <-time.After(grace):
		}
	}
	_ = syscall.Kill(-pid, syscall.SIGKILL)
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
	}
}

// Exited reports whether the process has ended.
func (p *Proc) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// WaitReady polls check until it succeeds; the test fails when the process
// exits or the timeout passes first.
func WaitReady(t testing.TB, p *Proc, timeout time.Duration, check func() error) {
	t.Helper()
	if err := waitReady(p, "", timeout, check); err != nil {
		t.Fatal(err)
	}
}

// errPortTaken: a server could not listen on its port: another process
// listens there.
var errPortTaken = errors.New("another process took its port")

// waitReady polls check until it succeeds and (addr not "") the process
// itself listens on addr's port: a check that reaches another process's
// listener there does not count. It fails, the process stopped, when the
// process exits or the timeout passes first, or another process listens on
// the port (errPortTaken).
func waitReady(p *Proc, addr string, timeout time.Duration, check func() error) error {
	port := 0
	if addr != "" {
		port, _ = strconv.Atoi(PortOf(addr))
	}
	deadline := time.Now().Add(timeout)
	var err error
	for time.Now().Before(deadline) {
		if err = check(); err == nil {
			if port == 0 {
				return nil
			}
			switch listenerOf(p.Cmd.Process.Pid, port) {
			case listenerOurs:
				return nil
			case listenerOther:
				p.Stop(0)
				return fmt.Errorf("%s: %w (%s): the readiness check reached that one", p.Name, errPortTaken, addr)
			}
			err = errors.New("the check passed, but nothing listens on " + addr)
		}
		if p.Exited() {
			if port != 0 && (listenerOf(0, port) == listenerOther || portInUse(p.Out.String())) {
				return fmt.Errorf("%s exited at start-up: %w (%s)\n%s", p.Name, errPortTaken, addr, p.Out.String())
			}
			return fmt.Errorf("%s exited at start-up: %v\n%s", p.Name, p.Cmd.ProcessState, p.Out.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	p.Stop(0)
	return fmt.Errorf("%s not ready after %s: %v\n%s", p.Name, timeout, err, p.Out.String())
}

// portInUse reports whether a server's output says its address was in use.
func portInUse(out string) bool {
	out = strings.ToLower(out)
	return strings.Contains(out, "address already in use") || strings.Contains(out, "eaddrinuse")
}

// onFreePort starts a server with start on a free port of 127.0.0.1 (*addr
// set to it before start runs), and again on another port, 3 times in all,
// while start fails with errPortTaken. FreePort's port is free only until
// another process binds it: a bind to port 0 anywhere on the machine (other
// test processes' FreePort, HungAddr, httptest...) may get it, since the
// kernel hands out the same odd ports of the ephemeral range, at random,
// before the server has bound it (MinIO, Azurite: a second or two).
func onFreePort(t testing.TB, addr *string, start func() error) {
	t.Helper()
	for try := 1; ; try++ {
		*addr = fmt.Sprintf("127.0.0.1:%d", FreePort(t))
		err := start()
		if err == nil {
			return
		}
		if try == 3 || !errors.Is(err, errPortTaken) {
			t.Fatal(err)
		}
		t.Logf("%v\nstarting it again on another port", err)
	}
}

type listener int

const (
	listenerNone  listener = iota // no TCP socket listens on the port
	listenerOurs                  // the process does (or /proc does not tell)
	listenerOther                 // another process does
)

// listenerOf says who listens on TCP port (any address, IPv4 or IPv6): the
// process pid (0: none is ours), another one, or none, from /proc/net/tcp*
// and the process's file descriptors.
func listenerOf(pid, port int) listener {
	inodes := map[string]bool{}
	for _, f := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(b), "\n")[1:] {
			// sl local_address rem_address st tx_queue:rx_queue tr:tm->when retrnsmt uid timeout inode
			fs := strings.Fields(line)
			if len(fs) < 10 || fs[3] != "0A" { // 0A: LISTEN
				continue
			}
			i := strings.LastIndexByte(fs[1], ':')
			if p, err := strconv.ParseUint(fs[1][i+1:], 16, 16); err == nil && int(p) == port {
				inodes[fs[9]] = true
			}
		}
	}
	if len(inodes) == 0 {
		return listenerNone
	}
	if pid == 0 {
		return listenerOther
	}
	dir := fmt.Sprintf("/proc/%d/fd", pid)
	fds, err := os.ReadDir(dir)
	if err != nil {
		return listenerOurs // cannot tell: trust the check
	}
	for _, fd := range fds {
		if l, err := os.Readlink(filepath.Join(dir, fd.Name())); err == nil && strings.HasPrefix(l, "socket:[") &&
			inodes[strings.TrimSuffix(strings.TrimPrefix(l, "socket:["), "]")] {
			return listenerOurs
		}
	}
	return listenerOther
}

// DialCheck is a readiness check: addr accepts TCP connections.
func DialCheck(addr string) func() error {
	return func() error {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err != nil {
			return err
		}
		return c.Close()
	}
}

// MinIO is a MinIO server on 127.0.0.1 that a test can kill and start again
// on the same port and data directory. Credentials: MinIOUser, MinIOPassword.
type MinIO struct {
	Addr string // 127.0.0.1:port
	t    testing.TB
	bin  string
	dir  string
	p    *Proc
}

// StartMinIO starts MinIO; it is killed when the test ends.
func StartMinIO(t testing.TB) *MinIO {
	t.Helper()
	m := &MinIO{t: t, bin: Tool(t, "minio"), dir: t.TempDir()}
	t.Cleanup(m.Kill)
	onFreePort(t, &m.Addr, m.start)
	return m
}

// Start starts MinIO again (on the same port and data) and waits until it is ready.
func (m *MinIO) Start() {
	m.t.Helper()
	if err := m.start(); err != nil {
		m.t.Fatal(err)
	}
}

func (m *MinIO) start() error {
	m.t.Helper()
	m.p = StartProc(m.t, "minio", []string{"MINIO_ROOT_USER=" + MinIOUser, "MINIO_ROOT_PASSWORD=" + MinIOPassword,
		"MINIO_BROWSER=off", "MINIO_UPDATE=off"}, m.bin, "server", "--quiet", "--address", m.Addr, m.dir)
	hc := &http.Client{Timeout: time.Second}
	return waitReady(m.p, m.Addr, 60*time.Second, func() error {
		resp, err := hc.Get("http://" + m.Addr + "/minio/health/ready")
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			return errors.New("health: " + resp.Status)
		}
		// Ready can come before the object layer is: the S3 API then
		// answers 503 XMinioServerNotInitialized (seen under load). An
		// anonymous request gets 403 once it is initialised.
		resp, err = hc.Get("http://" + m.Addr + "/readiness-probe/key")
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode == http.StatusServiceUnavailable {
			return errors.New("S3 API: " + resp.Status)
		}
		return nil
	})
}

// Kill stops MinIO at once (SIGKILL: a crash, not a shutdown).
func (m *MinIO) Kill() {
	if m.p != nil {
		m.p.Stop(0)
	}
}

// URL is the s3:// remote URL of bucket/prefix on this server.
func (m *MinIO) URL(bucket, prefix string) string {
	return fmt.Sprintf("s3://%s/%s?endpoint=%s&tls=false&region=us-east-1", bucket, prefix, m.Addr)
}

// Env is the environment giving a snapvisor process MinIO's credentials.
func (m *MinIO) Env() []string {
	return []string{"AWS_ACCESS_KEY_ID=" + MinIOUser, "AWS_SECRET_ACCESS_KEY=" + MinIOPassword}
}
