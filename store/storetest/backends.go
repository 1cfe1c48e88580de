package storetest

import (
	"bytes"
	"context"
	"crypto/ed25519"
	crand "crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"os/user"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/bloberror"
	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
	"go.uber.org/zap"
	"golang.org/x/crypto/ssh"

	"snapvisor/config"
	"snapvisor/snapshot"
	"snapvisor/store"
)

// Azurite's well-known development account.
const (
	AzuriteAccount = "devstoreaccount1"
	AzuriteKey     = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
)

// Backend is one store kind under test, with its server running.
type Backend struct {
	Name string
	// Open returns the bare store for a fresh prefix (bucket or container created).
	Open func(t *testing.T, prefix string) store.Store
	// BadCreds returns a store whose credentials the server refuses, and the secret in use (nil: not applicable).
	BadCreds func(t *testing.T) (store.Store, string)
	// Down returns a store pointing where no server listens.
	Down func(t *testing.T) store.Store
	// LeaveUpload leaves an unfinished upload of key on the store of prefix,
	// as an upload killed midway does (nil: the service cleans them up by itself).
	LeaveUpload func(t *testing.T, prefix, key string)
	// PartsLeft counts the incomplete multipart uploads of key on the store
	// of prefix, as the server lists them (nil: no such thing).
	PartsLeft func(t *testing.T, prefix, key string) int
	// Remote returns the remote URL of a fresh prefix (bucket or container
	// created) and the environment an entrypoint process needs to reach it
	// (credentials, emulator hosts); nil when not filled in.
	Remote func(t *testing.T, prefix string) (rawURL string, env []string)
}

// Backends are the store kinds, each starting its server when called.
var Backends = []struct {
	Name  string
	Start func(*testing.T) Backend
}{{"file", FileBackend}, {"s3", S3Backend}, {"sftp", SFTPBackend}, {"azure", AzureBackend}, {"gs", GCSBackend},
	{"redis", RedisBackend}, {"postgres", PostgresBackend}, {"sqlite", SQLiteBackend}}

var prefixN struct {
	sync.Mutex
	n int
}

// FreshPrefix returns a prefix no other call of this process returned.
func FreshPrefix() string {
	prefixN.Lock()
	defer prefixN.Unlock()
	prefixN.n++
	return "t" + strconv.Itoa(prefixN.n)
}

