// Package zlog is snapvisor's logging surface without the zap package: an
// interface that *zap.Logger satisfies, zap's field constructors for the
// field types snapvisor logs, the encoder configuration that fixes the
// shape of every log line, and a Logger over a bare zapcore.Core.
//
// Packages that the init-only build links (the supervisor, the entrypoint's
// shared code) log through it, so that build writes the same JSON lines
// through the same zapcore encoder without linking package zap, which
// brings net/http and crypto/tls with it.
package zlog

import (
	"time"

	"go.uber.org/zap/zapcore"
)

// Logger is the part of *zap.Logger snapvisor's init code uses. Both
// *zap.Logger and *Core satisfy it.
type Logger interface {
	Debug(msg string, fields ...zapcore.Field)
	Info(msg string, fields ...zapcore.Field)
	Warn(msg string, fields ...zapcore.Field)
	Error(msg string, fields ...zapcore.Field)
}

// EncoderConfig is the shape of snapvisor's log lines: zap's production
// keys (level, logger, msg, stacktrace) with "ts" as an ISO 8601 time;
// console gives capitalised levels and fields separated by spaces.
func EncoderConfig(console bool) zapcore.EncoderConfig {
	ec := zapcore.EncoderConfig{
		TimeKey:        "ts",
		LevelKey:       "level",
		NameKey:        "logger",
		CallerKey:      "caller",
		FunctionKey:    zapcore.OmitKey,
		MessageKey:     "msg",
		StacktraceKey:  "stacktrace",
		LineEnding:     zapcore.DefaultLineEnding,
		EncodeLevel:    zapcore.LowercaseLevelEncoder,
		EncodeTime:     zapcore.ISO8601TimeEncoder,
		EncodeDuration: zapcore.SecondsDurationEncoder,
		EncodeCaller:   zapcore.ShortCallerEncoder,
	}
	if console {
		ec.EncodeLevel = zapcore.CapitalLevelEncoder
		ec.ConsoleSeparator = " "
	}
	return ec
}

// Core is a Logger that writes entries named name straight to a
// zapcore.Core: what zap.New(core).Named(name) writes, without caller,
// stack traces or hooks (snapvisor's logger has none of them).
type Core struct {
	core zapcore.Core
	name string
}

// New returns a Logger writing to core, every entry named name.
func New(core zapcore.Core, name string) *Core { return &Core{core: core, name: name} }

func (l *Core) log(lvl zapcore.Level, msg string, fields []zapcore.Field) {
	ent := zapcore.Entry{Level: lvl, Time: time.Now(), LoggerName: l.name, Message: msg}
	if ce := l.core.Check(ent, nil); ce != nil {
		ce.Write(fields...)
	}
}

// Debug logs at debug level.
func (l *Core) Debug(msg string, fields ...zapcore.Field) { l.log(zapcore.DebugLevel, msg, fields) }

// Info logs at info level.
func (l *Core) Info(msg string, fields ...zapcore.Field) { l.log(zapcore.InfoLevel, msg, fields) }

// Warn logs at warn level.
func (l *Core) Warn(msg string, fields ...zapcore.Field) { l.log(zapcore.WarnLevel, msg, fields) }

// Error logs at error level.
func (l *Core) Error(msg string, fields ...zapcore.Field) { l.log(zapcore.ErrorLevel, msg, fields) }

// Sync flushes the core.
func (l *Core) Sync() error { return l.core.Sync() }
