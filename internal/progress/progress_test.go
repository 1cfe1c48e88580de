package progress

import (
	"bytes"
	"context"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestMeter_Track(t *testing.T) {
	t.Run("nil", func(t *testing.T) {
		var m *Meter // From(ctx) without a Meter: every call is ignored
		m.Track("x", nil, 1)
		if s := m.State(); s.Seq != 0 || s.Total != -1 {
			t.Errorf("nil Meter state %+v", s)
		}
		if From(context.Background()) != nil {
			t.Error("From a bare context is not nil")
		}
	})
	t.Run("phases", func(t *testing.T) {
		m := &Meter{}
		ctx := NewContext(context.Background(), m)
		var n atomic.Int64
		n.Store(100) // counted before the phase: not the phase's
		From(ctx).Track("download", &n, 1000)
		n.Add(250)
		if s := m.State(); s.Phase != "download" || s.Done != 250 || s.Total != 1000 || s.Seq != 1 {
			t.Errorf("state %+v, want download 250/1000 #1", s)
		}
		var r atomic.Int64
		m.Track("restore", &r, -1)
		r.Add(7)
		if s := m.State(); s.Phase != "restore" || s.Done != 7 || s.Total != -1 || s.Seq != 2 {
			t.Errorf("state %+v, want restore 7/? #2", s)
		}
	})
}

// syncBuffer is a bytes.Buffer the bar's goroutine writes while the test reads.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

func TestStartBar(t *testing.T) {
	var out syncBuffer
	m := &Meter{}
	stop := StartBar(&out, m)
	var n atomic.Int64
	m.Track("verify snapshot-1.tar.gz", &n, 4<<20)
	n.Add(1 << 20)
	drawn := func(what string) {
		deadline := time.Now().Add(10 * time.Second)
		for !strings.Contains(out.String(), what) {
			if time.Now().After(deadline) {
				t.Fatalf("%q never drawn: %q", what, out.String())
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	drawn("25%")
	n.Add(3 << 20) // the end comes between two redraws: still drawn at 100%
	var k atomic.Int64
	m.Track("push to file:///x", &k, 2<<20)
	k.Add(1 << 20) // stopped half way: the line stays at 50%
	stop()
	s := out.String()
	for _, want := range []string{"verify snapshot-1.tar.gz", "100%", "4.0 MiB", "push to file:///x", "50%"} {
		if !strings.Contains(s, want) {
			t.Errorf("the bar's output lacks %q:\n%q", want, s)
		}
	}
}
