package main

// subcommandNames lists the subcommands of the full build in the order
// `entrypoint help` shows them. The init-only build has only help, version
// and env; it knows the others by these names so that it can refuse them
// (exit 64) instead of running a service called "snapshot".
func subcommandNames() []string {
	return []string{"snapshot", "restore", "list", "copy", "verify", "keys", "status", "health", "replicate",
		"drill", "sidecar", "restore-if-empty", "takeover", "env", "version", "help"}
}
