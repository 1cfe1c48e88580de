// Package jobs runs scheduled, in-process snapshot jobs around a supervised
// service: schedule (gocron), consistency hooks, freezing the service,
// the snapshot pipeline, rotation, auto-restore before start, a control
// socket for `entrypoint snapshot|status|health`, and Prometheus metrics.
package jobs

import (
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/go-co-op/gocron/v2"

	"snapvisor/config"
)

// Freeze modes.
const (
	FreezeNone  = "none"
	FreezePause = "pause"
	FreezeStop  = "stop"
)

// Restore modes.
const (
	RestoreModeIfEmpty = "if-empty"
	RestoreModeNever   = "never"
)

// Config holds the scheduled-snapshot settings (all SNAPVISOR_*).
type Config struct {
	// Backup is the one flag that says whether scheduled snapshots are on:
	// SNAPVISOR_BACKUP, or the variable named by SNAPVISOR_ENABLE_VAR once
	// ApplyEnableVar ran (configuration loading calls it).
	Backup        bool          `envconfig:"SNAPVISOR_BACKUP" default:"false" desc:"turn scheduled snapshots on; off, the entrypoint is a pure init"`
	EnableVar     string        `envconfig:"SNAPVISOR_ENABLE_VAR" desc:"name of another variable that also turns snapshots on when true (an image sets e.g. ZITI_CTRL_BACKUP)"`
	Format        string        `envconfig:"SNAPVISOR_FORMAT" default:"archive" desc:"archive: each snapshot a tar archive (SNAPVISOR_COMPRESSION, encryption); restic: a deduplicated restic repository (version 2) in SNAPVISOR_DIR and on every remote, readable by the restic CLI (needs RESTIC_PASSWORD); git: each snapshot a commit of the source tree in a bare repository in SNAPVISOR_DIR, pushed to SNAPVISOR_GIT_REMOTES (small data: configuration, PKI)"`
	Schedule      string        `envconfig:"SNAPVISOR_SCHEDULE" default:"@daily" desc:"cron expression (5 or 6 fields), @hourly/@daily/@weekly, or @every 15m; time zone from CRON_TZ=Zone prefix or TZ"`
	Jitter        time.Duration `envconfig:"SNAPVISOR_JITTER" default:"0s" desc:"wait a random time up to this before each scheduled snapshot"`
	OnStart       bool          `envconfig:"SNAPVISOR_ON_START" default:"false" desc:"take one snapshot once the service is up (after SNAPVISOR_START_DELAY)"`
	StartDelay    time.Duration `envconfig:"SNAPVISOR_START_DELAY" default:"5s" desc:"delay between service start and the SNAPVISOR_ON_START snapshot"`
	OnExit        bool          `envconfig:"SNAPVISOR_ON_EXIT" default:"false" desc:"take a final, cold snapshot after the service exits with code 0"`
	ExitTimeout   time.Duration `envconfig:"SNAPVISOR_EXIT_TIMEOUT" default:"5m" desc:"the bound on everything after the service exits: a snapshot in progress finishing (else abandoned), the SNAPVISOR_ON_EXIT snapshot, releasing the remotes' leases"`
	PreCommand    string        `envconfig:"SNAPVISOR_PRE_COMMAND" desc:"consistency hook run before each snapshot (via /bin/sh -c when present); failure aborts the snapshot"`
	PostCommand   string        `envconfig:"SNAPVISOR_POST_COMMAND" desc:"hook run after each snapshot attempt, also after failures"`
	HookTimeout   time.Duration `envconfig:"SNAPVISOR_HOOK_TIMEOUT" default:"30s" desc:"time limit for each hook; a timed-out pre-hook aborts the snapshot"`
	Freeze        string        `envconfig:"SNAPVISOR_FREEZE" default:"none" desc:"none, pause (SIGSTOP the service's group while archiving, always resumed) or stop (stop the service, snapshot cold, start it again)"`
	FreezeTimeout time.Duration `envconfig:"SNAPVISOR_FREEZE_TIMEOUT" default:"10m" desc:"longest time the service may stay paused or stopped; it is resumed or started again then, even while the archive phase is stuck, and the snapshot is abandoned"`
	MinInterval   time.Duration `envconfig:"SNAPVISOR_MIN_INTERVAL" default:"1m" desc:"an on-demand snapshot (entrypoint snapshot) within this time of the end of the previous run gets that run's result instead of a new snapshot; 0 turns it off"`
	Restore       string        `envconfig:"SNAPVISOR_RESTORE" default:"if-empty" desc:"if-empty: before the service starts, restore the newest good snapshot when the first source is missing or empty; never"`
	ControlSocket string        `envconfig:"SNAPVISOR_CONTROL_SOCKET" desc:"unix socket (0600) used by entrypoint snapshot/status/health in the same container; empty: control.sock in a directory private to the uid, /run/snapvisor (created 0700), else $XDG_RUNTIME_DIR/snapvisor or $TMPDIR/snapvisor-<uid>"`
	MetricsAddr   string        `envconfig:"SNAPVISOR_METRICS_ADDR" desc:"listen address for Prometheus /metrics and /healthz, e.g. 127.0.0.1:9150 (off when empty)"`
	HealthMaxAge  time.Duration `envconfig:"SNAPVISOR_HEALTH_MAX_AGE" default:"0s" desc:"entrypoint health fails when the last good snapshot is older; 0 means twice the schedule's interval plus the jitter"`
	// Replication and restore drills (replicate.go, drill.go).
	ReplicateSchedule string        `envconfig:"SNAPVISOR_REPLICATE_SCHEDULE" desc:"when to reconcile SNAPVISOR_REMOTES (same forms as SNAPVISOR_SCHEDULE, e.g. @hourly): every snapshot inside the retention that is on any remote is copied, verified, to every remote that lacks it; empty: off"`
	DrillSchedule     string        `envconfig:"SNAPVISOR_DRILL_SCHEDULE" desc:"when to run a restore drill (same forms as SNAPVISOR_SCHEDULE, e.g. @weekly): the newest snapshot of each remote in turn is restored into SNAPVISOR_DRILL_DIR, verified, checked by SNAPVISOR_DRILL_COMMAND and deleted; empty: off"`
	DrillCommand      string        `envconfig:"SNAPVISOR_DRILL_COMMAND" desc:"command run (via /bin/sh -c, at nice 10, bounded by SNAPVISOR_HOOK_TIMEOUT) against a drill's restored copy, e.g. redis-check-rdb $SNAPVISOR_DRILL_DIR/data/dump.rdb; non-zero fails the drill; SNAPVISOR_DRILL_DIR is set to the restored copy"`
	DrillDir          string        `envconfig:"SNAPVISOR_DRILL_DIR" desc:"scratch directory of restore drills, apart from every source (empty: SNAPVISOR_DIR/.drill, or the temporary directory in streaming mode); a drill is refused when its free space is short; emptied after each drill"`
	HealthDrillMaxAge time.Duration `envconfig:"SNAPVISOR_HEALTH_DRILL_MAX_AGE" default:"0s" desc:"entrypoint health fails when the last restore drill of a remote failed, or none has passed for this long (0: drills do not count for health)"`
	HealthGrace       time.Duration `envconfig:"SNAPVISOR_HEALTH_GRACE" default:"0s" desc:"a fresh container without any snapshot counts as healthy for this long (0: unhealthy until the first snapshot exists)"`
}

