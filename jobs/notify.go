package jobs

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"regexp"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"text/template"
	"time"

	"github.com/nicholas-fedor/shoutrrr/pkg/router"
	"github.com/nicholas-fedor/shoutrrr/pkg/types"
	"go.uber.org/zap"

	"snapvisor/config"
)

// NotifyConfig is the notification and heartbeat settings (SNAPVISOR_NOTIFY_*,
// SNAPVISOR_HEARTBEAT_URL). The URLs carry tokens: they are secrets.
type NotifyConfig struct {
	URLs         config.Secret `envconfig:"SNAPVISOR_NOTIFY_URLS" desc:"comma-separated shoutrrr URLs notified of snapshot, push, drill and health events: generic://, slack://, discord://, teams://, smtp://, ntfy://, gotify://, telegram://... (see the README's Notifications); empty: off"`
	Level        string        `envconfig:"SNAPVISOR_NOTIFY_LEVEL" default:"error" desc:"error: failed snapshots, pushes and drills, health turning bad; warn adds warnings (skipped or shrunk snapshots, replication failures); info adds every success"`
	Template     string        `envconfig:"SNAPVISOR_NOTIFY_TEMPLATE" desc:"Go text/template of the message over the event: .Event .Level .Host .Reason .Snapshot .Size .Duration .Remotes (.Name .OK .Error) .Error .Time; empty: a one-paragraph summary"`
	HeartbeatURL config.Secret `envconfig:"SNAPVISOR_HEARTBEAT_URL" desc:"healthchecks.io / Uptime Kuma style URL: GET after each good snapshot, GET URL/fail after a failed one (or one a remote did not get); empty: off"`
}

// Notification levels, least to most verbose.
const (
	NotifyError = "error"
	NotifyWarn  = "warn"
	NotifyInfo  = "info"
)

// Events a notification is about (Event.Event).
const (
	EventSnapshotFailed  = "snapshot failed"
	EventPushFailed      = "push failed"
	EventSnapshotShrunk  = "snapshot shrunk"
	EventSnapshotSkipped = "snapshot skipped"
	EventSnapshotDone    = "snapshot done"
	EventDrillFailed     = "drill failed"
	EventDrillPassed     = "drill passed"
	EventReplicateFailed = "replication failed"
	EventReplicateDone   = "replication done"
	EventUnhealthy       = "unhealthy"
	EventHealthy         = "healthy again"
)

// notifyTimeout bounds each attempt to deliver a notification or a heartbeat
// (there is one retry); notifyDrain bounds the delivery of what is still
// queued at exit; notifyQueue is how many deliveries may wait (more are
// dropped, never waited for).
const (
	notifyTimeout = 10 * time.Second
	notifyDrain   = 30 * time.Second
	notifyQueue   = 64
)

// defaultNotifyTemplate is the message when SNAPVISOR_NOTIFY_TEMPLATE is empty.
const defaultNotifyTemplate = `snapvisor on {{.Host}}: {{.Event}}{{with .Snapshot}} {{.}}{{end}}` +
	`{{with .Size}}, {{.}} bytes{{end}}{{with .Duration}}, took {{.}}{{end}}` +
	`{{with .Error}}
error: {{.}}{{end}}{{range .Remotes}}
remote {{.Name}}: {{if .OK}}ok{{else}}failed: {{.Error}}{{end}}{{end}}`

// Event is what a notification tells: the template's data.
type Event struct {
	Event    string        // one of the Event* constants, e.g. "snapshot failed"
	Level    string        // error, warn or info
	Host     string        // the host name (the container's)
	Reason   string        // what triggered the run: schedule, start, request, standalone, exit...
	Snapshot string        // the snapshot's name (a drill's: the one restored)
	Size     int64         // bytes
	Duration time.Duration // how long the run took (rounded to the millisecond)
	Remotes  []EventRemote // each remote's outcome
	Error    string        // what went wrong (the health problem for "unhealthy")
	Time     time.Time     // when the event happened (UTC)
}

// EventRemote is one remote's outcome in an Event.
type EventRemote struct {
	Name  string // redacted URL
	OK    bool
	Error string
}

// Validate checks the level, the template (parsed and run over a sample
// event) and every notification URL (shoutrrr builds its sender), and the
// heartbeat URL: each failure is a *config.Error naming its variable; a URL's
// value is never shown.
func (c NotifyConfig) Validate() error {
	if _, err := c.build(); err != nil {
		return err
	}
	return nil
}

