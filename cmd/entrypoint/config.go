//go:build !initonly

package main

import (
	"fmt"
	"io"
	"os"
	"slices"
	"strings"

	"go.uber.org/zap"

	"snapvisor/config"
	"snapvisor/gitsnap"
	"snapvisor/jobs"
	"snapvisor/restic"
	"snapvisor/rotation"
	"snapvisor/snapshot"
	"snapvisor/store"
)

// Config is every component's configuration, loaded from SNAPVISOR_* variables.
type Config struct {
	InitConfig // Log and Supervisor: what the init-only build reads too
	Snapshot   snapshot.Config
	Jobs       jobs.Config
	Rotation   rotation.Config
	Store      store.Config
	Restic     restic.Settings  // SNAPVISOR_FORMAT=restic
	Git        gitsnap.Settings // SNAPVISOR_FORMAT=git
	Notify     jobs.NotifyConfig

	Policy rotation.Policy // validated retention policy
}

// specs lists each component's struct, in the order `entrypoint env` prints them.
func (c *Config) specs() []any {
	return append(c.initSpecs(), &c.Jobs, &c.Snapshot, &c.Snapshot.Encryption, &c.Restic, &c.Git, &c.Rotation, &c.Store, &c.Notify)
}

// serviceSecrets lists the variables kept out of the service's environment:
// snapvisor's own secrets always, the stores' credentials (AWS_*, AZURE_*,
// ...) only when snapshots are on and pushed to remotes, since otherwise
// they may well be the service's own.
func (c *Config) serviceSecrets() []string {
	specs := c.specs()
	if !c.Jobs.Backup || len(c.Store.Remotes) == 0 {
		specs = slices.DeleteFunc(specs, func(s any) bool { return s == any(&c.Store) })
	}
	if !c.restic() {
		// RESTIC_PASSWORD may be the service's own when snapvisor writes archives.
		specs = slices.DeleteFunc(specs, func(s any) bool { return s == any(&c.Restic) })
	}
	return config.SecretVars(specs...)
}

// git reports whether snapshots are in the git format.
func (c *Config) git() bool { return c.Jobs.Format == jobs.FormatGit }

// gitSet is the git format's repositories (local and remotes).
func (c *Config) gitSet() gitsnap.Set {
	set, _ := gitsnap.NewSet(c.Snapshot.Dir, c.Snapshot.Name, c.Git, c.Store.Timeout) // validated by loadConfig
	return set
}

// validateGit checks what the git format needs of the other variables.
// validateReplication refuses a replication schedule that would have
// nothing to do: no remotes, or a format whose remotes it does not handle.
func (c *Config) validateReplication() error {
	v := c.Jobs.ReplicateSchedule
	switch {
	case v == "":
		return nil
	case c.git():
		return config.Invalid("REPLICATE_SCHEDULE", v, "empty with SNAPVISOR_FORMAT=git: every push brings each git remote's branch up to date")
	case c.restic():
		return config.Invalid("REPLICATE_SCHEDULE", v, "empty with SNAPVISOR_FORMAT=restic: each remote holds its own repository (copy one with `entrypoint copy`)")
	case len(c.Store.URLs()) == 0:
		return config.Invalid("REPLICATE_SCHEDULE", v, "empty, or set together with SNAPVISOR_REMOTES (the remotes it keeps in step)")
	}
	return nil
}

func (c *Config) validateGit() error {
	if err := c.Git.Validate(c.Snapshot.Name); err != nil {
		return err
	}
	if c.Snapshot.Dir == "" {
		e := config.Invalid("DIR", "", "a directory for the local bare repository (SNAPVISOR_FORMAT=git keeps one; it has no streaming mode)")
		e.Err = fmt.Errorf("SNAPVISOR_FORMAT=git needs SNAPVISOR_DIR")
		return e
	}
	if len(c.Store.Remotes) > 0 {
		e := config.Invalid("REMOTES", strings.Join(c.Store.Remotes, ","), "empty with SNAPVISOR_FORMAT=git: its remotes are Git repositories, in SNAPVISOR_GIT_REMOTES (git+ssh://, git+https://, git+file://)")
		e.Err = fmt.Errorf("SNAPVISOR_REMOTES is for archive and restic snapshots")
		return e
	}
	if enc := c.Snapshot.Encryption.Effective(); enc != "" && enc != "none" {
		e := config.Invalid("ENCRYPTION", enc, "none with SNAPVISOR_FORMAT=git (commits are readable by anyone who can read the repository: use the archive or restic format to encrypt)")
		e.Err = fmt.Errorf("the git format does not encrypt")
		return e
	}
	return nil
}

