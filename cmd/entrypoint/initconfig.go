package main

import (
	"snapvisor/config"
	"snapvisor/supervisor"
)

// InitConfig is the configuration of the init alone, the part of Config
// both builds read: snapvisor's log lines and the supervisor.
type InitConfig struct {
	Log        LogConfig
	Supervisor supervisor.Config
}

// initSpecs lists the init's structs, in the order `entrypoint env` prints them.
func (c *InitConfig) initSpecs() []any { return []any{&c.Log, &c.Supervisor} }

// validateInit checks the log settings and the supervisor's.
func (c *InitConfig) validateInit() error {
	if err := c.Log.Validate(); err != nil {
		return err
	}
	return c.Supervisor.Validate()
}

// loadSpecs loads each spec from the environment, stopping at the first error.
func loadSpecs(specs []any) error {
	for _, spec := range specs {
		if err := config.Load(spec); err != nil {
			return err
		}
	}
	return nil
}