// Open opens rawURL, closed when the test ends.
func Open(t *testing.T, rawURL string, cfg store.Config) store.Store {
	t.Helper()
	s, err := store.Open(context.Background(), rawURL, cfg, Logger(t))
	if err != nil {
		t.Fatalf("open %s: %v", rawURL, err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// Logger is a development logger with -v, else none.
func Logger(t *testing.T) *zap.Logger {
	if testing.Verbose() {
		l, _ := zap.NewDevelopment()
		return l
	}
	return zap.NewNop()
}

// Ctx is a context ending after d or with the test.
func Ctx(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// MustWrite writes file (0600) or fails the test.
func MustWrite(t *testing.T, file string, b []byte) {
	t.Helper()
	if err := os.WriteFile(file, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// WriteKey writes a new ed25519 private key (OpenSSH PEM) to file and returns its public key.
func WriteKey(t *testing.T, file string) ssh.PublicKey {
	t.Helper()
	pub, priv, err := ed25519.GenerateKey(crand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	block, err := ssh.MarshalPrivateKey(priv, "")
	if err != nil {
		t.Fatal(err)
	}
	MustWrite(t, file, pem.EncodeToMemory(block))
	sp, err := ssh.NewPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return sp
}

// MinIOConfig is the store configuration with MinIO's credentials.
func MinIOConfig() store.Config {
	return store.Config{S3AccessKey: MinIOUser, S3SecretKey: MinIOPassword}
}

// LeaveTemp leaves an upload temporary of key in the directory root, as a
// Put of file:// or sftp:// killed midway does.
func LeaveTemp(t *testing.T, root, key string) {
	t.Helper()
	MustWrite(t, filepath.Join(root, "."+key+".tmp-"+fmt.Sprint(time.Now().UnixNano())), bytes.Repeat([]byte("x"), 64<<10))
}

// FileBackend is file:// in a temporary directory.
func FileBackend(t *testing.T) Backend {
	root := t.TempDir()
	return Backend{
		Name: "file",
		Open: func(t *testing.T, prefix string) store.Store {
			return Open(t, "file://"+filepath.Join(root, prefix), store.Config{})
		},
		LeaveUpload: func(t *testing.T, prefix, key string) { LeaveTemp(t, filepath.Join(root, prefix), key) },
	}
}

// S3Backend is s3:// on MinIO, bucket "snapvisor".
func S3Backend(t *testing.T) Backend {
	m := StartMinIO(t)
	return Backend{
		Name: "s3",
		Open: func(t *testing.T, prefix string) store.Store {
			m.MakeBucket(t, "snapvisor")
			return Open(t, m.URL("snapvisor", prefix), MinIOConfig())
		},
		BadCreds: func(t *testing.T) (store.Store, string) {
			cfg := MinIOConfig()
			cfg.S3SecretKey = "wrong-secret-Xy7Qz"
			return Open(t, m.URL("snapvisor", "bad"), cfg), "wrong-secret-Xy7Qz"
		},
		Down: func(t *testing.T) store.Store {
			return Open(t, fmt.Sprintf("s3://snapvisor/down?endpoint=%s&tls=false&region=us-east-1", DeadAddr(t)), MinIOConfig())
		},
		LeaveUpload: func(t *testing.T, prefix, key string) { m.LeaveMultipart(t, "snapvisor", prefix, key) },
		PartsLeft: func(t *testing.T, prefix, key string) int {
			return m.IncompleteUploads(t, "snapvisor", path.Join(prefix, key))
		},
		Remote: func(t *testing.T, prefix string) (string, []string) {
			m.MakeBucket(t, "snapvisor")
			return m.URL("snapvisor", prefix), m.Env()
		},
	}
}

// IncompleteUploads counts the incomplete multipart uploads of object in bucket.
func (m *MinIO) IncompleteUploads(t *testing.T, bucket, object string) int {
	t.Helper()
	n := 0
	for u := range m.client(t).ListIncompleteUploads(Ctx(t, time.Minute), bucket, object, false) {
		if u.Err != nil {
			t.Fatal(u.Err)
		}
		if u.Key == object {
			n++
		}
	}
	return n
}

// client is a MinIO client with the test credentials.
func (m *MinIO) client(t *testing.T) *minio.Client {
	t.Helper()
	c, err := minio.New(m.Addr, &minio.Options{Creds: credentials.NewStaticV4(MinIOUser, MinIOPassword, ""), Region: "us-east-1"})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// MakeBucket creates bucket if it does not exist.
func (m *MinIO) MakeBucket(t *testing.T, bucket string) {
	t.Helper()
	ctx := Ctx(t, 30*time.Second)
	c := m.client(t)
	if ok, err := c.BucketExists(ctx, bucket); err != nil {
		t.Fatal(err)
	} else if !ok {
		if err := c.MakeBucket(ctx, bucket, minio.MakeBucketOptions{Region: "us-east-1"}); err != nil {
			t.Fatal(err)
		}
	}
}

// LeaveMultipart leaves what an s3:// Put killed midway leaves: its marker
// (".<base>.tmp-multipart" beside the key) and a multipart upload of key
// with one part, under prefix in bucket.
func (m *MinIO) LeaveMultipart(t *testing.T, bucket, prefix, key string) {
	t.Helper()
	ctx := Ctx(t, time.Minute)
	c := m.client(t)
	dir, base := path.Split(key)
	if _, err := c.PutObject(ctx, bucket, path.Join(prefix, dir+"."+base+".tmp-multipart"), bytes.NewReader(nil), 0, minio.PutObjectOptions{}); err != nil {
		t.Fatal(err)
	}
	core := minio.Core{Client: c}
	id, err := core.NewMultipartUpload(ctx, bucket, path.Join(prefix, key), minio.PutObjectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	part := bytes.Repeat([]byte("x"), 5<<20)
	if _, err := core.PutObjectPart(ctx, bucket, path.Join(prefix, key), id, 1, bytes.NewReader(part), int64(len(part)), minio.PutObjectPartOptions{}); err != nil {
		t.Fatal(err)
	}
}

// SSHD is an sshd on 127.0.0.1 with its own host key, client key and known_hosts.
type SSHD struct {
	Addr, User, Root string
	KeyFile          string
	KnownHosts       string
}

// StartSSHD starts sshd (SFTP) serving Root; it is stopped when the test ends.
func StartSSHD(t *testing.T) *SSHD {
	t.Helper()
	bin := Tool(t, "sshd")
	dir := t.TempDir()
	u, err := user.Current()
	if err != nil {
		t.Fatal(err)
	}
	s := &SSHD{User: u.Username, Root: filepath.Join(dir, "data")}
	hostPub := WriteKey(t, filepath.Join(dir, "host_key"))
	clientPub := WriteKey(t, filepath.Join(dir, "client_key"))
	s.KeyFile = filepath.Join(dir, "client_key")
	MustWrite(t, filepath.Join(dir, "authorized_keys"), ssh.MarshalAuthorizedKey(clientPub))
	s.KnownHosts = filepath.Join(dir, "known_hosts")
	_ = os.MkdirAll("/run/sshd", 0o755)
	onFreePort(t, &s.Addr, func() error {
		MustWrite(t, s.KnownHosts, []byte(fmt.Sprintf("[127.0.0.1]:%s %s", PortOf(s.Addr), ssh.MarshalAuthorizedKey(hostPub))))
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
`, PortOf(s.Addr), filepath.Join(dir, "host_key"), filepath.Join(dir, "authorized_keys"))
		MustWrite(t, filepath.Join(dir, "sshd_config"), []byte(conf))
		p := StartProc(t, "sshd", nil, bin, "-D", "-e", "-f", filepath.Join(dir, "sshd_config"))
		t.Cleanup(func() { p.Stop(5 * time.Second) })
		return waitReady(p, s.Addr, 15*time.Second, DialCheck(s.Addr))
	})
	return s
}

// URL is the sftp:// URL of the directory sub of Root.
func (s *SSHD) URL(sub string) string {
	return fmt.Sprintf("sftp://%s@%s%s", s.User, s.Addr, filepath.Join(s.Root, sub))
}

// Config is the store configuration with the client key and known_hosts.
func (s *SSHD) Config() store.Config {
	return store.Config{SFTPKeyFile: s.KeyFile, SFTPKnownHosts: s.KnownHosts}
}

// SFTPBackend is sftp:// on sshd.
func SFTPBackend(t *testing.T) Backend {
	sv := StartSSHD(t)
	return Backend{
		Name: "sftp",
		Open: func(t *testing.T, prefix string) store.Store {
			return Open(t, sv.URL(prefix), sv.Config())
		},
		BadCreds: func(t *testing.T) (store.Store, string) {
			other := filepath.Join(t.TempDir(), "other_key")
			WriteKey(t, other)
			cfg := sv.Config()
			cfg.SFTPKeyFile = other
			cfg.SFTPPassword = "wrong-password-Xy7Qz"
			return Open(t, sv.URL("bad"), cfg), "wrong-password-Xy7Qz"
		},
		Down: func(t *testing.T) store.Store {
			cfg := sv.Config()
			cfg.SFTPInsecureNoHost = true
			return Open(t, fmt.Sprintf("sftp://%s@%s/tmp/x", sv.User, DeadAddr(t)), cfg)
		},
		// sshd runs here: the store's root is a local directory.
		LeaveUpload: func(t *testing.T, prefix, key string) { LeaveTemp(t, filepath.Join(sv.Root, prefix), key) },
	}
}

// StartAzurite starts Azurite's blob service and returns its blob endpoint URL.
func StartAzurite(t *testing.T) string {
	t.Helper()
	bin := Tool(t, "azurite")
	var addr string
	onFreePort(t, &addr, func() error {
		p := StartProc(t, "azurite", nil, bin, "--blobHost", "127.0.0.1", "--blobPort", PortOf(addr),
			"--location", t.TempDir(), "--skipApiVersionCheck", "--silent", "--loose")
		t.Cleanup(func() { p.Stop(3 * time.Second) }) // Azurite ignores TERM: KILL follows
		return waitReady(p, addr, 60*time.Second, DialCheck(addr))
	})
	return "http://" + addr + "/" + AzuriteAccount
}

// AzureConnectionString is the connection string of Azurite's account at endpoint.
func AzureConnectionString(endpoint string) string {
	return "DefaultEndpointsProtocol=http;AccountName=" + AzuriteAccount + ";AccountKey=" + AzuriteKey + ";BlobEndpoint=" + endpoint + ";"
}

// AzureConfig is the store configuration for Azurite at endpoint.
func AzureConfig(endpoint string) store.Config {
	return store.Config{AzureConnectionString: config.Secret(AzureConnectionString(endpoint))}
}

// MakeContainer creates container on Azurite at endpoint if it does not exist.
func MakeContainer(t *testing.T, endpoint, container string) {
	t.Helper()
	c, err := azblob.NewClientFromConnectionString(AzureConnectionString(endpoint), nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.CreateContainer(Ctx(t, 30*time.Second), container, nil); err != nil && !bloberror.HasCode(err, bloberror.ContainerAlreadyExists) {
		t.Fatal(err)
	}
}

// AzureBackend is azure:// on Azurite, container "snapvisor".
func AzureBackend(t *testing.T) Backend {
	endpoint := StartAzurite(t)
	return Backend{
		Name: "azure",
		Open: func(t *testing.T, prefix string) store.Store {
			MakeContainer(t, endpoint, "snapvisor")
			return Open(t, "azure://snapvisor/"+prefix, AzureConfig(endpoint))
		},
		BadCreds: func(t *testing.T) (store.Store, string) {
			wrong := "d3Jvbmcta2V5LVh5N1F6LXdyb25nLWtleS1YeTdRei13cm9uZy1rZXk="
			cfg := store.Config{AzureAccount: AzuriteAccount, AzureKey: config.Secret(wrong), AzureEndpoint: endpoint}
			return Open(t, "azure://snapvisor/bad", cfg), wrong
		},
		Down: func(t *testing.T) store.Store {
			return Open(t, "azure://snapvisor/down", AzureConfig("http://"+DeadAddr(t)+"/"+AzuriteAccount))
		},
	}
}

// StartFakeGCS starts fake-gcs-server and returns its host:port.
func StartFakeGCS(t *testing.T) string {
	t.Helper()
	bin := Tool(t, "gcs")
	var addr string
	onFreePort(t, &addr, func() error {
		p := StartProc(t, "fake-gcs-server", nil, bin, "-scheme", "http", "-host", "127.0.0.1", "-port", PortOf(addr),
			"-backend", "filesystem", "-filesystem-root", t.TempDir(), "-public-host", addr,
			"-external-url", "http://"+addr, "-log-level", "error")
		t.Cleanup(func() { p.Stop(3 * time.Second) })
		return waitReady(p, addr, 30*time.Second, DialCheck(addr))
	})
	return addr
}

// MakeGCSBucket creates bucket on fake-gcs-server at addr if it does not exist.
func MakeGCSBucket(t *testing.T, addr, bucket string) {
	t.Helper()
	req, err := http.NewRequestWithContext(Ctx(t, 30*time.Second), http.MethodPost, "http://"+addr+"/storage/v1/b?project=snapvisor-test",
		strings.NewReader(`{"name":`+strconv.Quote(bucket)+`}`))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK && resp.StatusCode != http.StatusConflict {
		t.Fatalf("create bucket %s: %s", bucket, resp.Status)
	}
}

// GCSBackend is gs:// on fake-gcs-server, bucket "snapvisor".
func GCSBackend(t *testing.T) Backend {
	addr := StartFakeGCS(t)
	return Backend{
		Name: "gs",
		Open: func(t *testing.T, prefix string) store.Store {
			MakeGCSBucket(t, addr, "snapvisor")
			return Open(t, "gs://snapvisor/"+prefix, store.Config{GCSEmulatorHost: addr})
		},
		// fake-gcs-server does not authenticate: no wrong-credentials case.
		Down: func(t *testing.T) store.Store {
			return Open(t, "gs://snapvisor/down", store.Config{GCSEmulatorHost: DeadAddr(t)})
		},
	}
}

// Gen returns a reader of n pseudo-random bytes (from seed) that holds none of them.
func Gen(seed byte, n int64) io.Reader {
	var s [32]byte
	s[0] = seed
	return &genReader{rng: rand.NewChaCha8(s), n: n}
}

type genReader struct {
	rng *rand.ChaCha8
	n   int64
}

func (g *genReader) Read(p []byte) (int, error) {
	if g.n <= 0 {
		return 0, io.EOF
	}
	if int64(len(p)) > g.n {
		p = p[:g.n]
	}
	g.rng.Read(p)
	g.n -= int64(len(p))
	return len(p), nil
}

// MakeSnapshot writes a fake snapshot archive of n pseudo-random bytes,
// named <name>-<at><ext>, and its .sha256 ("<hex>  <base>\n") into dir,
// and returns the archive's path.
func MakeSnapshot(t *testing.T, dir, name string, at time.Time, ext string, n int64) string {
	t.Helper()
	base := fmt.Sprintf("%s-%s%s", name, at.UTC().Format(snapshot.TimeLayout), ext)
	p := filepath.Join(dir, base)
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	h := sha256.New()
	if _, err := io.Copy(io.MultiWriter(f, h), Gen(byte(at.Unix()), n)); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	MustWrite(t, p+".sha256", []byte(hex.EncodeToString(h.Sum(nil))+"  "+base+"\n"))
	return p
}
