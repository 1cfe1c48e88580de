// Package progress carries the advance of one long operation (a snapshot,
// a restore, a download, a copy, a verify) from the code doing it to
// whoever shows it: the logs every SNAPVISOR_PROGRESS_INTERVAL, or a
// progress line at a terminal (Bar).
//
// The work counts its bytes in an atomic counter it already keeps
// (fsx.CountingReader/Writer) and hands the Meter a pointer to it with the
// phase's name and total: reading the advance costs the work nothing.
package progress

import (
	"context"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"snapvisor/internal/fsx"
)

// Meter is the advance of one operation, phase by phase. Its methods are
// safe for concurrent use, and a nil *Meter ignores every call, so work
// can report to From(ctx) whether or not anyone watches.
type Meter struct {
	mu    sync.Mutex
	phase string
	done  *atomic.Int64
	base  int64 // done's value when the phase started
	total int64 // -1: unknown
	since time.Time
	seq   int   // counts phases, so a watcher sees a new phase with the same name
	ended State // the final state of the phase before the current one
}

// State is what a Meter says at one moment.
type State struct {
	Phase   string        // "" before the first phase
	Done    int64         // bytes done in this phase
	Total   int64         // bytes the phase will take; -1 when unknown
	Elapsed time.Duration // since the phase started
	Seq     int           // the phase's number, from 1
}

// Rate is the phase's average throughput in bytes per second.
func (s State) Rate() float64 {
	if s.Elapsed <= 0 {
		return 0
	}
	return float64(s.Done) / s.Elapsed.Seconds()
}

// Track starts a phase: done counts its bytes from now on (what it holds
// already is not counted), total is how many it will take (-1: unknown).
func (m *Meter) Track(phase string, done *atomic.Int64, total int64) {
	if m == nil {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.seq > 0 {
		m.ended = m.state()
	}
	m.phase, m.done, m.total, m.since = phase, done, total, time.Now()
	m.base = 0
	if done != nil {
		m.base = done.Load()
	}
	m.seq++
}

// Reader starts the phase reading r and returns r counted; a nil Meter
// returns r itself, so that whoever reads it still sees its abilities
// (an *os.File's ReadFrom, sections, seeks) when nobody watches.
func (m *Meter) Reader(phase string, r io.Reader, total int64) io.Reader {
	if m == nil {
		return r
	}
	cr := &fsx.CountingReader{R: r}
	m.Track(phase, &cr.N, total)
	return cr
}

// State returns the current phase's advance.
func (m *Meter) State() State {
	if m == nil {
		return State{Total: -1}
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.state()
}

// Ended returns the final state of phase seq when it is the one that ended
// last (a watcher that saw it running draws its end), else false.
func (m *Meter) Ended(seq int) (State, bool) {
	if m == nil {
		return State{}, false
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.ended, seq > 0 && m.ended.Seq == seq
}

func (m *Meter) state() State {
	s := State{Phase: m.phase, Total: m.total, Seq: m.seq}
	if m.seq > 0 {
		s.Elapsed = time.Since(m.since)
	}
	if m.done != nil {
		s.Done = m.done.Load() - m.base
	}
	return s
}

type meterKey struct{}

// NewContext returns ctx carrying m: the work below reports to it.
func NewContext(ctx context.Context, m *Meter) context.Context {
	return context.WithValue(ctx, meterKey{}, m)
}

// From returns the Meter ctx carries, or nil (which ignores every call).
func From(ctx context.Context) *Meter {
	m, _ := ctx.Value(meterKey{}).(*Meter)
	return m
}