// notifySettings is a validated NotifyConfig.
type notifySettings struct {
	level     int
	tmpl      *template.Template
	senders   []sender
	heartbeat string
}

func levelRank(l string) (int, bool) {
	switch l {
	case NotifyError:
		return 0, true
	case NotifyWarn:
		return 1, true
	case NotifyInfo:
		return 2, true
	}
	return 0, false
}

func (c NotifyConfig) build() (notifySettings, error) {
	var s notifySettings
	level := strings.ToLower(strings.TrimSpace(c.Level))
	if level == "" {
		level = NotifyError // a Config built in code
	}
	rank, ok := levelRank(level)
	if !ok {
		return s, config.Invalid("NOTIFY_LEVEL", c.Level, "error, warn or info")
	}
	s.level = rank
	text := c.Template
	if strings.TrimSpace(text) == "" {
		text = defaultNotifyTemplate
	}
	t, err := template.New("SNAPVISOR_NOTIFY_TEMPLATE").Option("missingkey=error").Parse(text)
	if err == nil {
		err = t.Execute(&bytes.Buffer{}, sampleEvent()) // a missing field fails here, not at the first failure
	}
	if err != nil {
		e := config.Invalid("NOTIFY_TEMPLATE", c.Template, "a Go text/template over .Event .Level .Host .Reason .Snapshot .Size .Duration .Remotes (.Name .OK .Error) .Error .Time")
		e.Err = err
		return s, e
	}
	s.tmpl = t
	for i, raw := range splitURLs(c.URLs.Reveal()) {
		snd, err := newSender(raw)
		if err != nil {
			return s, &config.Error{Var: config.Var("NOTIFY_URLS"), Secret: true,
				Err:      fmt.Errorf("URL %d (%s): %s", i+1, redactNotifyURL(raw), scrub(err.Error(), raw)),
				Accepted: "comma-separated shoutrrr URLs such as generic+https://host/path, slack://token@channel, smtp://host:25/?from=a@b&to=c@d (see the README's Notifications)"}
		}
		s.senders = append(s.senders, snd)
	}
	if hb := strings.TrimSpace(c.HeartbeatURL.Reveal()); hb != "" {
		u, err := url.Parse(hb)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			e := &config.Error{Var: config.Var("HEARTBEAT_URL"), Secret: true, Accepted: "an http:// or https:// URL (healthchecks.io, Uptime Kuma push URL)"}
			if err != nil {
				e.Err = errors.New(scrub(err.Error(), hb))
			}
			return s, e
		}
		s.heartbeat = strings.TrimSuffix(hb, "/")
	}
	return s, nil
}

// splitURLs splits SNAPVISOR_NOTIFY_URLS into URLs: at newlines, and at
// commas followed by a scheme (name://), since shoutrrr's URLs have lists of
// their own (telegram's chats=@a,@b, smtp's to=a@x,b@x).
func splitURLs(v string) []string {
	var out []string
	for _, line := range strings.Split(v, "\n") {
		for i, part := range strings.Split(line, ",") {
			p := strings.TrimSpace(part)
			switch {
			case p == "":
			case i > 0 && len(out) > 0 && !schemeRE().MatchString(p):
				out[len(out)-1] += "," + p
			default:
				out = append(out, p)
			}
		}
	}
	return out
}

// schemeRE matches the start of a URL: its scheme and "://".
var schemeRE = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^[A-Za-z][A-Za-z0-9+.-]*://`) })

func sampleEvent() Event {
	return Event{Event: EventSnapshotFailed, Level: NotifyError, Host: "host", Reason: "schedule", Snapshot: "snapshot-20060102T150405Z.tar.gz",
		Size: 1, Duration: time.Second, Remotes: []EventRemote{{Name: "file:///x", OK: true}}, Error: "e", Time: time.Unix(0, 0).UTC()}
}

// sender delivers a message to one notification URL.
type sender struct {
	name string // scheme://host: what the logs show
	raw  string // the URL: scrubbed from every error
	svc  types.Service
}

// newSender builds the shoutrrr service of one URL (validating it). The
// router is only used to find and initialise the service: its own Send waits
// for a timed-out service on an unbuffered channel forever, so deliver sends.
func newSender(raw string) (sender, error) {
	rt, err := router.New(nil)
	if err != nil {
		return sender{}, err
	}
	svc, err := rt.Locate(raw)
	if err != nil {
		return sender{}, err
	}
	return sender{name: redactNotifyURL(raw), raw: raw, svc: svc}, nil
}