// ApplyEnableVar folds the variable named by SNAPVISOR_ENABLE_VAR into
// Backup: true turns snapshots on, false or unset leaves SNAPVISOR_BACKUP
// alone, anything else is a *config.Error naming that variable.
func (c *Config) ApplyEnableVar(lookup func(string) (string, bool)) error {
	if c.Backup || c.EnableVar == "" {
		return nil
	}
	v, _ := lookup(c.EnableVar)
	switch strings.ToLower(strings.TrimSpace(v)) {
	case "true", "1", "yes", "on":
		c.Backup = true
		return nil
	case "", "false", "0", "no", "off":
		return nil
	}
	return &config.Error{Var: c.EnableVar, Value: v, Accepted: "true or false (named by SNAPVISOR_ENABLE_VAR)"}
}

// Validate checks every setting, the schedule expression included.
func (c Config) Validate() error {
	if _, err := ParseSchedule(c.Schedule); err != nil {
		e := config.Invalid("SCHEDULE", c.Schedule, "a cron expression of 5 or 6 fields, @hourly, @daily, @weekly, @monthly or @every <duration>, optionally prefixed with CRON_TZ=<Zone>")
		e.Err = err
		return e
	}
	for _, sc := range []struct{ name, expr string }{{"REPLICATE_SCHEDULE", c.ReplicateSchedule}, {"DRILL_SCHEDULE", c.DrillSchedule}} {
		if sc.expr == "" {
			continue
		}
		if _, err := ParseSchedule(sc.expr); err != nil {
			e := config.Invalid(sc.name, sc.expr, "empty (off), or a schedule as for SNAPVISOR_SCHEDULE: a cron expression, @hourly, @daily, @weekly or @every <duration>")
			e.Err = err
			return e
		}
	}
	switch c.Format {
	case "", FormatArchive, FormatRestic, FormatGit: // empty: the default (a Config built in code)
	default:
		return config.Invalid("FORMAT", c.Format, "archive, restic or git")
	}
	switch c.Freeze {
	case FreezeNone, FreezePause, FreezeStop:
	default:
		return config.Invalid("FREEZE", c.Freeze, "none, pause or stop")
	}
	switch c.Restore {
	case RestoreModeIfEmpty, RestoreModeNever:
	default:
		return config.Invalid("RESTORE", c.Restore, "if-empty or never")
	}
	for _, d := range []struct {
		name string
		v    time.Duration
		zero bool
	}{
		{"JITTER", c.Jitter, true}, {"START_DELAY", c.StartDelay, true}, {"EXIT_TIMEOUT", c.ExitTimeout, false},
		{"HOOK_TIMEOUT", c.HookTimeout, false}, {"FREEZE_TIMEOUT", c.FreezeTimeout, false}, {"HEALTH_MAX_AGE", c.HealthMaxAge, true},
		{"HEALTH_GRACE", c.HealthGrace, true}, {"MIN_INTERVAL", c.MinInterval, true}, {"HEALTH_DRILL_MAX_AGE", c.HealthDrillMaxAge, true},
	} {
		if d.v < 0 || (!d.zero && d.v == 0) {
			return config.Invalid(d.name, d.v.String(), "a positive duration such as 30s or 5m")
		}
	}
	if len(c.ControlSocket) > maxSocketPath || strings.HasSuffix(c.ControlSocket, "/") {
		e := config.Invalid("CONTROL_SOCKET", c.ControlSocket, fmt.Sprintf("the path of a unix socket, at most %d bytes (empty: the default)", maxSocketPath))
		if len(c.ControlSocket) > maxSocketPath {
			e.Err = fmt.Errorf("%d bytes is too long for a unix socket address", len(c.ControlSocket))
		}
		return e
	}
	if c.MetricsAddr != "" {
		host, port, err := net.SplitHostPort(c.MetricsAddr)
		if n, perr := strconv.Atoi(port); err != nil || perr != nil || n < 0 || n > 65535 || (host != "" && net.ParseIP(host) == nil && (strings.ContainsAny(host, " /") || dottedNumbers(host))) {
			return config.Invalid("METRICS_ADDR", c.MetricsAddr, "host:port or :port, e.g. 127.0.0.1:9150 or :9150 (empty: off)")
		}
	}
	return nil
}

