package jobs

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	smtpd "github.com/emersion/go-smtp"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"snapvisor/config"
	"snapvisor/internal/testutil"
)

// receiver is a local HTTP server (127.0.0.1) recording what it gets: the
// generic webhook's POSTs and the heartbeat's GETs, by path.
type receiver struct {
	srv    *httptest.Server
	mu     sync.Mutex
	hits   []hit
	status int           // answered to every request (0: 200)
	hang   chan struct{} // non-nil: requests wait until it is closed
}

type hit struct{ method, path, body string }

func newReceiver(t *testing.T) *receiver {
	t.Helper()
	rc := &receiver{}
	rc.srv = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, _ := io.ReadAll(req.Body)
		rc.mu.Lock()
		rc.hits = append(rc.hits, hit{req.Method, req.URL.Path, string(body)})
		hang, status := rc.hang, rc.status
		rc.mu.Unlock()
		if hang != nil {
			<-hang
		}
		if status != 0 {
			w.WriteHeader(status)
		}
	}))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	rc.srv.Listener = ln
	rc.srv.Start()
	t.Cleanup(rc.srv.Close)
	return rc
}

// hostPort is the receiver's 127.0.0.1:port.
func (rc *receiver) hostPort() string { return strings.TrimPrefix(rc.srv.URL, "http://") }

func (rc *receiver) got() []hit {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return append([]hit(nil), rc.hits...)
}

// bodies lists the bodies of the requests of method to path.
func (rc *receiver) bodies(method, path string) []string {
	var out []string
	for _, h := range rc.got() {
		if h.method == method && h.path == path {
			out = append(out, h.body)
		}
	}
	return out
}

// notifyFixture is a runner over a real supervised service whose notifier
// runs as Serve runs it (its own goroutine, stopped at cleanup).
func notifyFixture(t *testing.T, cfg Config, nc NotifyConfig) *fixture {
	t.Helper()
	f := newFixture(t, cfg, looping)
	if err := f.runner.SetNotify(nc); err != nil {
		t.Fatal(err)
	}
	startNotifier(t, f.runner)
	return f
}

func startNotifier(t *testing.T, r *Runner) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); r.notifier.run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
}

func webhookURL(rc *receiver, path string) string {
	return "generic://" + rc.hostPort() + path + "?disabletls=yes"
}