// redactNotifyURL is what logs show of a notification URL: its scheme and
// host only. store.Redact keeps user names and paths, but shoutrrr URLs carry
// their tokens there (telegram://TOKEN@telegram, gotify://host/TOKEN).
func redactNotifyURL(raw string) string {
	u, err := url.Parse(strings.TrimSpace(raw))
	if err != nil || u.Scheme == "" {
		return "***"
	}
	if u.Host == "" {
		return u.Scheme + "://***"
	}
	return u.Scheme + "://" + u.Host
}

// scrub removes every secret-looking part of raw (user, password, path
// segments, query values, fragment, the whole URL) from msg: shoutrrr's and
// net/http's errors quote the URL they were given.
func scrub(msg, raw string) string {
	secrets := []string{raw}
	if u, err := url.Parse(strings.TrimSpace(raw)); err == nil {
		if u.User != nil {
			p, _ := u.User.Password()
			secrets = append(secrets, u.User.String(), u.User.Username(), p)
		}
		secrets = append(secrets, strings.Split(u.Path, "/")...)
		for _, vs := range u.Query() {
			secrets = append(secrets, vs...)
		}
		secrets = append(secrets, u.RawQuery, u.Fragment, u.Opaque)
	}
	var all []string
	for _, s := range secrets {
		if len(s) < 3 {
			continue
		}
		all = append(all, s, url.PathEscape(s), url.QueryEscape(s))
	}
	slices.SortFunc(all, func(a, b string) int { return len(b) - len(a) }) // longest first
	for _, s := range all {
		msg = strings.ReplaceAll(msg, s, "***")
	}
	return msg
}

// delivery is one queued item: a message (nil: none) and a heartbeat ("":
// none, "ok" or "fail").
type delivery struct {
	event     *Event
	heartbeat string
}

// Notifier delivers notifications and heartbeats asynchronously: runs only
// queue (never wait); a full queue drops. Serve owns the goroutine that
// sends (run); what is still queued when it ends is sent by flush, bounded.
// A failed delivery is logged and counted, never notified. A nil *Notifier
// does nothing.
type Notifier struct {
	s       notifySettings
	log     *zap.Logger
	metrics *Metrics
	host    string
	queue   chan delivery
	timeout time.Duration // each attempt's bound: notifyTimeout (tests shorten it)
	client  *http.Client
	healthy atomic.Bool // as last evaluated after a run (health turning bad is notified once)
}

// NewNotifier builds the notifier of c, or nil when c sends nothing (no URL,
// no heartbeat): then nothing of shoutrrr is built.
func NewNotifier(c NotifyConfig, log *zap.Logger, m *Metrics) (*Notifier, error) {
	s, err := c.build()
	if err != nil || (len(s.senders) == 0 && s.heartbeat == "") {
		return nil, err
	}
	host, _ := os.Hostname()
	n := &Notifier{s: s, log: log.With(zap.String("job", "notify")), metrics: m, host: host,
		queue: make(chan delivery, notifyQueue), timeout: notifyTimeout}
	n.client = &http.Client{Timeout: notifyTimeout}
	n.healthy.Store(true)
	return n, nil
}

// SetNotify gives the runner the notifier of c (NewNotifier).
func (r *Runner) SetNotify(c NotifyConfig) error {
	n, err := NewNotifier(c, r.log, r.metrics)
	if err != nil {
		return err
	}
	r.notifier = n
	return nil
}

// FlushNotifications delivers what is still queued, at most until ctx ends
// or notifyDrain has passed: the standalone `entrypoint snapshot` calls it
// before it exits, the entrypoint after its final snapshot.
func (r *Runner) FlushNotifications(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, notifyDrain)
	defer cancel()
	r.notifier.flush(ctx)
}

// wants reports whether an event of level is sent at the configured level.
func (n *Notifier) wants(level string) bool {
	rank, _ := levelRank(level)
	return len(n.s.senders) > 0 && rank <= n.s.level
}