// dottedNumbers reports whether host looks like an IPv4 address (digits and
// dots only); one that does not parse, such as 256.1.1.1, is a mistake, not
// a host name to resolve.
func dottedNumbers(host string) bool {
	return strings.Trim(host, "0123456789.") == ""
}

// Schedule is a parsed schedule: its gocron job definition and a way to
// compute the next run times.
type Schedule struct {
	Expr string
	def  gocron.JobDefinition
	next func(time.Time) time.Time
}

// ParseSchedule parses a cron expression (5 or 6 fields), a descriptor such as
// @daily, or "@every <duration>".
func ParseSchedule(expr string) (Schedule, error) {
	expr = strings.TrimSpace(expr)
	if expr == "" {
		return Schedule{}, errors.New("empty schedule")
	}
	if rest, ok := strings.CutPrefix(expr, "@every "); ok {
		d, err := time.ParseDuration(strings.TrimSpace(rest))
		if err != nil {
			return Schedule{}, fmt.Errorf("@every: %w", err)
		}
		if d < time.Second {
			return Schedule{}, fmt.Errorf("@every %v: interval below 1s", d)
		}
		return Schedule{Expr: expr, def: gocron.DurationJob(d), next: func(t time.Time) time.Time { return t.Add(d) }}, nil
	}
	cr := gocron.NewDefaultCron(true)
	if err := cr.IsValid(expr, time.Local, time.Now()); err != nil {
		return Schedule{}, err
	}
	return Schedule{Expr: expr, def: gocron.CronJob(expr, true), next: cr.Next}, nil
}

// Interval estimates the time between two runs (for health's default max age).
func (s Schedule) Interval(now time.Time) time.Duration {
	a := s.next(now)
	return s.next(a).Sub(a)
}
