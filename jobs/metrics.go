package jobs

import (
	"bytes"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
)

// Metrics are the Prometheus metrics of the snapshot jobs, on their own registry.
type Metrics struct {
	Registry     *prometheus.Registry
	lastSuccess  prometheus.Gauge
	lastDuration prometheus.Gauge
	lastSize     prometheus.Gauge
	successes    prometheus.Counter
	failures     prometheus.Counter
	coalesced    prometheus.Counter
	running      prometheus.Gauge
	hookFailures *prometheus.CounterVec
	restarts     prometheus.Counter
}

// NewMetrics registers every metric on a fresh registry.
func NewMetrics() *Metrics {
	m := &Metrics{
		Registry:     prometheus.NewRegistry(),
		lastSuccess:  prometheus.NewGauge(prometheus.GaugeOpts{Name: "snapvisor_last_success_timestamp_seconds", Help: "Unix time of the last successful snapshot."}),
		lastDuration: prometheus.NewGauge(prometheus.GaugeOpts{Name: "snapvisor_last_duration_seconds", Help: "Duration of the last snapshot run."}),
		lastSize:     prometheus.NewGauge(prometheus.GaugeOpts{Name: "snapvisor_last_size_bytes", Help: "Size of the last successful snapshot."}),
		successes:    prometheus.NewCounter(prometheus.CounterOpts{Name: "snapvisor_snapshots_success_total", Help: "Successful snapshot runs."}),
		failures:     prometheus.NewCounter(prometheus.CounterOpts{Name: "snapvisor_snapshots_failure_total", Help: "Failed snapshot runs."}),
		coalesced:    prometheus.NewCounter(prometheus.CounterOpts{Name: "snapvisor_triggers_coalesced_total", Help: "Triggers that joined a run already in progress."}),
		running:      prometheus.NewGauge(prometheus.GaugeOpts{Name: "snapvisor_snapshot_running", Help: "1 while a snapshot runs."}),
		hookFailures: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "snapvisor_hook_failures_total", Help: "Failed or timed-out hooks."}, []string{"hook"}),
		restarts:     prometheus.NewCounter(prometheus.CounterOpts{Name: "snapvisor_service_restarts_total", Help: "Times the service was started again (freeze=stop)."}),
	}
	m.Registry.MustRegister(m.lastSuccess, m.lastDuration, m.lastSize, m.successes, m.failures,
		m.coalesced, m.running, m.hookFailures, m.restarts)
	return m
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
