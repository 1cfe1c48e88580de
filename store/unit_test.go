package store

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"snapvisor/config"
)

func TestRedact(t *testing.T) {
	for in, want := range map[string]string{
		"sftp://backup:hunter22@host:22/path":                  "sftp://backup:%2A%2A%2A@host:22/path",
		"sftp://backup@host/path":                              "sftp://backup@host/path",
		"s3://b/p?endpoint=h:9000&tls=false":                   "s3://b/p?endpoint=h:9000&tls=false",
		"s3://b/p?endpoint=h&secret_key=abc&x-amz-signature=q": "s3://b/p?endpoint=h&secret_key=***&x-amz-signature=***",
		"azure://c/p?sig=abcdef":                               "azure://c/p?sig=***",
		"::not a url//user:pw@host":                            "::not a url//***@host",
		"%zz://u:pw@h/p?token=abc":                             "%zz://***@h/p?token=***",
	} {
		got := Redact(in)
		if got != want && !(strings.Contains(got, "***") || strings.Contains(got, "%2A")) {
			t.Errorf("Redact(%q) = %q, want %q", in, got, want)
		}
		for _, secret := range []string{"hunter22", "abc&", "abcdef", ":pw@"} {
			if strings.Contains(got, secret) {
				t.Errorf("Redact(%q) = %q reveals %q", in, got, secret)
			}
		}
	}
}

func TestValidate(t *testing.T) {
	ok := Config{Retries: 5, Backoff: time.Second, Remotes: []string{
		"file:///mnt/nfs/backups", " s3://bucket/prefix?endpoint=127.0.0.1:9000&tls=false&region=us-east-1",
		"sftp://u@h:2222/srv/backups", "azure://container/prefix", "gs://bucket", "",
	}}
	if err := ok.Validate(); err != nil {
		t.Errorf("valid config: %v", err)
	}
	if got := len(ok.URLs()); got != 5 {
		t.Errorf("URLs() has %d entries, want 5", got)
	}
	for _, bad := range []string{
		"ftp://host/x", "/just/a/path", "file://host/x", "file:///", "s3:///prefix", "sftp://host",
		"s3://b/p?tls=maybe", "s3://key:secret-Xy7Qz@bucket/p", "%zz://x", "sftp://u:secret-Xy7Qz@/p",
	} {
		err := Config{Retries: 1, Backoff: time.Second, Remotes: []string{bad}}.Validate()
		var ce *config.Error
		if !errors.As(err, &ce) || ce.Var != "SNAPVISOR_REMOTES" {
			t.Errorf("Validate(%q) = %v, want a SNAPVISOR_REMOTES config error", bad, err)
			continue
		}
		if strings.Contains(err.Error(), "secret-Xy7Qz") {
			t.Errorf("Validate(%q) error reveals the secret: %v", bad, err)
		}
		if !strings.Contains(err.Error(), "accepted:") {
			t.Errorf("error does not say what is accepted: %v", err)
		}
	}
	if err := (Config{Retries: -1, Backoff: time.Second}).Validate(); err == nil || !strings.Contains(err.Error(), "SNAPVISOR_REMOTE_RETRIES") {
		t.Errorf("negative retries: %v", err)
	}
	if err := (Config{Retries: 1}).Validate(); err == nil || !strings.Contains(err.Error(), "SNAPVISOR_REMOTE_BACKOFF") {
		t.Errorf("zero backoff: %v", err)
	}
}

func TestConfigFromEnvironment(t *testing.T) {
	dir := t.TempDir()
	secretFile := filepath.Join(dir, "secret")
	mustWrite(t, secretFile, []byte("from-file-Xy7Qz\n"))
	t.Setenv("SNAPVISOR_REMOTES", "file:///a,s3://b/p?endpoint=h:1")
	t.Setenv("AWS_ACCESS_KEY_ID", "AKIAEXAMPLE")
	t.Setenv("AWS_SECRET_ACCESS_KEY_FILE", secretFile)
	t.Setenv("SNAPVISOR_SFTP_INSECURE_IGNORE_HOST_KEY", "true")
	var c Config
	if err := config.Load(&c); err != nil {
		t.Fatal(err)
	}
	if c.Retries != 5 || c.Backoff != time.Second || len(c.URLs()) != 2 || !c.SFTPInsecureNoHost {
		t.Errorf("loaded %+v", c)
	}
	if c.S3SecretKey.Reveal() != "from-file-Xy7Qz" {
		t.Errorf("AWS_SECRET_ACCESS_KEY_FILE not read")
	}
	if s := fmt.Sprintf("%v %+v", c, c); strings.Contains(s, "from-file-Xy7Qz") || strings.Contains(s, "AKIAEXAMPLE") {
		t.Errorf("printing the config reveals secrets: %s", s)
	}
	vars := strings.Join(config.SecretVars(&c), " ")
	for _, v := range []string{"AWS_SECRET_ACCESS_KEY_FILE", "AZURE_STORAGE_CONNECTION_STRING", "SNAPVISOR_SFTP_PASSWORD", "AZURE_STORAGE_KEY"} {
		if !strings.Contains(vars, v) {
			t.Errorf("SecretVars lacks %s: %s", v, vars)
		}
	}
}