// restic reports whether snapshots are in the restic format.
func (c *Config) restic() bool { return c.Jobs.Format == jobs.FormatRestic }

// loadConfig loads and validates every component's configuration.
func loadConfig() (*Config, error) {
	c := &Config{}
	if err := loadSpecs(c.specs()); err != nil {
		return nil, err
	}
	if err := c.validateInit(); err != nil {
		return nil, err
	}
	if err := c.Snapshot.Validate(); err != nil {
		return nil, err
	}
	if err := c.Jobs.Validate(); err != nil {
		return nil, err
	}
	if err := c.Notify.Validate(); err != nil { // builds the senders: a bad URL fails here
		return nil, err
	}
	if c.restic() {
		if err := c.Restic.Validate(); err != nil {
			return nil, err
		}
	}
	if c.git() {
		if err := c.validateGit(); err != nil {
			return nil, err
		}
	}
	if len(c.Store.Remotes) > 0 {
		// Vendor variables (AWS_*, AZURE_*, GOOGLE_*) may belong to the
		// service: they are snapvisor's business only when a remote is set.
		if err := c.Store.Validate(); err != nil {
			return nil, err
		}
		for _, u := range c.Store.URLs() {
			if dir, ok := store.FilePath(u); ok {
				if s := c.Snapshot.InsideSource(dir); s != "" {
					e := config.Invalid("REMOTES", store.Redact(u), "file:// remotes outside every source (each snapshot would hold the earlier ones)")
					e.Err = fmt.Errorf("%s is inside source %q", dir, s)
					return nil, e
				}
			}
		}
	}
	p, err := c.Rotation.Policy()
	if err != nil {
		return nil, err
	}
	c.Policy = p
	if err := c.Jobs.ApplyEnableVar(os.LookupEnv); err != nil {
		return nil, err
	}
	if c.Jobs.Backup {
		if err := c.validateBackup(); err != nil {
			return nil, err
		}
	}
	return c, nil
}

// validateBackup checks what scheduled snapshots need (SNAPVISOR_BACKUP on,
// or `entrypoint sidecar`), before auto-restore and the service.
func (c *Config) validateBackup() error {
	if c.Snapshot.Dir == "" && len(c.Store.URLs()) == 0 {
		e := config.Invalid("DIR", "", "a snapshot directory, or SNAPVISOR_DIR empty together with SNAPVISOR_REMOTES (streaming mode: snapshots go straight to the remotes)")
		e.Err = fmt.Errorf("SNAPVISOR_DIR is empty and SNAPVISOR_REMOTES names no remote: snapshots would go nowhere")
		return e
	}
	// Paths that are files fail here, named.
	if err := c.Snapshot.CheckPaths(); err != nil {
		return err
	}
	if err := c.Jobs.CheckSocket(); err != nil {
		return err
	}
	if c.Jobs.DrillSchedule != "" || c.Jobs.DrillDir != "" {
		if err := jobs.CheckDrillDir(c.Jobs, c.Snapshot); err != nil {
			return err
		}
	}
	return c.validateReplication()
}

// newLogger builds snapvisor's logger (logCore): every line is named
// "snapvisor" so it stands apart from the service's own output.
func newLogger(c LogConfig, w io.Writer) (*zap.Logger, error) {
	core, err := logCore(c, w)
	if err != nil {
		return nil, err
	}
	return zap.New(core).Named(loggerName), nil
}