// enqueue queues d without waiting: a full queue drops it (logged, counted).
func (n *Notifier) enqueue(d delivery) {
	if d.event == nil && d.heartbeat == "" {
		return
	}
	if d.event != nil {
		d.event.Host, d.event.Time = n.host, time.Now().UTC()
	}
	select {
	case n.queue <- d:
	default:
		n.metrics.notifyFailures.Inc()
		fields := []zap.Field{zap.Int("queue", cap(n.queue))}
		if d.event != nil {
			fields = append(fields, zap.String("event", d.event.Event))
		}
		n.log.Warn("notification dropped: the queue is full (the receivers are slow or down)", fields...)
	}
}

// event queues ev when its level is wanted, with the heartbeat hb.
func (n *Notifier) event(ev Event, hb string) {
	if n == nil {
		return
	}
	d := delivery{}
	if n.s.heartbeat != "" {
		d.heartbeat = hb
	}
	if n.wants(ev.Level) {
		d.event = &ev
	}
	n.enqueue(d)
}

// run delivers queued items until ctx ends. Serve owns it.
func (n *Notifier) run(ctx context.Context) {
	if n == nil {
		return
	}
	for {
		select {
		case d := <-n.queue:
			n.deliver(ctx, d)
		case <-ctx.Done():
			return
		}
	}
}

// flush delivers what is queued until the queue is empty or ctx ends.
func (n *Notifier) flush(ctx context.Context) {
	if n == nil {
		return
	}
	for ctx.Err() == nil {
		select {
		case d := <-n.queue:
			n.deliver(ctx, d)
		default:
			return
		}
	}
}

// deliver sends d's heartbeat and its message to every URL, each with one
// retry; ctx cuts the whole short (an attempt in flight is abandoned).
func (n *Notifier) deliver(ctx context.Context, d delivery) {
	if d.heartbeat != "" {
		u := n.s.heartbeat
		if d.heartbeat == "fail" {
			u += "/fail"
		}
		n.attempt(ctx, redactNotifyURL(n.s.heartbeat), n.s.heartbeat, "heartbeat", func(ctx context.Context) error { return n.ping(ctx, u) })
	}
	if d.event == nil {
		return
	}
	msg := n.render(*d.event)
	title := "snapvisor on " + d.event.Host + ": " + d.event.Event
	for _, s := range n.s.senders {
		n.attempt(ctx, s.name, s.raw, d.event.Event, func(context.Context) error {
			p := types.Params{types.TitleKey: title}
			return s.svc.Send(msg, &p)
		})
	}
}

// attempt runs send twice at most, each bounded by n.timeout, in its own
// goroutine (shoutrrr's services take no context: one that hangs is left
// behind, it ends with its connection). A final failure is logged with the
// URL redacted and the error scrubbed of it, and counted.
func (n *Notifier) attempt(ctx context.Context, name, raw, what string, send func(context.Context) error) {
	var err error
	for try := range 2 {
		if try > 0 && ctx.Err() != nil {
			break
		}
		err = n.bounded(ctx, send)
		if err == nil {
			return
		}
	}
	n.metrics.notifyFailures.Inc()
	n.log.Warn("notification failed (after one retry); it is not sent again",
		zap.String("url", name), zap.String("event", what), zap.String("error", scrub(err.Error(), raw)))
}

func (n *Notifier) bounded(ctx context.Context, send func(context.Context) error) error {
	ctx, cancel := context.WithTimeout(ctx, n.timeout)
	defer cancel()
	done := make(chan error, 1) // buffered: a send that outlives its bound never blocks
	go func() { done <- send(ctx) }()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			return fmt.Errorf("no answer within %v: %w", n.timeout, ctx.Err())
		}
		return fmt.Errorf("abandoned: %w", ctx.Err()) // the exit bound (flush) ended first
	}
}

// ping GETs a heartbeat URL; a status of 400 or more is a failure.
func (n *Notifier) ping(ctx context.Context, u string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return err
	}
	resp, err := n.client.Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode >= 400 {
		return fmt.Errorf("heartbeat answered %s", resp.Status)
	}
	return nil
}

// render runs the template over ev; a template that fails on this event
// falls back to the default one (logged).
func (n *Notifier) render(ev Event) string {
	var b bytes.Buffer
	if err := n.s.tmpl.Execute(&b, ev); err != nil {
		n.log.Warn("SNAPVISOR_NOTIFY_TEMPLATE failed on this event: the default message is sent", zap.Error(err))
		b.Reset()
		_ = template.Must(template.New("default").Parse(defaultNotifyTemplate)).Execute(&b, ev)
	}
	return b.String()
}

