package zlog

import (
	"bytes"
	"errors"
	"regexp"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// stamp hides the time, the only part of two lines written apart that differs.
var stamp = regexp.MustCompile(`\d{4}-\d\d-\d\dT[0-9:.]+[-+Z0-9]*`)

// TestCore_SameLinesAsZap: a line written through Core with this package's
// fields is byte for byte the line zap.New(core).Named(name) writes with
// zap's fields, in both formats and at every level, and levels below the
// core's are dropped alike.
func TestCore_SameLinesAsZap(t *testing.T) {
	err := errors.New("boom")
	ours := []zapcore.Field{String("s", "v"), Int("n", -3), Duration("d", 1500*time.Millisecond),
		Stringer("st", time.Second), Error(err), NamedError("cancelled", err), Error(nil),
		Strings("cmd", []string{"sh", "-c", "x y"}), Ints("pids", []int{7, 8})}
	theirs := []zapcore.Field{zap.String("s", "v"), zap.Int("n", -3), zap.Duration("d", 1500*time.Millisecond),
		zap.Stringer("st", time.Second), zap.Error(err), zap.NamedError("cancelled", err), zap.Error(nil),
		zap.Strings("cmd", []string{"sh", "-c", "x y"}), zap.Ints("pids", []int{7, 8})}
	for _, console := range []bool{false, true} {
		t.Run(map[bool]string{false: "json", true: "console"}[console], func(t *testing.T) {
			write := func(l Logger, fields []zapcore.Field) string {
				l.Debug("dropped", fields...)
				l.Info("info line", fields...)
				l.Warn("warn line", fields...)
				l.Error("error line", fields...)
				return ""
			}
			var a, b bytes.Buffer
			newCore := func(w *bytes.Buffer) zapcore.Core {
				ec := EncoderConfig(console)
				enc := zapcore.NewJSONEncoder(ec)
				if console {
					enc = zapcore.NewConsoleEncoder(ec)
				}
				return zapcore.NewCore(enc, zapcore.AddSync(w), zapcore.InfoLevel)
			}
			write(New(newCore(&a), "snapvisor"), ours)
			write(zap.New(newCore(&b)).Named("snapvisor"), theirs)
			got, want := stamp.ReplaceAllString(a.String(), "T"), stamp.ReplaceAllString(b.String(), "T")
			if got != want {
				t.Fatalf("zlog wrote\n%s\nzap wrote\n%s", got, want)
			}
			if bytes.Contains(a.Bytes(), []byte("dropped")) || bytes.Count(a.Bytes(), []byte("\n")) != 3 {
				t.Errorf("want the info, warn and error lines only:\n%s", a.String())
			}
		})
	}
}
