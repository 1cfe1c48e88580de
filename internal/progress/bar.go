package progress

import (
	"fmt"
	"io"
	"time"

	"github.com/schollz/progressbar/v3"
)

// barTick is how often the progress line is redrawn from the Meter.
const barTick = 200 * time.Millisecond

// StartBar draws m on w (a terminal) as a live progress line per phase:
// the phase, bytes done / total where known, the rate and the time left,
// redrawn every barTick by one goroutine (so no throttle of the library's:
// it would drop the final state). A phase that starts and ends between two
// redraws is not drawn. stop ends it after drawing the
// final state of the last phase and returns once the goroutine is gone.
// A finished phase keeps its line; the next one starts a new line.
func StartBar(w io.Writer, m *Meter) (stop func()) {
	done := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		var bar *progressbar.ProgressBar
		seq := 0
		draw := func() {
			s := m.State()
			if s.Seq == 0 {
				return
			}
			if s.Seq != seq {
				if e, ok := m.Ended(seq); ok {
					_ = bar.Set64(e.Done) // the phase's last bytes, drawn before its line ends
				}
				end(w, bar)
				bar, seq = newBar(w, s), s.Seq
			}
			_ = bar.Set64(s.Done)
		}
		t := time.NewTicker(barTick)
		defer t.Stop()
		for {
			select {
			case <-done:
				draw()
				end(w, bar)
				return
			case <-t.C:
				draw()
			}
		}
	}()
	return func() { close(done); <-finished }
}

func newBar(w io.Writer, s State) *progressbar.ProgressBar {
	total := s.Total
	if total < 0 {
		total = -1 // a spinner with the bytes and the rate
	}
	return progressbar.NewOptions64(total,
		progressbar.OptionSetWriter(w),
		progressbar.OptionSetDescription(s.Phase),
		progressbar.OptionShowBytes(true),
		progressbar.OptionUseIECUnits(true),
		progressbar.OptionShowCount(),
		progressbar.OptionShowTotalBytes(true),
		progressbar.OptionSetPredictTime(true),
		progressbar.OptionSetElapsedTime(true),
		progressbar.OptionSetWidth(24),
		progressbar.OptionSetRenderBlankState(true),
	)
}

// end leaves bar's line with its last state drawn and moves to the next line.
func end(w io.Writer, bar *progressbar.ProgressBar) {
	if bar == nil {
		return
	}
	if max := bar.GetMax64(); max > 0 && bar.State().CurrentNum >= max {
		_ = bar.Finish()
	} else {
		_ = bar.Exit()
	}
	fmt.Fprintln(w)
}
