package store

import (
	"context"
	"io"
	"strings"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"go.uber.org/zap"
)

// Instrumented is a Store that counts and logs (at debug level) the
// operations of another, on a VictoriaMetrics set:
//
//	snapvisor_remote_operations_total{remote,op,result="ok|error"}
//	snapvisor_remote_operation_seconds_total{remote,op}
//	snapvisor_remote_uploaded_bytes_total{remote}
//	snapvisor_remote_push_total{remote,result="ok|error"}          (remote.Push, remote.PushStream)
//	snapvisor_remote_last_push_success_timestamp_seconds{remote}
//	snapvisor_remote_lease_conflict{remote}                         1 while another writer holds its lease
type Instrumented struct {
	Store
	set   *metrics.Set
	log   *zap.Logger
	label string // remote="..." (escaped)
}

var _ Store = (*Instrumented)(nil)

// WithMetrics wraps s; set may be shared by several stores (labels tell them apart).
func WithMetrics(s Store, set *metrics.Set, log *zap.Logger) *Instrumented {
	if log == nil {
		log = zap.NewNop()
	}
	return &Instrumented{Store: s, set: set, log: log.With(zap.String("remote", s.Name())),
		label: `remote="` + escapeLabel(s.Name()) + `"`}
}

// Unwrap returns the wrapped store.
func (m *Instrumented) Unwrap() Store { return m.Store }

func escapeLabel(v string) string {
	return strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`).Replace(v)
}

func (m *Instrumented) done(op string, start time.Time, err error, fields ...zap.Field) {
	d := time.Since(start)
	result := "ok"
	if err != nil {
		result = "error"
	}
	m.set.GetOrCreateCounter(`snapvisor_remote_operations_total{` + m.label + `,op="` + op + `",result="` + result + `"}`).Inc()
	m.set.GetOrCreateFloatCounter(`snapvisor_remote_operation_seconds_total{` + m.label + `,op="` + op + `"}`).Add(d.Seconds())
	if ce := m.log.Check(zap.DebugLevel, "remote "+op); ce != nil {
		ce.Write(append(fields, zap.Duration("duration", d), zap.Error(err))...)
	}
}

func (m *Instrumented) Put(ctx context.Context, key string, r io.Reader, size int64) error {
	start := time.Now()
	err := m.Store.Put(ctx, key, r, size)
	if err == nil && size > 0 {
		m.set.GetOrCreateCounter(`snapvisor_remote_uploaded_bytes_total{` + m.label + `}`).Add(int(size))
	}
	m.done("put", start, err, zap.String("key", key), zap.Int64("size", size))
	return err
}

func (m *Instrumented) Get(ctx context.Context, key string) (io.ReadCloser, error) {
	start := time.Now()
	rc, err := m.Store.Get(ctx, key)
	m.done("get", start, err, zap.String("key", key))
	return rc, err
}

func (m *Instrumented) List(ctx context.Context, prefix string) ([]Object, error) {
	start := time.Now()
	objs, err := m.Store.List(ctx, prefix)
	m.done("list", start, err, zap.String("prefix", prefix), zap.Int("objects", len(objs)))
	return objs, err
}

func (m *Instrumented) Delete(ctx context.Context, key string) error {
	start := time.Now()
	err := m.Store.Delete(ctx, key)
	m.done("delete", start, err, zap.String("key", key))
	return err
}

// Pushed records the result of a whole snapshot push (remote.Push, remote.PushStream).
func (m *Instrumented) Pushed(err error) {
	result := "ok"
	if err != nil {
		result = "error"
	}
	m.set.GetOrCreateCounter(`snapvisor_remote_push_total{` + m.label + `,result="` + result + `"}`).Inc()
	if err == nil {
		m.set.GetOrCreateGauge(`snapvisor_remote_last_push_success_timestamp_seconds{`+m.label+`}`, nil).
			Set(float64(time.Now().UnixNano()) / 1e9)
	}
}

// LeaseConflict records whether another writer holds this store's lease
// (remote.AcquireLease refused), or not (this writer holds it).
func (m *Instrumented) LeaseConflict(held bool) {
	v := 0.0
	if held {
		v = 1
	}
	m.set.GetOrCreateGauge(`snapvisor_remote_lease_conflict{`+m.label+`}`, nil).Set(v)
}
