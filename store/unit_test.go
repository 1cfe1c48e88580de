package store

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"snapvisor/config"
)

func TestRedact(t *testing.T) {
	for _, tc := range []struct {
		in     string
		secret []string // none of these may appear in the output
		keep   []string // these must stay
	}{
		{"sftp://backup:hunter22@host:22/path", []string{"hunter22"}, []string{"sftp://backup:***@host:22/path"}},
		{"sftp://backup@host/path", nil, []string{"sftp://backup@host/path"}},
		{"s3://b/p?endpoint=h:9000&tls=false", nil, []string{"endpoint=h:9000", "tls=false"}},
		{"s3://b/p?endpoint=h&secret_key=abc123&x-amz-signature=q9q9q9", []string{"abc123", "q9q9q9"}, []string{"endpoint=h"}},
		{"azure://c/p?sig=abcdef", []string{"abcdef"}, []string{"azure://c/p"}},
		// A SAS URL nested in a parameter, raw and escaped.
		{"azure://c/p?endpoint=https://acct.blob.core.windows.net/?sv=2022&sig=SAS-Xy7Qz%3D", []string{"SAS-Xy7Qz"}, []string{"acct.blob.core.windows.net"}},
		{"azure://c/p?endpoint=https%3A%2F%2Facct.blob.core.windows.net%2F%3Fsv%3D2022%26sig%3DSAS-Xy7Qz", []string{"SAS-Xy7Qz"}, []string{"acct.blob.core.windows.net"}},
		{"s3://b/p?endpoint=http://user:pw-Xy7Qz@h:9000", []string{"pw-Xy7Qz"}, []string{"h:9000"}},
		{"::not a url//user:pw-Xy7Qz@host", []string{"pw-Xy7Qz"}, []string{"host"}},
		{"%zz://u:pw-Xy7Qz@h/p?token=tok-Xy7Qz", []string{"pw-Xy7Qz", "tok-Xy7Qz"}, nil},
	} {
		t.Run(tc.in, func(t *testing.T) {
			got := Redact(tc.in)
			for _, sec := range tc.secret {
				if strings.Contains(got, sec) {
					t.Errorf("Redact(%q) = %q reveals %q", tc.in, got, sec)
				}
			}
			for _, k := range tc.keep {
				if !strings.Contains(got, k) {
					t.Errorf("Redact(%q) = %q lost %q", tc.in, got, k)
				}
			}
		})
	}
}

