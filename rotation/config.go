package rotation

import (
	"errors"

	"snapvisor/config"
)

// Config is the rotation configuration as read from the environment by
// config.Load (prefix SNAPVISOR_). Convert it with Policy.
type Config struct {
	// Keep is SNAPVISOR_KEEP: the newest Keep snapshots are always kept.
	Keep int `envconfig:"SNAPVISOR_KEEP" default:"7" desc:"keep the newest N snapshots; beyond them see MAX_AGE (0 only with MAX_AGE or a KEEP_* rule)"`
	// MaxAge is SNAPVISOR_MAX_AGE (config.ParseAge syntax); empty or 0 means unset.
	MaxAge config.Age `envconfig:"SNAPVISOR_MAX_AGE" desc:"beyond KEEP, keep snapshots at most this old, e.g. 30d, 2w, 1d12h (empty or 0: delete all beyond KEEP)"`
	// KeepHourly is SNAPVISOR_KEEP_HOURLY (restic --keep-hourly).
	KeepHourly int `envconfig:"SNAPVISOR_KEEP_HOURLY" default:"0" desc:"also keep the newest snapshot of each of the last N hours with snapshots (restic forget --keep-hourly, UTC)"`
	// KeepDaily is SNAPVISOR_KEEP_DAILY (restic --keep-daily).
	KeepDaily int `envconfig:"SNAPVISOR_KEEP_DAILY" default:"0" desc:"also keep the newest snapshot of each of the last N days with snapshots (restic forget --keep-daily, UTC)"`
	// KeepWeekly is SNAPVISOR_KEEP_WEEKLY (restic --keep-weekly).
	KeepWeekly int `envconfig:"SNAPVISOR_KEEP_WEEKLY" default:"0" desc:"also keep the newest snapshot of each of the last N ISO weeks with snapshots (restic forget --keep-weekly)"`
	// KeepMonthly is SNAPVISOR_KEEP_MONTHLY (restic --keep-monthly).
	KeepMonthly int `envconfig:"SNAPVISOR_KEEP_MONTHLY" default:"0" desc:"also keep the newest snapshot of each of the last N months with snapshots (restic forget --keep-monthly, UTC)"`
	// KeepYearly is SNAPVISOR_KEEP_YEARLY (restic --keep-yearly).
	KeepYearly int `envconfig:"SNAPVISOR_KEEP_YEARLY" default:"0" desc:"also keep the newest snapshot of each of the last N years with snapshots (restic forget --keep-yearly, UTC)"`
	// AllowShrink is SNAPVISOR_ALLOW_SHRINK: rotate snapshots of an empty or shrunk source like any other.
	AllowShrink bool `envconfig:"SNAPVISOR_ALLOW_SHRINK" default:"false" desc:"true: a snapshot of an empty source, or under 10% of the previous one's size, may push older, larger snapshots out (false: they are kept, and health fails until it is resolved)"`
	// RotateBefore is SNAPVISOR_ROTATE_BEFORE: on-enospc or never.
	RotateBefore string `envconfig:"SNAPVISOR_ROTATE_BEFORE" default:"on-enospc" desc:"on-enospc: after a snapshot failed for lack of space in SNAPVISOR_DIR, rotate the local snapshots to KEEP-1 (never below 1) before each next one; never: only after a success"`
}

// Policy converts c into a valid Policy, or returns every problem as
// *config.Error values (joined) naming the variable, e.g. SNAPVISOR_MAX_AGE.
func (c Config) Policy() (Policy, error) {
	p := Policy{
		Keep:    c.Keep,
		Hourly:  c.KeepHourly,
		Daily:   c.KeepDaily,
		Weekly:  c.KeepWeekly,
		Monthly: c.KeepMonthly,
		Yearly:  c.KeepYearly,

		AllowShrink:  c.AllowShrink,
		RotateBefore: c.RotateBefore,
		MaxAge:       c.MaxAge.Duration(),
	}
	var errs []error
	if err := c.MaxAge.Check("MAX_AGE", acceptedAge); err != nil {
		errs = append(errs, err)
	}
	if err := p.Validate(); err != nil {
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		return Policy{}, err
	}
	return p, nil
}

const acceptedAge = "empty, 0, or a non-negative duration such as 30d, 2w, 1d12h, 36h or 90m (units ns us ms s m h d=24h w=7d)"
