package jobs

import (
	"bytes"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"go.uber.org/zap"
)

// Metrics are the snapshot jobs' Prometheus metrics, on their own set.
// VictoriaMetrics/metrics writes the Prometheus text format with a fraction
// of client_golang's start-up cost and binary size, which an init that must
// start within milliseconds of tini and idle under 8 MiB cannot afford.
type Metrics struct {
	set          *metrics.Set
	lastSuccess  *metrics.Gauge
	lastDuration *metrics.Gauge
	lastSize     *metrics.Gauge
	successes    *metrics.Counter
	failures     *metrics.Counter
	coalesced    *metrics.Counter
	running      *metrics.Gauge
	hookPre      *metrics.Counter
	hookPost     *metrics.Counter
	restarts     *metrics.Counter
	pushFailures *metrics.Counter
	shrunk       *metrics.Gauge   // 1 while the newest snapshot is flagged by the shrink guard
	shrunkTotal  *metrics.Counter // snapshots of an empty or shrunk source
	healthy      *metrics.Gauge   // health's verdict at scrape time: 1 healthy, 0 not
	healthMaxAge *metrics.Gauge   // the last good snapshot's age past which health fails
	// notifyFailures: notifications and heartbeats not delivered (after
	// the retry) or dropped from a full queue.
	notifyFailures *metrics.Counter
}

// NewMetrics creates every metric on a fresh set.
func NewMetrics() *Metrics {
	metrics.ExposeMetadata(true) // # HELP/# TYPE lines; idempotent
	s := metrics.NewSet()
	return &Metrics{
		set:          s,
		lastSuccess:  s.NewGauge("snapvisor_last_success_timestamp_seconds", nil),
		lastDuration: s.NewGauge("snapvisor_last_duration_seconds", nil),
		lastSize:     s.NewGauge("snapvisor_last_size_bytes", nil),
		successes:    s.NewCounter("snapvisor_snapshots_success_total"),
		failures:     s.NewCounter("snapvisor_snapshots_failure_total"),
		coalesced:    s.NewCounter("snapvisor_triggers_coalesced_total"),
		running:      s.NewGauge("snapvisor_snapshot_running", nil),
		hookPre:      s.NewCounter(`snapvisor_hook_failures_total{hook="pre"}`),
		hookPost:     s.NewCounter(`snapvisor_hook_failures_total{hook="post"}`),
		restarts:     s.NewCounter("snapvisor_service_restarts_total"),
		pushFailures: s.NewCounter("snapvisor_push_failures_total"),
		shrunk:       s.NewGauge("snapvisor_last_snapshot_shrunk", nil),
		shrunkTotal:  s.NewCounter("snapvisor_shrunk_snapshots_total"),
		healthy:      s.NewGauge("snapvisor_healthy", nil),
		healthMaxAge: s.NewGauge("snapvisor_health_max_age_seconds", nil),

		notifyFailures: s.NewCounter("snapvisor_notify_failures_total"),
	}
}

// resticAdded records the bytes a restic-format snapshot added to a repository.
func (m *Metrics) resticAdded(repo string, n uint64) {
	m.set.GetOrCreateGauge(fmt.Sprintf("snapvisor_last_added_bytes{repository=%q}", repo), nil).Set(float64(n))
}

// resticSize records a restic repository's size.
func (m *Metrics) resticSize(repo string, n int64) {
	m.set.GetOrCreateGauge(fmt.Sprintf("snapvisor_repository_size_bytes{repository=%q}", repo), nil).Set(float64(n))
}

// replicated records a replication run: per remote, the retained snapshots
// it lacks, how far its newest trails the newest anywhere, the bytes copied
// to it and its failures.
func (m *Metrics) replicated(res ReplicateResult) {
	if res.Skipped != "" {
		return
	}
	for _, rr := range res.Remotes {
		l := fmt.Sprintf("{remote=%q}", rr.Remote)
		m.set.GetOrCreateGauge("snapvisor_replication_missing_snapshots"+l, nil).Set(float64(rr.Missing))
		m.set.GetOrCreateGauge("snapvisor_replication_lag_seconds"+l, nil).Set(rr.Lag)
		m.set.GetOrCreateCounter("snapvisor_replication_copied_bytes_total" + l).Add(int(rr.Bytes))
		m.set.GetOrCreateCounter("snapvisor_replication_failures_total" + l).Add(len(rr.Errors))
	}
	m.set.GetOrCreateCounter("snapvisor_replication_damaged_copies_total").Add(len(res.Damaged))
	if res.OK() {
		m.set.GetOrCreateGauge("snapvisor_replication_last_success_timestamp_seconds", nil).Set(float64(time.Now().Unix()))
	}
}