func TestNotifier_Webhook(t *testing.T) {
	t.Run("a good snapshot at info: the rendered template and the heartbeat", func(t *testing.T) {
		rc := newReceiver(t)
		f := notifyFixture(t, Config{}, NotifyConfig{URLs: config.Secret(webhookURL(rc, "/hook")), Level: NotifyInfo,
			Template:     "{{.Event}} {{.Snapshot}} size={{.Size}} host={{.Host}}{{range .Remotes}} {{.Name}}{{end}} err={{.Error}}",
			HeartbeatURL: config.Secret(rc.srv.URL + "/ping/abc")})
		res, err := f.runner.Trigger(context.Background(), "test")
		if err != nil || !res.OK() {
			t.Fatalf("snapshot: %+v, %v", res, err)
		}
		testutil.Eventually(t, 10*time.Second, "webhook and heartbeat", func() bool {
			return len(rc.bodies("POST", "/hook")) == 1 && len(rc.bodies("GET", "/ping/abc")) == 1
		})
		host := f.runner.notifier.host
		want := fmt.Sprintf("snapshot done %s size=%d host=%s err=", res.Snapshot, res.Size, host)
		if got := rc.bodies("POST", "/hook")[0]; got != want {
			t.Errorf("webhook body %q, want %q", got, want)
		}
		if n := len(rc.bodies("GET", "/ping/abc/fail")); n != 0 {
			t.Errorf("a good snapshot pinged /fail %d times", n)
		}
	})

	t.Run("a failed snapshot: the error and the heartbeat's /fail", func(t *testing.T) {
		rc := newReceiver(t)
		f := notifyFixture(t, Config{PreCommand: "exit 3"}, NotifyConfig{URLs: config.Secret(webhookURL(rc, "/hook")),
			Template: "{{.Level}}: {{.Event}}: {{.Error}}", HeartbeatURL: config.Secret(rc.srv.URL + "/ping")})
		res, _ := f.runner.Trigger(context.Background(), "test")
		if res.OK() || res.Error == "" {
			t.Fatalf("want a failed snapshot, got %+v", res)
		}
		testutil.Eventually(t, 10*time.Second, "webhook and /fail", func() bool {
			return len(rc.bodies("POST", "/hook")) == 1 && len(rc.bodies("GET", "/ping/fail")) == 1
		})
		if got, want := rc.bodies("POST", "/hook")[0], "error: snapshot failed: "+res.Error; got != want {
			t.Errorf("webhook body %q, want %q", got, want)
		}
		if n := len(rc.bodies("GET", "/ping")); n != 0 {
			t.Errorf("a failed snapshot pinged the success URL %d times", n)
		}
	})

	t.Run("the default level (error) sends no success message", func(t *testing.T) {
		rc := newReceiver(t)
		gate := t.TempDir() + "/fail"
		f := notifyFixture(t, Config{PreCommand: "! [ -e '" + gate + "' ]"}, NotifyConfig{URLs: config.Secret(webhookURL(rc, "/hook")), Template: "{{.Event}}"})
		if res, _ := f.runner.Trigger(context.Background(), "test"); !res.OK() {
			t.Fatalf("snapshot: %+v", res)
		}
		if err := os.WriteFile(gate, nil, 0o644); err != nil {
			t.Fatal(err)
		}
		if res, _ := f.runner.Trigger(context.Background(), "test"); res.OK() {
			t.Fatalf("want a failed snapshot, got %+v", res)
		}
		// The queue is in order: once the failure's message is in, the
		// success's would have been too.
		testutil.Eventually(t, 10*time.Second, "the failure's message", func() bool { return len(rc.bodies("POST", "/hook")) >= 1 })
		if got := rc.bodies("POST", "/hook"); len(got) != 1 || got[0] != EventSnapshotFailed {
			t.Errorf("messages %q, want only %q", got, EventSnapshotFailed)
		}
	})

	t.Run("health turning bad is notified once, and its recovery", func(t *testing.T) {
		rc := newReceiver(t)
		gate := t.TempDir() + "/fail"
		if err := os.WriteFile(gate, nil, 0o644); err != nil {
			t.Fatal(err)
		}
		f := notifyFixture(t, Config{PreCommand: "! [ -e '" + gate + "' ]"}, NotifyConfig{URLs: config.Secret(webhookURL(rc, "/hook")), Level: NotifyInfo, Template: "{{.Event}}"})
		f.runner.mu.Lock()
		f.runner.healthMaxAge = time.Hour // as Serve sets it
		f.runner.mu.Unlock()
		for range 2 {
			if res, _ := f.runner.Trigger(context.Background(), "test"); res.OK() {
				t.Fatalf("want a failed snapshot, got %+v", res)
			}
			f.runner.status(time.Time{}, time.Hour) // a scrape: never a notification
		}
		if err := os.Remove(gate); err != nil {
			t.Fatal(err)
		}
		if res, _ := f.runner.Trigger(context.Background(), "test"); !res.OK() {
			t.Fatalf("snapshot: %+v", res)
		}
		want := []string{EventSnapshotFailed, EventUnhealthy, EventSnapshotFailed, EventSnapshotDone, EventHealthy}
		testutil.Eventually(t, 10*time.Second, "five messages", func() bool { return len(rc.bodies("POST", "/hook")) >= len(want) })
		if got := rc.bodies("POST", "/hook"); strings.Join(got, ",") != strings.Join(want, ",") {
			t.Errorf("messages %q, want %q", got, want)
		}
	})
}

// smtpSink is a local SMTP server (127.0.0.1, no TLS, no auth) keeping the
// messages it receives.
type smtpSink struct {
	mu   sync.Mutex
	msgs []smtpMsg
}

type smtpMsg struct {
	from string
	to   []string
	data string
}

func (s *smtpSink) NewSession(*smtpd.Conn) (smtpd.Session, error) { return &smtpSession{sink: s}, nil }

type smtpSession struct {
	sink *smtpSink
	msg  smtpMsg
}

func (s *smtpSession) Reset()        { s.msg = smtpMsg{} }
func (s *smtpSession) Logout() error { return nil }
func (s *smtpSession) Mail(from string, _ *smtpd.MailOptions) error {
	s.msg.from = from
	return nil
}
func (s *smtpSession) Rcpt(to string, _ *smtpd.RcptOptions) error {
	s.msg.to = append(s.msg.to, to)
	return nil
}
func (s *smtpSession) Data(r io.Reader) error {
	b, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	s.msg.data = string(b)
	s.sink.mu.Lock()
	s.sink.msgs = append(s.sink.msgs, s.msg)
	s.sink.mu.Unlock()
	return nil
}

