//go:build !initonly

package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"snapvisor/config"
	"snapvisor/seal"
)

func testKey(t *testing.T) string {
	t.Helper()
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return base64.StdEncoding.EncodeToString(b)
}

// TestCmdKeys checks that `entrypoint keys` lists key ids, their state and the
// snapshots using them, flags ids snapshots need but no key has, and never
// prints key material.
func TestCmdKeys(t *testing.T) {
	ctx := context.Background()
	f := newSnapFixture(t)
	k1, k2 := testKey(t), testKey(t)
	ring := filepath.Join(t.TempDir(), "keyring")
	if err := os.WriteFile(ring, []byte("first:"+k1+":2025-01-01T00:00:00Z\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	f.a.snap.Encryption = seal.Config{Algorithm: seal.AESGCM, KeysFile: ring, Rotation: config.NewAge("90d"), OldKeysRetention: config.NewAge("7d")}
	if err := cmdSnapshot(ctx, f.a, nil); err != nil {
		t.Fatal(err)
	}
	snap := filepath.Base(strings.TrimSpace(f.out.String()))
	if !strings.HasSuffix(snap, ".tar.gz.aes256gcm") {
		t.Fatalf("snapshot %s lacks the .aes256gcm suffix", snap)
	}
	// The first key is older than 90 days: the snapshot generated a second key and used it.
	f.out.Reset()
	if err := cmdKeys(ctx, f.a, nil); err != nil {
		t.Fatal(err)
	}
	out := f.out.String()
	for _, want := range []string{"first", "key-", snap, "encrypts (replaced after", "decrypts (dropped after"} {
		if !strings.Contains(out, want) {
			t.Errorf("keys output lacks %q:\n%s", want, out)
		}
	}
	b, _ := os.ReadFile(ring)
	for _, line := range strings.Split(string(b), "\n") {
		if parts := strings.Split(line, ":"); len(parts) >= 2 && !strings.HasPrefix(line, "#") && strings.Contains(out, parts[1]) {
			t.Fatalf("keys printed key material:\n%s", out)
		}
	}
	if strings.Contains(out, k1) || strings.Contains(out, k2) {
		t.Fatalf("keys printed key material:\n%s", out)
	}

	t.Run("JSON", func(t *testing.T) {
		f.out.Reset()
		if err := cmdKeys(ctx, f.a, []string{"--json"}); err != nil {
			t.Fatal(err)
		}
		var got []keyJSON
		if err := json.Unmarshal(f.out.Bytes(), &got); err != nil {
			t.Fatalf("%v\n%s", err, f.out.String())
		}
		if len(got) != 2 || got[0].ID != "first" || len(got[0].Snapshots) != 0 || got[0].Current || got[0].AgeSeconds <= 0 ||
			!got[1].Current || !strings.HasPrefix(got[1].ID, "key-") || !slices.Equal(got[1].Snapshots, []string{snap}) || got[1].RotateAt.IsZero() {
			t.Fatalf("keys --json = %+v", got)
		}
	})

	t.Run("MissingKey", func(t *testing.T) {
		f.out.Reset()
		a := *f.a
		a.snap.Encryption = seal.Config{Key: config.Secret(k2)}
		if err := cmdKeys(ctx, &a, nil); err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(f.out.String(), "MISSING") || !strings.Contains(f.out.String(), snap) {
			t.Fatalf("keys does not flag the missing key:\n%s", f.out.String())
		}
	})

	t.Run("VerifyAndRestoreUseTheKeyring", func(t *testing.T) {
		f.out.Reset()
		if err := cmdVerify(ctx, f.a, []string{"--all"}); err != nil {
			t.Fatalf("verify: %v\n%s", err, f.out.String())
		}
		a := *f.a
		a.snap.Encryption = seal.Config{}
		err := cmdRestore(ctx, &a, nil)
		if !errors.Is(err, seal.ErrKey) {
			t.Fatalf("restore latest without keys = %v, want ErrKey", err)
		}
		if err := cmdRestore(ctx, f.a, nil); err != nil {
			t.Fatal(err)
		}
	})
}

// TestConfig_EncryptionVariables checks the new variables end to end through
// loadConfig: secrets come from _FILE, are listed as secrets (kept from the
// service), `entrypoint env` documents them without values, and bad values
// are configuration errors naming the variable.
func TestConfig_EncryptionVariables(t *testing.T) {
	key := testKey(t)
	keyFile := filepath.Join(t.TempDir(), "key")
	if err := os.WriteFile(keyFile, []byte(key+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("SNAPVISOR_ENCRYPTION", "aes256-gcm")
	t.Setenv("SNAPVISOR_ENCRYPTION_KEY_FILE", keyFile)
	c, err := loadConfig()
	if err != nil {
		t.Fatal(err)
	}
	if c.Snapshot.Encryption.Key.Reveal() != key || c.Snapshot.Encryption.PBKDF2Iter != seal.DefaultPBKDF2Iter || c.Snapshot.Encryption.OldKeysRetention.String() != "7d" {
		t.Fatalf("loaded %+v", c.Snapshot.Encryption)
	}
	secrets := config.SecretVars(c.specs()...)
	for _, v := range []string{"SNAPVISOR_ENCRYPTION_KEY", "SNAPVISOR_ENCRYPTION_KEY_FILE", "SNAPVISOR_ENCRYPTION_KEYS", "SNAPVISOR_ENCRYPTION_KEYS_FILE",
		"SNAPVISOR_AGE_PASSPHRASE", "SNAPVISOR_AGE_IDENTITY_FILE", "SNAPVISOR_GPG_PASSPHRASE", "SNAPVISOR_GPG_SECRET_KEYRING_FILE"} {
		if !slices.Contains(secrets, v) {
			t.Errorf("%s is not kept out of the service's environment", v)
		}
	}
	var out bytes.Buffer
	if err := cmdEnv(context.Background(), &app{stdout: &out}, nil); err != nil {
		t.Fatal(err)
	}
	for _, v := range []string{"SNAPVISOR_ENCRYPTION ", "SNAPVISOR_KEY_ROTATION", "SNAPVISOR_OLD_KEYS_RETENTION", "SNAPVISOR_AGE_RECIPIENTS", "SNAPVISOR_GPG_PUBLIC_KEYRING", "SNAPVISOR_PBKDF2_ITER"} {
		if !strings.Contains(out.String(), v) {
			t.Errorf("entrypoint env lacks %s", v)
		}
	}
	if strings.Contains(out.String(), key) {
		t.Fatal("entrypoint env shows the key")
	}

	t.Setenv("SNAPVISOR_ENCRYPTION", "aes256-gcm")
	t.Setenv("SNAPVISOR_ENCRYPTION_KEY_FILE", "")
	t.Setenv("SNAPVISOR_ENCRYPTION_KEY", "dG9vIHNob3J0")
	_, err = loadConfig()
	var ce *config.Error
	if !errors.As(err, &ce) || ce.Var != "SNAPVISOR_ENCRYPTION_KEY" || strings.Contains(err.Error(), "dG9vIHNob3J0") {
		t.Fatalf("loadConfig with a short key = %v, want a hidden-value error for SNAPVISOR_ENCRYPTION_KEY", err)
	}
}
