package seal

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"snapvisor/config"
)

// TestConfig_RereadKeyring: Validate reads the keyring file once and the
// Config keeps it (a command sees one keyring); RereadKeyring returns a
// Config with the file as it is now, leaving the validated one alone; a
// keyring file gone since is Validate's error for the variable.
func TestConfig_RereadKeyring(t *testing.T) {
	k1, k2 := "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=", "ICEiIyQlJicoKSorLC0uLzAxMjM0NTY3ODk6Ozw9Pj8="
	ringPath := filepath.Join(t.TempDir(), "keyring")
	must(t, os.WriteFile(ringPath, []byte("k1:"+k1+"\n"), 0o600))
	cfg := Config{Algorithm: AESGCM, KeysFile: ringPath}
	must(t, cfg.Validate())
	must(t, os.WriteFile(ringPath, []byte("k1:"+k1+"\nk2:"+k2+"\n"), 0o600))
	ids := func(c Config) []string {
		t.Helper()
		states, err := c.KeyStates()
		must(t, err)
		var out []string
		for _, s := range states {
			out = append(out, s.ID)
		}
		return out
	}
	if got := ids(cfg); !slices.Equal(got, []string{"k1"}) {
		t.Fatalf("validated config sees %v, want the keyring it read, [k1]", got)
	}
	again, err := cfg.RereadKeyring()
	must(t, err)
	if got := ids(again); !slices.Equal(got, []string{"k1", "k2"}) {
		t.Fatalf("after RereadKeyring %v, want [k1 k2]", got)
	}
	if got := ids(cfg); !slices.Equal(got, []string{"k1"}) {
		t.Fatalf("RereadKeyring changed the validated config: %v", got)
	}
	must(t, os.Remove(ringPath))
	var ce *config.Error
	if _, err := cfg.RereadKeyring(); !errors.As(err, &ce) || ce.Var != "SNAPVISOR_ENCRYPTION_KEYS_FILE" {
		t.Fatalf("RereadKeyring of a removed file = %v, want a *config.Error naming SNAPVISOR_ENCRYPTION_KEYS_FILE", err)
	}
}

// TestConfig_RotateReadsTheFile: Rotate works on the keyring file as it is
// now, never on the one Validate read: a key added to the file since is
// kept when Rotate writes it back.
func TestConfig_RotateReadsTheFile(t *testing.T) {
	k1, k2 := "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=", "ICEiIyQlJicoKSorLC0uLzAxMjM0NTY3ODk6Ozw9Pj8="
	ringPath := filepath.Join(t.TempDir(), "keyring")
	must(t, os.WriteFile(ringPath, []byte("k1:"+k1+"\n"), 0o600))
	cfg := Config{Algorithm: AESGCM, KeysFile: ringPath, Rotation: config.NewAge("90d"), OldKeysRetention: config.NewAge("7d")}
	must(t, cfg.Validate())
	must(t, os.WriteFile(ringPath, []byte("k1:"+k1+"\nk2:"+k2+"\n"), 0o600)) // added by hand since
	r, err := cfg.Rotate(time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC), nil)   // stamps both keys: a rewrite
	must(t, err)
	if !r.Changed() {
		t.Fatal("Rotate did not stamp the keys")
	}
	b, err := os.ReadFile(ringPath)
	must(t, err)
	ring, err := ParseKeyring(string(b))
	must(t, err)
	if got := ring.IDs(); !slices.Equal(got, []string{"k1", "k2"}) {
		t.Fatalf("keyring after Rotate %v, want [k1 k2]: a key added since Validate was lost", got)
	}
}