func (s *smtpSink) messages() []smtpMsg {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]smtpMsg(nil), s.msgs...)
}

func TestNotifier_Email(t *testing.T) {
	sink := &smtpSink{}
	srv := smtpd.NewServer(sink)
	srv.Domain = "localhost"
	srv.ReadTimeout, srv.WriteTimeout = 10*time.Second, 10*time.Second
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })

	u := "smtp://" + ln.Addr().String() + "/?fromaddress=snapvisor@example.test&toaddresses=ops@example.test&encryption=None&usestarttls=No&auth=None"
	f := notifyFixture(t, Config{PreCommand: "echo broken >&2; exit 4"}, NotifyConfig{URLs: config.Secret(u), Level: NotifyError})
	res, _ := f.runner.Trigger(context.Background(), "test")
	if res.OK() {
		t.Fatalf("want a failed snapshot, got %+v", res)
	}
	testutil.Eventually(t, 15*time.Second, "an email", func() bool { return len(sink.messages()) == 1 })
	m := sink.messages()[0]
	if m.from != "snapvisor@example.test" || len(m.to) != 1 || m.to[0] != "ops@example.test" {
		t.Errorf("envelope from %q to %q", m.from, m.to)
	}
	for _, want := range []string{"Subject: snapvisor on " + f.runner.notifier.host + ": " + EventSnapshotFailed, "snapshot failed", "pre-hook"} {
		if !strings.Contains(m.data, want) {
			t.Errorf("email lacks %q:\n%s", want, m.data)
		}
	}
}

func TestNotifier_Hanging(t *testing.T) {
	t.Run("a receiver that never answers does not hold the snapshot", func(t *testing.T) {
		rc := newReceiver(t)
		release := make(chan struct{})
		rc.hang = release
		defer close(release) // runs before the cleanups: the server closes with no handler waiting
		f := notifyFixture(t, Config{}, NotifyConfig{URLs: config.Secret(webhookURL(rc, "/hook")), Level: NotifyInfo,
			HeartbeatURL: config.Secret(rc.srv.URL + "/ping")})
		f.runner.notifier.timeout = 300 * time.Millisecond // the bound of an attempt (notifyTimeout in production)

		res, err := f.runner.Trigger(context.Background(), "test")
		if err != nil || !res.OK() {
			t.Fatalf("snapshot: %+v, %v", res, err)
		}
		select {
		case <-release:
			t.Fatal("released early")
		default: // the result came while the receiver still hangs
		}
		// The heartbeat and the webhook: each tried twice, then counted.
		testutil.Eventually(t, 10*time.Second, "both failures counted", func() bool {
			return metricValue(f.runner, "snapvisor_notify_failures_total") == "2"
		})
		if n := len(rc.got()); n != 4 {
			t.Errorf("%d requests, want 4 (two attempts each for the heartbeat and the webhook)", n)
		}
		// A second run is not held either, and nothing loops: no more requests than attempts.
		if res, err := f.runner.Trigger(context.Background(), "test2"); err != nil || !res.OK() {
			t.Fatalf("second snapshot: %+v, %v", res, err)
		}
		testutil.Eventually(t, 10*time.Second, "four failures counted", func() bool {
			return metricValue(f.runner, "snapvisor_notify_failures_total") == "4"
		})
		if n := len(rc.got()); n != 8 {
			t.Errorf("%d requests, want 8", n)
		}
	})

	t.Run("a full queue drops and counts, never waits", func(t *testing.T) {
		n, err := NewNotifier(NotifyConfig{URLs: "generic://127.0.0.1:9/x?disabletls=yes", Level: NotifyInfo}, zap.NewNop(), NewMetrics())
		if err != nil {
			t.Fatal(err)
		}
		for range notifyQueue + 3 { // nobody sends: the queue fills
			n.event(Event{Event: EventSnapshotDone, Level: NotifyInfo}, "")
		}
		var b strings.Builder
		n.metrics.WritePrometheus(&b)
		if !strings.Contains(b.String(), "snapvisor_notify_failures_total 3\n") {
			t.Errorf("want 3 dropped, metrics:\n%s", b.String())
		}
	})
}

