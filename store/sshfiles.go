package store

import (
	"os"
	"path/filepath"
)

// DefaultSSHKeyFiles are the private keys tried, in order, when no key
// file is configured (SFTP, git+ssh): ~/.ssh/id_ed25519, id_ecdsa, id_rsa.
func DefaultSSHKeyFiles() []string {
	home, err := os.UserHomeDir()
	if err != nil {
		return nil
	}
	var out []string
	for _, n := range []string{"id_ed25519", "id_ecdsa", "id_rsa"} {
		out = append(out, filepath.Join(home, ".ssh", n))
	}
	return out
}

// DefaultKnownHosts is the known_hosts file checked when none is
// configured: ~/.ssh/known_hosts.
func DefaultKnownHosts() string {
	home, _ := os.UserHomeDir()
	return filepath.Join(home, ".ssh", "known_hosts")
}
