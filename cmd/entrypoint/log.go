package main

import (
	"io"

	"go.uber.org/zap/zapcore"

	"snapvisor/config"
	"snapvisor/internal/zlog"
)

// loggerName names every line of snapvisor's own, apart from the service's output.
const loggerName = "snapvisor"

// LogConfig controls snapvisor's own log lines (the service's output is never touched).
type LogConfig struct {
	Format string `envconfig:"SNAPVISOR_LOG_FORMAT" default:"json" desc:"format of snapvisor's own log lines on stderr: json or console"`
	Level  string `envconfig:"SNAPVISOR_LOG_LEVEL" default:"info" desc:"debug, info, warn or error; when unset, a service with snapshots off (a pure init) logs at warn, so it prints nothing of its own, as tini"`
}

// quietInit applies the default log level of a pure init: with snapshots off
// (backup false) and SNAPVISOR_LOG_LEVEL unset (or empty), warn instead of
// info, so that "service started" and "service exited" never land in a
// `docker run -it` terminal where tini prints nothing. An explicit level
// always wins.
func (c *LogConfig) quietInit(backup bool, lookup config.Lookup) {
	if v, _ := lookup(config.Var("LOG_LEVEL")); v == "" && !backup {
		c.Level = zapcore.WarnLevel.String()
	}
}

// Validate checks the format and level.
func (c LogConfig) Validate() error {
	switch c.Format {
	case "json", "console":
	default:
		return config.Invalid("LOG_FORMAT", c.Format, "json or console")
	}
	if _, err := zapcore.ParseLevel(c.Level); err != nil {
		return config.Invalid("LOG_LEVEL", c.Level, "debug, info, warn or error")
	}
	return nil
}

// logCore is where snapvisor's log lines go: w, in c's format
// (zlog.EncoderConfig's shape), from c's level up.
func logCore(c LogConfig, w io.Writer) (zapcore.Core, error) {
	lvl, err := zapcore.ParseLevel(c.Level)
	if err != nil {
		return nil, config.Invalid("LOG_LEVEL", c.Level, "debug, info, warn or error")
	}
	var enc zapcore.Encoder
	if c.Format == "console" {
		enc = zapcore.NewConsoleEncoder(zlog.EncoderConfig(true))
	} else {
		enc = zapcore.NewJSONEncoder(zlog.EncoderConfig(false))
	}
	return zapcore.NewCore(enc, zapcore.Lock(zapcore.AddSync(w)), lvl), nil
}