func TestPolicyDelay(t *testing.T) {
	p := Policy{Backoff: time.Second, MaxBackoff: 10 * time.Second}
	for n, want := range map[int]time.Duration{1: time.Second, 2: 2 * time.Second, 3: 4 * time.Second, 5: 10 * time.Second, 50: 10 * time.Second} {
		for i := 0; i < 50; i++ {
			if d := p.delay(n); d < want/2 || d > want {
				t.Fatalf("delay(%d) = %s, want in [%s, %s]", n, d, want/2, want)
			}
		}
	}
}

// flaky fails its first n operations with a transient error.
type flaky struct {
	Store
	fails int
	calls int
}

func (f *flaky) Put(ctx context.Context, key string, r io.Reader, size int64) error {
	f.calls++
	if f.calls <= f.fails {
		io.CopyN(io.Discard, r, 3) // consume some input, as a broken upload does
		return &Error{Store: f.Name(), Op: "put", Key: key, Err: errors.New("connection reset")}
	}
	return f.Store.Put(ctx, key, r, size)
}

func TestRetryRewindsAndGivesUp(t *testing.T) {
	ctx := testCtx(t, time.Minute)
	fs := mustOpen(t, "file://"+t.TempDir(), Config{})
	f := &flaky{Store: fs, fails: 2}
	set := metrics.NewSet()
	s := WithRetry(WithMetrics(f, set, nil), Policy{Retries: 2, Backoff: time.Millisecond}, nil)
	if err := s.Put(ctx, "k", strings.NewReader("payload"), 7); err != nil {
		t.Fatalf("put after 2 failures: %v", err)
	}
	rc, err := s.Get(ctx, "k")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(rc)
	rc.Close()
	if string(b) != "payload" {
		t.Errorf("stored %q: the source was not rewound", b)
	}
	f.calls, f.fails = 0, 10
	err = s.Put(ctx, "k2", strings.NewReader("payload"), 7)
	if err == nil || !strings.Contains(err.Error(), "gave up after 3 attempts") || f.calls != 3 {
		t.Errorf("put with 10 failures: %v after %d calls", err, f.calls)
	}
	// A reader that cannot be rewound gets one attempt.
	f.calls = 0
	if err := s.Put(ctx, "k3", io.MultiReader(strings.NewReader("x")), 1); err == nil || f.calls != 1 {
		t.Errorf("unseekable put: %v after %d calls", err, f.calls)
	}
	var buf bytes.Buffer
	set.WritePrometheus(&buf)
	for _, want := range []string{`snapvisor_remote_operations_total{remote="file://`, `op="put",result="error"} 6`, `op="put",result="ok"} 1`} {
		if !strings.Contains(buf.String(), want) {
			t.Errorf("metrics lack %s:\n%s", want, buf.String())
		}
	}
}

func TestOpenAll(t *testing.T) {
	dir := t.TempDir()
	cfg := Config{Retries: 1, Backoff: time.Millisecond, Remotes: []string{"file://" + dir + "/a", "ftp://x/y", "file://" + dir + "/b"}}
	stores, err := OpenAll(context.Background(), cfg, metrics.NewSet(), nil)
	defer CloseAll(stores)
	if len(stores) != 2 || err == nil || !strings.Contains(err.Error(), "ftp") {
		t.Fatalf("OpenAll = %d stores, %v", len(stores), err)
	}
	p := makeSnapshot(t, t.TempDir(), "db", time.Now(), ".tar", 4096)
	for _, s := range stores {
		if _, err := Push(context.Background(), s, p); err != nil {
			t.Fatal(err)
		}
		if snaps, err := ListSnapshots(context.Background(), s, "db"); err != nil || len(snaps) != 1 {
			t.Errorf("%s: %+v, %v", s.Name(), snaps, err)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "b", filepath.Base(p)+".sha256")); err != nil {
		t.Error(err)
	}
}

func TestPushStream(t *testing.T) {
	ctx := testCtx(t, time.Minute)
	s := mustOpen(t, "file://"+t.TempDir(), Config{})
	key := "app-20250101T000000Z.tar.zst"
	rs, err := PushStream(ctx, s, key, newGen(7, 5<<20))
	if err != nil || rs.Size != 5<<20 {
		t.Fatalf("PushStream: %+v, %v", rs, err)
	}
	local, err := Fetch(ctx, s, key, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(local); err != nil || fi.Size() != 5<<20 {
		t.Errorf("fetched %v, %v", fi, err)
	}
	// A source failing midway leaves no snapshot.
	_, err = PushStream(ctx, s, "app-20250102T000000Z.tar.zst", io.MultiReader(newGen(8, 1<<20), errReader{}))
	if err == nil {
		t.Fatal("PushStream of a failing source succeeded")
	}
	if snaps, _ := ListSnapshots(ctx, s, "app"); len(snaps) != 1 {
		t.Errorf("after a failed stream: %+v", snaps)
	}
}

type errReader struct{}

func (errReader) Read([]byte) (int, error) { return 0, errors.New("source broke") }
