package store

// Real servers for the tests, each started by the test that needs it on a free
// 127.0.0.1 port with its own temporary directory, and stopped (by PID) in
// t.Cleanup. The executables come from scripts/servers.sh install (MinIO,
// fake-gcs-server, Azurite under $SNAPVISOR_TOOLS or ~/.cache/snapvisor-tools;
// sshd from Debian's openssh-server).
//
// A server that is not installed: with CI=true (or SNAPVISOR_TEST_INSTALL=1)
// the test installs it through the script, and fails if it cannot; otherwise
// it skips, saying how to install. A server that is installed but does not
// start always fails the test.

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"snapvisor/config"
)

const (
	minioUser     = "snapvisor"
	minioPassword = "snapvisor-secret-key"
	azuriteAcct   = "devstoreaccount1"
	azuriteKey    = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
)

func inCI() bool { return os.Getenv("CI") == "true" }

// unavailable fails the test in CI and skips it elsewhere.
func unavailable(t *testing.T, format string, args ...any) {
	t.Helper()
	msg := fmt.Sprintf(format, args...)
	if inCI() {
		t.Fatalf("CI=true and %s", msg)
	}
	t.Skipf("%s (with CI=true this fails)", msg)
}

var installMu sync.Mutex

// tool returns the executable of server (minio, gcs, azurite, sshd), installing it when allowed.
func tool(t *testing.T, server string) string {
	t.Helper()
	script, err := filepath.Abs("../scripts/servers.sh")
	if err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(script, "path", server).Output()
	if err != nil {
		t.Fatalf("scripts/servers.sh path %s: %v", server, err)
	}
	bin := strings.TrimSpace(string(out))
	if isExecutable(bin) {
		return bin
	}
	if !inCI() && os.Getenv("SNAPVISOR_TEST_INSTALL") != "1" {
		unavailable(t, "%s is not installed (%s): run scripts/servers.sh install %s, or set SNAPVISOR_TEST_INSTALL=1", server, bin, server)
	}
	installMu.Lock()
	defer installMu.Unlock()
	if !isExecutable(bin) {
		t.Logf("installing %s with scripts/servers.sh install %s (minutes when cold)", server, server)
		cmd := exec.Command(script, "install", server)
		var buf bytes.Buffer
		cmd.Stdout, cmd.Stderr = &buf, &buf
		if err := cmd.Run(); err != nil {
			unavailable(t, "scripts/servers.sh install %s failed: %v\n%s", server, err, buf.String())
		}
	}
	if !isExecutable(bin) {
		unavailable(t, "%s still missing after install", bin)
	}
	return bin
}

func isExecutable(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// proc is a server process started by a test.
type proc struct {
	name string
	cmd  *exec.Cmd
	done chan struct{}
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.b.Len() > 1<<20 {
		return len(p), nil
	}
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func startProc(t *testing.T, name string, env []string, bin string, args ...string) (*proc, *syncBuffer) {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), env...)
	out := &syncBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	p := &proc{name: name, cmd: cmd, done: make(chan struct{})}
	go func() { cmd.Wait(); close(p.done) }()
	return p, out
}