// runEvent is the event of a snapshot run and its heartbeat: failed
// (error), a remote did not get it (error), shrunk or skipped (warn), done
// (info). A skipped run sends no heartbeat.
func runEvent(res Result) (Event, string) {
	ev := Event{Reason: res.Reason, Snapshot: res.Snapshot, Size: res.Size, Duration: res.Duration.Round(time.Millisecond), Error: res.Error}
	var failed []string
	for _, p := range res.Remotes {
		ev.Remotes = append(ev.Remotes, EventRemote{Name: p.Remote, OK: p.Error == "", Error: p.Error})
		if p.Error != "" {
			failed = append(failed, p.Remote+": "+p.Error)
		}
	}
	switch {
	case res.Skipped != "":
		ev.Event, ev.Level, ev.Error = EventSnapshotSkipped, NotifyWarn, res.Skipped
		return ev, ""
	case !res.OK():
		ev.Event, ev.Level = EventSnapshotFailed, NotifyError
		return ev, "fail"
	case len(failed) > 0:
		ev.Event, ev.Level, ev.Error = EventPushFailed, NotifyError, strings.Join(failed, "; ")
		return ev, "fail"
	case res.Shrunk != "":
		ev.Event, ev.Level, ev.Error = EventSnapshotShrunk, NotifyWarn, res.Shrunk
		return ev, "ok"
	}
	ev.Event, ev.Level = EventSnapshotDone, NotifyInfo
	return ev, "ok"
}

// notifyRun queues the notification and heartbeat of a finished run, then
// whether health turned bad.
func (r *Runner) notifyRun(res Result) {
	if r.notifier == nil {
		return
	}
	ev, hb := runEvent(res)
	r.notifier.event(ev, hb)
	r.notifyHealth()
}

// notifyDrill queues a drill's notification (failed: error, passed: info).
func (r *Runner) notifyDrill(d DrillResult) {
	if r.notifier == nil {
		return
	}
	ev := Event{Event: EventDrillPassed, Level: NotifyInfo, Reason: "drill", Snapshot: d.Snapshot, Size: d.Bytes,
		Duration: d.Duration.Round(time.Millisecond), Error: d.Error,
		Remotes: []EventRemote{{Name: d.Remote, OK: d.OK(), Error: d.Error}}}
	if !d.OK() {
		ev.Event, ev.Level = EventDrillFailed, NotifyError
	}
	r.notifier.event(ev, "")
	r.notifyHealth()
}

// notifyReplication queues a replication's notification (not all in step:
// warn, done: info; skipped: none).
func (r *Runner) notifyReplication(res ReplicateResult) {
	if r.notifier == nil || res.Skipped != "" {
		return
	}
	ev := Event{Event: EventReplicateDone, Level: NotifyInfo, Reason: kindReplicate, Duration: res.Duration.Round(time.Millisecond), Error: res.Error}
	var errs []string
	if res.Error != "" {
		errs = append(errs, res.Error)
	}
	for _, rr := range res.Remotes {
		ev.Remotes = append(ev.Remotes, EventRemote{Name: rr.Remote, OK: rr.Missing == 0 && len(rr.Errors) == 0, Error: strings.Join(rr.Errors, "; ")})
		for _, e := range rr.Errors {
			errs = append(errs, rr.Remote+": "+e)
		}
	}
	if !res.OK() {
		ev.Event, ev.Level, ev.Error = EventReplicateFailed, NotifyWarn, strings.Join(errs, "; ")
	}
	r.notifier.event(ev, "")
}

// notifyHealth evaluates health (as /healthz would, once Serve has set the
// max age) and notifies its turning bad (error) or good again (info): once
// per transition, never per scrape.
func (r *Runner) notifyHealth() {
	r.mu.Lock()
	maxAge := r.healthMaxAge
	r.mu.Unlock()
	if maxAge == 0 {
		return // not serving (a standalone run): no health to speak of
	}
	st := r.status(time.Time{}, maxAge)
	if was := r.notifier.healthy.Swap(st.Healthy); was == st.Healthy {
		return
	}
	ev := Event{Event: EventHealthy, Level: NotifyInfo}
	if !st.Healthy {
		ev.Event, ev.Level, ev.Error = EventUnhealthy, NotifyError, st.Problem
	}
	r.notifier.event(ev, "")
}