func TestNotifier_Secrets(t *testing.T) {
	const token = "tok3nS3cr3tXYZ"
	rc := newReceiver(t)
	rc.status = http.StatusInternalServerError
	core, logs := observer.New(zapcore.DebugLevel)
	log := zap.New(core)
	m := NewMetrics()
	n, err := NewNotifier(NotifyConfig{
		URLs:         config.Secret("generic://" + rc.hostPort() + "/hook/" + token + "?disabletls=yes&$key=" + token),
		Level:        NotifyInfo,
		HeartbeatURL: config.Secret(rc.srv.URL + "/ping/" + token),
	}, log, m)
	if err != nil {
		t.Fatal(err)
	}
	// The unreachable one: its error quotes the URL it dialled.
	down, err := NewNotifier(NotifyConfig{URLs: config.Secret("generic://user:" + token + "@127.0.0.1:9/" + token + "?disabletls=yes")}, log, m)
	if err != nil {
		t.Fatal(err)
	}
	n.timeout, down.timeout = 2*time.Second, 2*time.Second
	ctx := context.Background()
	n.event(Event{Event: EventSnapshotDone, Level: NotifyInfo}, "ok")
	n.flush(ctx)
	down.event(Event{Event: EventSnapshotFailed, Level: NotifyError}, "")
	down.flush(ctx)
	if len(rc.got()) != 4 {
		t.Errorf("%d requests, want 4 (two attempts of the heartbeat and of the webhook)", len(rc.got()))
	}
	var b strings.Builder
	m.WritePrometheus(&b)
	if !strings.Contains(b.String(), "snapvisor_notify_failures_total 3\n") {
		t.Errorf("want 3 failures counted:\n%s", b.String())
	}
	if logs.Len() < 3 {
		t.Fatalf("want a log line per failure, got %d", logs.Len())
	}
	for _, e := range logs.All() {
		line := e.Message + fmt.Sprint(e.ContextMap())
		if strings.Contains(line, token) {
			t.Errorf("a log line reveals the token: %s", line)
		}
		if u, ok := e.ContextMap()["url"].(string); ok && strings.Count(u, "/") > 2 {
			t.Errorf("url field %q: want scheme and host only", u)
		}
	}

	// A URL that does not parse: the configuration error names the
	// variable, never the value.
	err = NotifyConfig{URLs: config.Secret("nosuchservice://" + token + "@host/" + token), Level: NotifyError}.Validate()
	var ce *config.Error
	if !errors.As(err, &ce) || ce.Var != "SNAPVISOR_NOTIFY_URLS" || strings.Contains(err.Error(), token) {
		t.Errorf("Validate: %v, want a *config.Error for SNAPVISOR_NOTIFY_URLS without the token", err)
	}
}

func TestNotifyConfig_Validate(t *testing.T) {
	for _, tc := range []struct {
		name string
		c    NotifyConfig
		bad  string // the variable named; empty: valid
	}{
		{"empty is off", NotifyConfig{Level: NotifyError}, ""},
		{"every level", NotifyConfig{Level: "INFO", URLs: "generic://127.0.0.1/x"}, ""},
		{"unknown level", NotifyConfig{Level: "debug"}, "SNAPVISOR_NOTIFY_LEVEL"},
		{"template that does not parse", NotifyConfig{Level: NotifyError, Template: "{{.Event"}, "SNAPVISOR_NOTIFY_TEMPLATE"},
		{"template naming no field", NotifyConfig{Level: NotifyError, Template: "{{.Nope}}"}, "SNAPVISOR_NOTIFY_TEMPLATE"},
		{"template over every field", NotifyConfig{Level: NotifyError, Template: "{{.Event}}{{.Level}}{{.Host}}{{.Reason}}{{.Snapshot}}{{.Size}}{{.Duration}}{{range .Remotes}}{{.Name}}{{.OK}}{{.Error}}{{end}}{{.Error}}{{.Time}}"}, ""},
		{"unknown service", NotifyConfig{Level: NotifyError, URLs: "generic://127.0.0.1/x, nosuch://x"}, "SNAPVISOR_NOTIFY_URLS"},
		{"not a URL", NotifyConfig{Level: NotifyError, URLs: "::nope"}, "SNAPVISOR_NOTIFY_URLS"},
		{"a service's bad option", NotifyConfig{Level: NotifyError, URLs: "smtp://127.0.0.1/?encryption=Sometimes"}, "SNAPVISOR_NOTIFY_URLS"},
		{"heartbeat not http", NotifyConfig{Level: NotifyError, HeartbeatURL: "ftp://host/x"}, "SNAPVISOR_HEARTBEAT_URL"},
		{"heartbeat", NotifyConfig{Level: NotifyError, HeartbeatURL: "https://hc-ping.example/uuid"}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.c.Validate()
			var ce *config.Error
			switch {
			case tc.bad == "" && err != nil:
				t.Errorf("want valid, got %v", err)
			case tc.bad != "" && (!errors.As(err, &ce) || ce.Var != tc.bad):
				t.Errorf("want a *config.Error for %s, got %v", tc.bad, err)
			}
		})
	}
}

