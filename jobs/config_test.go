package jobs

import (
	"errors"
	"testing"

	"snapvisor/config"
)

// TestConfig_ApplyEnableVar: the variable named by SNAPVISOR_ENABLE_VAR is
// folded into Backup, the one flag every part reads.
func TestConfig_ApplyEnableVar(t *testing.T) {
	for _, tc := range []struct {
		name    string
		c       Config
		env     map[string]string
		want    bool
		wantVar string
	}{
		{"off", Config{}, nil, false, ""},
		{"SNAPVISOR_BACKUP", Config{Backup: true}, nil, true, ""},
		{"alias true", Config{EnableVar: "ZITI_CTRL_BACKUP"}, map[string]string{"ZITI_CTRL_BACKUP": "true"}, true, ""},
		{"alias yes, blanks", Config{EnableVar: "ZITI_CTRL_BACKUP"}, map[string]string{"ZITI_CTRL_BACKUP": " Yes "}, true, ""},
		{"alias false", Config{EnableVar: "ZITI_CTRL_BACKUP"}, map[string]string{"ZITI_CTRL_BACKUP": "false"}, false, ""},
		{"alias unset", Config{EnableVar: "ZITI_CTRL_BACKUP"}, nil, false, ""},
		{"alias false does not turn BACKUP off", Config{Backup: true, EnableVar: "ZITI_CTRL_BACKUP"}, map[string]string{"ZITI_CTRL_BACKUP": "false"}, true, ""},
		{"alias garbage", Config{EnableVar: "ZITI_CTRL_BACKUP"}, map[string]string{"ZITI_CTRL_BACKUP": "perhaps"}, false, "ZITI_CTRL_BACKUP"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := tc.c
			err := c.ApplyEnableVar(func(k string) (string, bool) { v, ok := tc.env[k]; return v, ok })
			if tc.wantVar != "" {
				var ce *config.Error
				if !errors.As(err, &ce) || ce.Var != tc.wantVar {
					t.Fatalf("ApplyEnableVar = %v, want a *config.Error naming %s", err, tc.wantVar)
				}
				return
			}
			if err != nil || c.Backup != tc.want {
				t.Fatalf("ApplyEnableVar = %v, Backup %v; want Backup %v", err, c.Backup, tc.want)
			}
		})
	}
}
