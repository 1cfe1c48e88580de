package rotation

import (
	"errors"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"snapvisor/config"
)

// Durations of the tables.
const (
	day  = 24 * time.Hour
	week = 7 * day
)

func TestConfig_Policy(t *testing.T) {
	tests := []struct {
		name string
		c    Config
		want Policy
		vars []string // variables named by the error; nil = valid
	}{
		{name: "defaults", c: Config{Keep: 7}, want: Policy{Keep: 7}},
		{name: "all set",
			c:    Config{Keep: 3, MaxAge: config.NewAge("30d"), KeepHourly: 24, KeepDaily: 7, KeepWeekly: 4, KeepMonthly: 12, KeepYearly: 2},
			want: Policy{Keep: 3, MaxAge: 30 * day, Hourly: 24, Daily: 7, Weekly: 4, Monthly: 12, Yearly: 2}},
		{name: "max age 0 is unset", c: Config{Keep: 7, MaxAge: config.NewAge("0")}, want: Policy{Keep: 7}},
		{name: "max age blank is unset", c: Config{Keep: 7, MaxAge: config.NewAge("  ")}, want: Policy{Keep: 7}},
		{name: "max age mixed units", c: Config{Keep: 1, MaxAge: config.NewAge("1d12h")}, want: Policy{Keep: 1, MaxAge: 36 * time.Hour}},
		{name: "keep 0 with max age", c: Config{MaxAge: config.NewAge("2w")}, want: Policy{MaxAge: 2 * week}},
		{name: "keep 0 with gfs", c: Config{KeepDaily: 7}, want: Policy{Daily: 7}},
		{name: "keep 0 alone", c: Config{}, vars: []string{"SNAPVISOR_KEEP"}},
		{name: "keep 0 with max age 0", c: Config{MaxAge: config.NewAge("0")}, vars: []string{"SNAPVISOR_KEEP"}},
		{name: "negative keep", c: Config{Keep: -1}, vars: []string{"SNAPVISOR_KEEP"}},
		{name: "bad max age", c: Config{Keep: 7, MaxAge: config.NewAge("30 days")}, vars: []string{"SNAPVISOR_MAX_AGE"}},
		{name: "negative max age", c: Config{Keep: 7, MaxAge: config.NewAge("-1d")}, vars: []string{"SNAPVISOR_MAX_AGE"}},
		{name: "negative daily", c: Config{Keep: 7, KeepDaily: -7}, vars: []string{"SNAPVISOR_KEEP_DAILY"}},
		{name: "allow shrink", c: Config{Keep: 7, AllowShrink: true}, want: Policy{Keep: 7, AllowShrink: true}},
		{name: "rotate before on-enospc", c: Config{Keep: 7, RotateBefore: "on-enospc"}, want: Policy{Keep: 7, RotateBefore: RotateBeforeOnENOSPC}},
		{name: "rotate before never", c: Config{Keep: 7, RotateBefore: "never"}, want: Policy{Keep: 7, RotateBefore: RotateBeforeNever}},
		{name: "rotate before garbage", c: Config{Keep: 7, RotateBefore: "always"}, vars: []string{"SNAPVISOR_ROTATE_BEFORE"}},
		{name: "rotate before wrong case", c: Config{Keep: 7, RotateBefore: "Never"}, vars: []string{"SNAPVISOR_ROTATE_BEFORE"}},
		{name: "several problems", c: Config{Keep: 7, MaxAge: config.NewAge("1y"), KeepWeekly: -1, KeepYearly: -2},
			vars: []string{"SNAPVISOR_MAX_AGE", "SNAPVISOR_KEEP_WEEKLY", "SNAPVISOR_KEEP_YEARLY"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := tt.c.Policy()
			if tt.vars == nil {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				if p != tt.want {
					t.Errorf("got %+v, want %+v", p, tt.want)
				}
				return
			}
			if err == nil {
				t.Fatalf("no error, want one naming %v", tt.vars)
			}
			if got := errVars(err); !slices.Equal(got, tt.vars) {
				t.Errorf("error names %v, want %v (%v)", got, tt.vars, err)
			}
			var ce *config.Error
			if !errors.As(err, &ce) {
				t.Errorf("errors.As(*config.Error) failed for %v", err)
			}
			for _, v := range tt.vars {
				if !strings.Contains(err.Error(), v+"=") {
					t.Errorf("message %q does not name %s", err, v)
				}
			}
		})
	}
	t.Run("bad max age shows value and cause", func(t *testing.T) {
		_, err := Config{Keep: 7, MaxAge: config.NewAge("30 days")}.Policy()
		msg := err.Error()
		for _, want := range []string{`SNAPVISOR_MAX_AGE="30 days" is invalid`, "30d", "accepted:"} {
			if !strings.Contains(msg, want) {
				t.Errorf("message %q lacks %q", msg, want)
			}
		}
	})
}

func TestConfig_Load(t *testing.T) {
	t.Run("defaults", func(t *testing.T) {
		// envconfig also reads the unprefixed name when the prefixed one is unset.
		for _, k := range []string{"KEEP", "MAX_AGE", "KEEP_HOURLY", "KEEP_DAILY", "KEEP_WEEKLY", "KEEP_MONTHLY", "KEEP_YEARLY", "ALLOW_SHRINK", "ROTATE_BEFORE"} {
			for _, name := range []string{config.Var(k), k} {
				t.Setenv(name, "") // restored after the test
				os.Unsetenv(name)
			}
		}
		var c Config
		if err := config.Load(&c); err != nil {
			t.Fatal(err)
		}
		p, err := c.Policy()
		if err != nil {
			t.Fatal(err)
		}
		if p != (Policy{Keep: defaultKeep, RotateBefore: RotateBeforeOnENOSPC}) {
			t.Errorf("default policy %+v", p)
		}
	})
	t.Run("from environment", func(t *testing.T) {
		env := map[string]string{
			"KEEP": "2", "MAX_AGE": "1w", "KEEP_HOURLY": "1", "KEEP_DAILY": "2",
			"KEEP_WEEKLY": "3", "KEEP_MONTHLY": "4", "KEEP_YEARLY": "5",
			"ALLOW_SHRINK": "true", "ROTATE_BEFORE": "never",
		}
		for k, v := range env {
			t.Setenv(config.Var(k), v)
		}
		var c Config
		if err := config.Load(&c); err != nil {
			t.Fatal(err)
		}
		p, err := c.Policy()
		if err != nil {
			t.Fatal(err)
		}
		want := Policy{Keep: 2, MaxAge: week, Hourly: 1, Daily: 2, Weekly: 3, Monthly: 4, Yearly: 5,
			AllowShrink: true, RotateBefore: RotateBeforeNever}
		if p != want {
			t.Errorf("got %+v, want %+v", p, want)
		}
	})
	t.Run("allow shrink not a bool", func(t *testing.T) {
		t.Setenv(config.Var("ALLOW_SHRINK"), "maybe")
		var c Config
		err := config.Load(&c)
		var ce *config.Error
		if !errors.As(err, &ce) || ce.Var != "SNAPVISOR_ALLOW_SHRINK" {
			t.Errorf("got %v, want a *config.Error for SNAPVISOR_ALLOW_SHRINK", err)
		}
	})
	t.Run("not a number", func(t *testing.T) {
		t.Setenv(config.Var("KEEP_DAILY"), "seven")
		var c Config
		err := config.Load(&c)
		var ce *config.Error
		if !errors.As(err, &ce) || ce.Var != "SNAPVISOR_KEEP_DAILY" {
			t.Errorf("got %v, want a *config.Error for SNAPVISOR_KEEP_DAILY", err)
		}
	})
}