// stop ends the process (and its process group) by PID: TERM, then KILL.
func (p *proc) stop(grace time.Duration) {
	select {
	case <-p.done:
		return
	default:
	}
	pid := p.cmd.Process.Pid
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

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// waitReady polls check until it succeeds, the process exits or the timeout passes.
func waitReady(t *testing.T, p *proc, out *syncBuffer, timeout time.Duration, check func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var err error
	for time.Now().Before(deadline) {
		if err = check(); err == nil {
			return
		}
		if p.exited() {
			t.Fatalf("%s exited at start-up: %v\n%s", p.name, p.cmd.ProcessState, out.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	p.stop(0)
	t.Fatalf("%s not ready after %s: %v\n%s", p.name, timeout, err, out.String())
}

func dialCheck(addr string) func() error {
	return func() error {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err != nil {
			return err
		}
		return c.Close()
	}
}

// minioServer is a MinIO on 127.0.0.1 that a test can kill and start again
// on the same port and data directory.
type minioServer struct {
	t    *testing.T
	bin  string
	dir  string
	addr string
	p    *proc
}

func startMinIO(t *testing.T) *minioServer {
	t.Helper()
	m := &minioServer{t: t, bin: tool(t, "minio"), dir: t.TempDir(), addr: fmt.Sprintf("127.0.0.1:%d", freePort(t))}
	m.start()
	t.Cleanup(func() { m.kill() })
	return m
}

func (m *minioServer) start() {
	m.t.Helper()
	p, out := startProc(m.t, "minio", []string{"MINIO_ROOT_USER=" + minioUser, "MINIO_ROOT_PASSWORD=" + minioPassword,
		"MINIO_BROWSER=off", "MINIO_UPDATE=off"}, m.bin, "server", "--quiet", "--address", m.addr, m.dir)
	m.p = p
	hc := &http.Client{Timeout: time.Second}
	waitReady(m.t, p, out, 60*time.Second, func() error {
		resp, err := hc.Get("http://" + m.addr + "/minio/health/ready")
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			return fmt.Errorf("health: %s", resp.Status)
		}
		return nil
	})
}

// kill stops MinIO at once (SIGKILL: a crash, not a shutdown).
func (m *minioServer) kill() {
	if m.p != nil {
		m.p.stop(0)
	}
}

func (m *minioServer) url(bucket, prefix string) string {
	return fmt.Sprintf("s3://%s/%s?endpoint=%s&tls=false&region=us-east-1", bucket, prefix, m.addr)
}

func minioConfig() Config {
	return Config{S3AccessKey: minioUser, S3SecretKey: minioPassword}
}

// sshServer is an sshd on 127.0.0.1 with its own host key, client key and known_hosts.
type sshServer struct {
	addr, user, root string
	keyFile          string
	knownHosts       string
}

func startSSHD(t *testing.T) *sshServer {
	t.Helper()
	bin := tool(t, "sshd")
	dir := t.TempDir()
	u, err := user.Current()
	if err != nil {
		t.Fatal(err)
	}
	s := &sshServer{addr: fmt.Sprintf("127.0.0.1:%d", freePort(t)), user: u.Username, root: filepath.Join(dir, "data")}
	hostPub := writeKey(t, filepath.Join(dir, "host_key"))
	clientPub := writeKey(t, filepath.Join(dir, "client_key"))
	s.keyFile = filepath.Join(dir, "client_key")
	mustWrite(t, filepath.Join(dir, "authorized_keys"), ssh.MarshalAuthorizedKey(clientPub))
	s.knownHosts = filepath.Join(dir, "known_hosts")
	mustWrite(t, s.knownHosts, []byte(fmt.Sprintf("[127.0.0.1]:%s %s", portOf(s.addr), ssh.MarshalAuthorizedKey(hostPub))))
	conf := fmt.Sprintf(`Port %s
ListenAddress 127.0.0.1
HostKey %s
PidFile none
AuthorizedKeysFile %s
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin prohibit-password
UsePAM no
StrictModes no
Subsystem sftp internal-sftp
`, portOf(s.addr), filepath.Join(dir, "host_key"), filepath.Join(dir, "authorized_keys"))
	mustWrite(t, filepath.Join(dir, "sshd_config"), []byte(conf))
	_ = os.MkdirAll("/run/sshd", 0o755)
	p, out := startProc(t, "sshd", nil, bin, "-D", "-e", "-f", filepath.Join(dir, "sshd_config"))
	t.Cleanup(func() { p.stop(5 * time.Second) })
	waitReady(t, p, out, 15*time.Second, dialCheck(s.addr))
	return s
}

func (s *sshServer) url(sub string) string {
	return fmt.Sprintf("sftp://%s@%s%s", s.user, s.addr, filepath.Join(s.root, sub))
}

func (s *sshServer) config() Config {
	return Config{SFTPKeyFile: s.keyFile, SFTPKnownHosts: s.knownHosts}
}

func portOf(addr string) string {
	_, p, _ := net.SplitHostPort(addr)
	return p
}

func writeKey(t *testing.T, file string) ssh.PublicKey {
	t.Helper()
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	block, err := ssh.MarshalPrivateKey(priv, "")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(file, pem.EncodeToMemory(block), 0o600); err != nil {
		t.Fatal(err)
	}
	sp, err := ssh.NewPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return sp
}

func mustWrite(t *testing.T, file string, b []byte) {
	t.Helper()
	if err := os.WriteFile(file, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// startAzurite starts Azurite's blob service and returns its blob endpoint URL.
func startAzurite(t *testing.T) string {
	t.Helper()
	bin := tool(t, "azurite")
	addr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	p, out := startProc(t, "azurite", nil, bin, "--blobHost", "127.0.0.1", "--blobPort", portOf(addr),
		"--location", t.TempDir(), "--skipApiVersionCheck", "--silent", "--loose")
	t.Cleanup(func() { p.stop(3 * time.Second) }) // Azurite ignores TERM: KILL follows
	waitReady(t, p, out, 60*time.Second, dialCheck(addr))
	return "http://" + addr + "/" + azuriteAcct
}

func azureConfig(endpoint string) Config {
	return Config{AzureConnectionString: config.Secret("DefaultEndpointsProtocol=http;AccountName=" + azuriteAcct +
		";AccountKey=" + azuriteKey + ";BlobEndpoint=" + endpoint + ";")}
}

// startFakeGCS starts fake-gcs-server and returns its host:port.
func startFakeGCS(t *testing.T) string {
	t.Helper()
	bin := tool(t, "gcs")
	addr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	p, out := startProc(t, "fake-gcs-server", nil, bin, "-scheme", "http", "-host", "127.0.0.1", "-port", portOf(addr),
		"-backend", "filesystem", "-filesystem-root", t.TempDir(), "-public-host", addr,
		"-external-url", "http://"+addr, "-log-level", "error")
	t.Cleanup(func() { p.stop(3 * time.Second) })
	waitReady(t, p, out, 30*time.Second, dialCheck(addr))
	return addr
}

// deadAddr returns a 127.0.0.1 address where nothing listens.
func deadAddr(t *testing.T) string { return fmt.Sprintf("127.0.0.1:%d", freePort(t)) }

func testCtx(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}