func TestValidate(t *testing.T) {
	ok := Config{Retries: 5, Backoff: time.Second, Timeout: time.Hour, LeaseTTL: 10 * time.Minute, Remotes: []string{
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
		// Credentials in the URL would reach the service's environment.
		"sftp://u:secret-Xy7Qz@host/p", "s3://b/p?endpoint=h&secret_key=secret-Xy7Qz",
		"azure://c/p?endpoint=https://acct.blob.core.windows.net/?sv=1%26sig=secret-Xy7Qz",
		"azure://c/p?endpoint=https%3A%2F%2Facct.blob.core.windows.net%2F%3Fsv%3D1%26sig%3Dsecret-Xy7Qz",
		"gs://b/p?token=secret-Xy7Qz",
		// Endpoints without a host or with a port out of range.
		"s3://b/p?endpoint=127.0.0.1:0", "s3://b/p?endpoint=127.0.0.1:99999", "s3://b/p?endpoint=:9000",
		"s3://b/p?endpoint=http://:9000", "s3://b/p?endpoint=h:x", "s3://b/p?endpoint=http://u:secret-Xy7Qz@h:0",
		"sftp://u@h:0/p", "sftp://u@h:65536/p",
		"azure://c/p?endpoint=http://127.0.0.1:0/acct", "azure://c/p?endpoint=http:///acct",
	} {
		err := Config{Retries: 1, Backoff: time.Second, Timeout: time.Hour, Remotes: []string{bad}}.Validate()
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
	if err := (Config{Retries: -1, Backoff: time.Second, Timeout: time.Hour}).Validate(); err == nil || !strings.Contains(err.Error(), "SNAPVISOR_REMOTE_RETRIES") {
		t.Errorf("negative retries: %v", err)
	}
	if err := (Config{Retries: 1, Timeout: time.Hour}).Validate(); err == nil || !strings.Contains(err.Error(), "SNAPVISOR_REMOTE_BACKOFF") {
		t.Errorf("zero backoff: %v", err)
	}
	if err := (Config{Retries: 1, Backoff: time.Second}).Validate(); err == nil || !strings.Contains(err.Error(), "SNAPVISOR_REMOTE_TIMEOUT") {
		t.Errorf("zero timeout: %v", err)
	}
	for _, ttl := range []time.Duration{0, -time.Minute, 500 * time.Millisecond} {
		if err := (Config{Retries: 1, Backoff: time.Second, Timeout: time.Hour, LeaseTTL: ttl}).Validate(); err == nil || !strings.Contains(err.Error(), "SNAPVISOR_LEASE_TTL") {
			t.Errorf("lease TTL %v: %v", ttl, err)
		}
	}
	for _, good := range []string{"s3://b/p?endpoint=h", "s3://b/p?endpoint=https://h:9000", "s3://b/p?endpoint=[::1]:9000",
		"sftp://u@h:65535/p", "azure://c/p?endpoint=http://127.0.0.1:10000/devstoreaccount1"} {
		if err := (Config{Retries: 1, Backoff: time.Second, Timeout: time.Hour, LeaseTTL: time.Minute, Remotes: []string{good}}).Validate(); err != nil {
			t.Errorf("Validate(%q) = %v", good, err)
		}
	}
	for _, tc := range []struct {
		cfg  Config
		name string
	}{
		{Config{AzureEndpoint: "http://127.0.0.1:0/devstoreaccount1"}, "SNAPVISOR_AZURE_ENDPOINT"},
		{Config{AzureEndpoint: "http://:10000/devstoreaccount1"}, "SNAPVISOR_AZURE_ENDPOINT"},
		{Config{GCSEmulatorHost: "127.0.0.1:99999", Remotes: []string{"gs://b"}}, "STORAGE_EMULATOR_HOST"},
		{Config{GCSEmulatorHost: ":4443", Remotes: []string{"gs://b"}}, "STORAGE_EMULATOR_HOST"},
	} {
		tc.cfg.Retries, tc.cfg.Backoff, tc.cfg.Timeout, tc.cfg.LeaseTTL = 1, time.Second, time.Hour, time.Minute
		if err := tc.cfg.Validate(); err == nil || !strings.Contains(err.Error(), tc.name) {
			t.Errorf("Validate(%+v) = %v, want an error naming %s", tc.cfg, err, tc.name)
		}
	}
	// STORAGE_EMULATOR_HOST may be the service's own when no gs:// remote is set.
	if err := (Config{Retries: 1, Backoff: time.Second, Timeout: time.Hour, LeaseTTL: time.Minute, GCSEmulatorHost: ":0"}).Validate(); err != nil {
		t.Errorf("STORAGE_EMULATOR_HOST without a gs:// remote: %v", err)
	}
	for _, tc := range []struct{ url, dir string }{{"file:///mnt/x/", "/mnt/x"}, {"file://localhost/a/../b", "/b"}, {"s3://b/p", ""}, {"file:///", ""}} {
		if dir, ok := FilePath(tc.url); dir != tc.dir || ok != (tc.dir != "") {
			t.Errorf("FilePath(%q) = %q, %v, want %q", tc.url, dir, ok, tc.dir)
		}
	}
	sas := Config{Retries: 1, Backoff: time.Second, Timeout: time.Hour, LeaseTTL: time.Minute, AzureEndpoint: "https://acct.blob.core.windows.net/?sv=1&sig=secret-Xy7Qz"}
	if err := sas.Validate(); err == nil || !strings.Contains(err.Error(), "SNAPVISOR_AZURE_ENDPOINT") ||
		!strings.Contains(err.Error(), "SharedAccessSignature") || strings.Contains(err.Error(), "secret-Xy7Qz") {
		t.Errorf("SAS token in SNAPVISOR_AZURE_ENDPOINT: %v", err)
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
	if c.Retries != 5 || c.Backoff != time.Second || c.Timeout != time.Hour || len(c.URLs()) != 2 || !c.SFTPInsecureNoHost {
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