// drilled records a restore drill's result under its remote's label:
// snapvisor_drill_last_success_timestamp_seconds (when it passed),
// snapvisor_drill_last_ok (1 passed, 0 failed),
// snapvisor_drill_failures_total and snapvisor_drill_last_duration_seconds.
func (m *Metrics) drilled(d DrillResult) {
	label := fmt.Sprintf("{remote=%q}", d.Remote)
	ok := m.set.GetOrCreateGauge("snapvisor_drill_last_ok"+label, nil)
	failures := m.set.GetOrCreateCounter("snapvisor_drill_failures_total" + label)
	m.set.GetOrCreateGauge("snapvisor_drill_last_duration_seconds"+label, nil).Set(d.Duration.Seconds())
	if d.OK() {
		m.set.GetOrCreateGauge("snapvisor_drill_last_success_timestamp_seconds"+label, nil).Set(float64(d.Started.Add(d.Duration).Unix()))
		ok.Set(1)
		return
	}
	ok.Set(0)
	failures.Inc()
}

// health records health's verdict (snapvisor_healthy: 1 healthy, 0 not) and
// the age of the last good snapshot past which it fails
// (snapvisor_health_max_age_seconds: SNAPVISOR_HEALTH_MAX_AGE, by default
// twice the schedule's interval plus the jitter), so that alert rules
// compare against the schedule without knowing it.
func (m *Metrics) health(healthy bool, maxAge time.Duration) {
	v := 0.0
	if healthy {
		v = 1
	}
	m.healthy.Set(v)
	m.healthMaxAge.Set(maxAge.Seconds())
}

// pushed records one snapshot's push outcome on each remote:
// snapvisor_pushes_total{remote,result="ok"|"failed"} (both created at the
// first push, so that increase() sees the first failure) and
// snapvisor_push_last_ok{remote} (1 the last push succeeded, 0 it failed).
// snapvisor_push_failures_total, across remotes, is counted where each
// failure happens.
func (m *Metrics) pushed(results []PushResult) {
	for _, pr := range results {
		ok := m.set.GetOrCreateCounter(fmt.Sprintf(`snapvisor_pushes_total{remote=%q,result="ok"}`, pr.Remote))
		failed := m.set.GetOrCreateCounter(fmt.Sprintf(`snapvisor_pushes_total{remote=%q,result="failed"}`, pr.Remote))
		last := m.set.GetOrCreateGauge(fmt.Sprintf("snapvisor_push_last_ok{remote=%q}", pr.Remote), nil)
		if pr.Error != "" {
			failed.Inc()
			last.Set(0)
			continue
		}
		ok.Inc()
		last.Set(1)
	}
}

// WritePrometheus writes every metric in the Prometheus text format.
func (m *Metrics) WritePrometheus(w io.Writer) { m.set.WritePrometheus(w) }

func (m *Metrics) hookFailed(which string) {
	if which == "pre" {
		m.hookPre.Inc()
		return
	}
	m.hookPost.Inc()
}

// lineLogger logs a hook's output line by line.
type lineLogger struct {
	log *zap.Logger
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *lineLogger) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.buf.Write(p)
	for {
		line, err := l.buf.ReadBytes('\n')
		if err != nil {
			l.buf.Write(line) // incomplete: keep for later
			return len(p), nil
		}
		l.log.Info("hook output", zap.ByteString("line", bytes.TrimRight(line, "\r\n")))
	}
}

func (l *lineLogger) flush() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.buf.Len() > 0 {
		l.log.Info("hook output", zap.ByteString("line", l.buf.Bytes()))
		l.buf.Reset()
	}
}
