package store

// Real servers for the tests, started by package storetest (shared with
// cmd/entrypoint's tests): each on a free 127.0.0.1 port with its own
// temporary directory, stopped by PID in t.Cleanup. With CI=true a server that
// is missing or cannot be installed fails the test; elsewhere it skips.
// A server that is installed but does not start always fails the test.

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"fmt"
	"os"
	"os/user"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"snapvisor/config"
	"snapvisor/store/storetest"
)

const (
	minioUser     = storetest.MinIOUser
	minioPassword = storetest.MinIOPassword
	azuriteAcct   = "devstoreaccount1"
	azuriteKey    = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
)

func tool(t *testing.T, server string) string { return storetest.Tool(t, server) }

func freePort(t *testing.T) int { return storetest.FreePort(t) }

// startMinIO starts a MinIO that the test can kill and start again (same port and data).
func startMinIO(t *testing.T) *storetest.MinIO { return storetest.StartMinIO(t) }

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
	p := storetest.StartProc(t, "sshd", nil, bin, "-D", "-e", "-f", filepath.Join(dir, "sshd_config"))
	t.Cleanup(func() { p.Stop(5 * time.Second) })
	storetest.WaitReady(t, p, 15*time.Second, storetest.DialCheck(s.addr))
	return s
}

func (s *sshServer) url(sub string) string {
	return fmt.Sprintf("sftp://%s@%s%s", s.user, s.addr, filepath.Join(s.root, sub))
}

func (s *sshServer) config() Config {
	return Config{SFTPKeyFile: s.keyFile, SFTPKnownHosts: s.knownHosts}
}

func portOf(addr string) string { return storetest.PortOf(addr) }

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
	p := storetest.StartProc(t, "azurite", nil, bin, "--blobHost", "127.0.0.1", "--blobPort", portOf(addr),
		"--location", t.TempDir(), "--skipApiVersionCheck", "--silent", "--loose")
	t.Cleanup(func() { p.Stop(3 * time.Second) }) // Azurite ignores TERM: KILL follows
	storetest.WaitReady(t, p, 60*time.Second, storetest.DialCheck(addr))
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
	p := storetest.StartProc(t, "fake-gcs-server", nil, bin, "-scheme", "http", "-host", "127.0.0.1", "-port", portOf(addr),
		"-backend", "filesystem", "-filesystem-root", t.TempDir(), "-public-host", addr,
		"-external-url", "http://"+addr, "-log-level", "error")
	t.Cleanup(func() { p.Stop(3 * time.Second) })
	storetest.WaitReady(t, p, 30*time.Second, storetest.DialCheck(addr))
	return addr
}

// deadAddr returns a 127.0.0.1 address where nothing listens.
func deadAddr(t *testing.T) string { return storetest.DeadAddr(t) }

func testCtx(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}