func TestRunEvent(t *testing.T) {
	for _, tc := range []struct {
		name      string
		res       Result
		event, hb string
	}{
		{"done", Result{Snapshot: "s"}, EventSnapshotDone, "ok"},
		{"failed", Result{Error: "boom"}, EventSnapshotFailed, "fail"},
		{"skipped", Result{Skipped: "no source"}, EventSnapshotSkipped, ""},
		{"a remote did not get it", Result{Snapshot: "s", Remotes: []PushResult{{Remote: "a"}, {Remote: "b", Error: "down"}}}, EventPushFailed, "fail"},
		{"shrunk", Result{Snapshot: "s", Shrunk: "empty"}, EventSnapshotShrunk, "ok"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ev, hb := runEvent(tc.res)
			if ev.Event != tc.event || hb != tc.hb {
				t.Errorf("runEvent = %q, %q; want %q, %q", ev.Event, hb, tc.event, tc.hb)
			}
		})
	}
}

func TestRedactNotifyURL(t *testing.T) {
	for in, want := range map[string]string{
		"telegram://123:TOKEN@telegram?chats=@c": "telegram://telegram",
		"gotify://gotify.example/TOKEN":          "gotify://gotify.example",
		"slack://xoxb:TOKEN@C123":                "slack://C123",
		"generic+https://h.example/hook?t=TOKEN": "generic+https://h.example",
		"::bad":                                  "***",
	} {
		if got := redactNotifyURL(in); got != want {
			t.Errorf("redactNotifyURL(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestSplitURLs(t *testing.T) {
	for in, want := range map[string][]string{
		"":                           nil,
		"generic://a/x, slack://b@c": {"generic://a/x", "slack://b@c"},
		"telegram://t@telegram?chats=@a,-100,@b,ntfy://n/t": {"telegram://t@telegram?chats=@a,-100,@b", "ntfy://n/t"},
		"smtp://h/?from=a@x&to=b@x,c@x\ngotify://g/tok\n":   {"smtp://h/?from=a@x&to=b@x,c@x", "gotify://g/tok"},
	} {
		if got := splitURLs(in); strings.Join(got, " ") != strings.Join(want, " ") || len(got) != len(want) {
			t.Errorf("splitURLs(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestNotifyConfig_READMEExamples: every URL example of the README's Notifications validates.
func TestNotifyConfig_READMEExamples(t *testing.T) {
	for _, u := range []string{
		"generic://hooks.example.com/snapvisor?template=json",
		"generic+https://hooks.example.com/snapvisor",
		"generic://127.0.0.1:8080/hook?disabletls=yes",
		"slack://xoxb:123456789012-1234567890123-4mt0t4l1YL3g1T5L4cK70k3N@C001CH4NN3L",
		"slack://hook:WNA3PBYV6-F20DUQND3RQ-Webc4MAvoacrpPakR8phF0zi@webhook",
		"discord://TOKEN@123456789012345678",
		"teams://11111111-4444-4444-8444-cccccccccccc@22222222-4444-4444-8444-cccccccccccc/33333333012222222222333333333344/44444444-4444-4444-8444-cccccccccccc/V2ESyij_gAljSoUQHvZoZYzlpAoAXExyOl26dlf1xHEx05?host=example.webhook.office.com",
		"smtp://user:password@mail.example.com:587/?from=backup@example.com&to=ops@example.com",
		"smtp://relay.internal:25/?from=backup@example.com&to=ops@example.com&encryption=None&usestarttls=No&auth=None",
		"ntfy://ntfy.sh/my-topic",
		"gotify://gotify.example.com/AbCdEfGhIjKlMnO",
		"telegram://110201543:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw@telegram?chats=@channel,-100123456",
	} {
		if err := (NotifyConfig{URLs: config.Secret(u)}).Validate(); err != nil {
			t.Errorf("%s: %v", u, err)
		}
	}
}
