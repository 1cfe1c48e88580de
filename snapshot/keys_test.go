package snapshot

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"snapvisor/config"
	"snapvisor/internal/testutil"
	"snapvisor/seal"
)

// fakeClock is a settable clock for hooks.now.
type fakeClock struct{ t time.Time }

func (c *fakeClock) now() time.Time      { return c.t }
func (c *fakeClock) add(d time.Duration) { c.t = c.t.Add(d) }

// TestEncryption_RotationFakeClock runs key rotation across a fake clock:
// a first key is generated into an empty keyring file, replaced every 90
// days; snapshots under three keys all restore (also old ones after the
// rotation); a replaced key is dropped only when no snapshot uses it and its
// retention has passed.
func TestEncryption_RotationFakeClock(t *testing.T) {
	ctx := context.Background()
	day := 24 * time.Hour
	src := filepath.Join(t.TempDir(), "data")
	smallTree(t, src)
	want := model(t, src)
	secrets := t.TempDir()
	ringPath := filepath.Join(secrets, "keyring")
	must(t, os.WriteFile(ringPath, nil, 0o600))
	cfg := testConfig(t, CompressionGzip, src)
	cfg.Encryption = seal.Config{Algorithm: seal.AESGCM, KeysFile: ringPath, Rotation: config.NewAge("90d"), OldKeysRetention: config.NewAge("7d")}
	must(t, cfg.Validate())

	var logs bytes.Buffer
	log := zap.New(zapcore.NewCore(zapcore.NewJSONEncoder(zap.NewProductionEncoderConfig()), zapcore.AddSync(&logs), zap.InfoLevel))
	clock := &fakeClock{t: time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)}
	snap := func() Info {
		t.Helper()
		info, err := create(ctx, cfg, log, hooks{now: clock.now})
		must(t, err)
		return info
	}
	keyring := func() seal.Keyring {
		t.Helper()
		b, err := os.ReadFile(ringPath)
		must(t, err)
		ring, err := seal.ParseKeyring(string(b))
		must(t, err)
		return ring
	}
	ids := func() []string { t.Helper(); return keyring().IDs() }
	keyOf := func(i Info) string {
		t.Helper()
		id, err := gcmKeyIDOf(i.Path)
		must(t, err)
		return id
	}
	// A restore or `entrypoint keys` is a later command: it loads the
	// configuration, the keyring as rotated by the snapshots, once.
	later := func() Config {
		t.Helper()
		c := cfg
		must(t, c.Validate())
		return c
	}
	restore := func(i Info) {
		t.Helper()
		must(t, Restore(ctx, later(), i.Path, RestoreOptions{DiscardCurrent: true}, testLogger(t)))
		sameTree(t, want, model(t, src), false)
	}

	s1 := snap() // first key generated into the empty keyring
	k1 := ids()
	if len(k1) != 1 || keyOf(s1) != k1[0] || k1[0] != "key-20250101T000000Z" {
		t.Fatalf("after the first snapshot: keyring %v, snapshot key %s", k1, keyOf(s1))
	}
	fi, err := os.Stat(ringPath)
	must(t, err)
	if fi.Mode().Perm() != 0o600 {
		t.Fatalf("keyring mode %v, want 0600", fi.Mode().Perm())
	}
	clock.add(30 * day)
	s2 := snap()
	if keyOf(s2) != k1[0] || len(ids()) != 1 {
		t.Fatalf("a 30-day-old key was replaced: %v", ids())
	}
	clock.add(61 * day) // day 91: the first key is due
	s3 := snap()
	k2 := ids()
	if len(k2) != 2 || keyOf(s3) != k2[1] {
		t.Fatalf("day 91: keyring %v, snapshot key %s", k2, keyOf(s3))
	}
	clock.add(91 * day) // day 182
	s4 := snap()
	k3 := ids()
	if len(k3) != 3 || keyOf(s4) != k3[2] {
		t.Fatalf("day 182: keyring %v (the first key is used by two snapshots), snapshot key %s", k3, keyOf(s4))
	}
	// Snapshots under three keys all restore, the oldest too.
	for _, s := range []Info{s1, s2, s3, s4} {
		restore(s)
	}
	uses, err := KeyUsage(later().Encryption, cfg.Dir)
	must(t, err)
	if len(uses) != 3 || len(uses[0].Snapshots) != 2 || !uses[2].Current || uses[0].Current || uses[0].DropAfter.IsZero() {
		t.Fatalf("KeyUsage = %+v", uses)
	}

	// Retention deletes the first key's snapshots: the key goes at the next snapshot.
	for _, s := range []Info{s1, s2} {
		must(t, os.Remove(s.Path))
		must(t, os.Remove(s.Path+".sha256"))
	}
	clock.add(day)
	s5 := snap()
	if got := ids(); !slices.Equal(got, k3[1:]) {
		t.Fatalf("day 183: keyring %v, want %v (first key unused and replaced 92 days ago)", got, k3[1:])
	}
	// The second key is unused once s3 goes, but was replaced only 2 days ago.
	must(t, os.Remove(s3.Path))
	must(t, os.Remove(s3.Path+".sha256"))
	clock.add(day)
	snap()
	if got := ids(); !slices.Equal(got, k3[1:]) {
		t.Fatalf("day 184: keyring %v, want %v (second key within its 7-day retention)", got, k3[1:])
	}
	clock.add(6 * day) // day 190: 8 days after its replacement
	snap()
	if got := ids(); !slices.Equal(got, k3[2:]) {
		t.Fatalf("day 190: keyring %v, want %v", got, k3[2:])
	}
	restore(s4) // an older snapshot under the surviving key
	restore(s5)

	// The log names key ids, never key material.
	ring := keyring()
	material := strings.TrimSpace(strings.SplitN(strings.Split(string(ring.Format()), "\n")[1], ":", 3)[1])
	if !strings.Contains(logs.String(), "new_key_id") || strings.Contains(logs.String(), material) {
		t.Fatalf("rotation log lacks the new key id or shows key material:\n%s", logs.String())
	}
}

// TestEncryption_UnreadableKeyring checks that a keyring that cannot be read
// fails the snapshot with an error naming the variable (there is no key to use).
func TestEncryption_UnreadableKeyring(t *testing.T) {
	src := filepath.Join(t.TempDir(), "data")
	smallTree(t, src)
	cfg := testConfig(t, CompressionGzip, src)
	ringPath := filepath.Join(t.TempDir(), "keyring")
	must(t, os.WriteFile(ringPath, nil, 0o600))
	cfg.Encryption = seal.Config{Algorithm: seal.AESGCM, KeysFile: ringPath, Rotation: config.NewAge("90d"), OldKeysRetention: config.NewAge("7d")}
	must(t, cfg.Validate())
	must(t, os.Remove(ringPath)) // gone after start-up
	_, err := Create(context.Background(), cfg, testLogger(t))
	var ce *config.Error
	if !errors.As(err, &ce) || ce.Var != "SNAPVISOR_ENCRYPTION_KEYS_FILE" {
		t.Fatalf("Create = %v, want an error naming SNAPVISOR_ENCRYPTION_KEYS_FILE", err)
	}
	if list, _ := List(cfg.Dir, ""); len(list) != 0 {
		t.Fatalf("a failed snapshot is listed: %v", list)
	}
}

// TestConfig_ValidateEncryption checks that Config.Validate reports the
// encryption settings' errors (seal.Config.Validate, tested in seal), each
// naming its variable.
func TestConfig_ValidateEncryption(t *testing.T) {
	for _, tc := range []struct {
		e     seal.Config
		varIs string
	}{
		{seal.Config{Algorithm: "rot13"}, "SNAPVISOR_ENCRYPTION"},
		{seal.Config{Algorithm: seal.AESGCM}, "SNAPVISOR_ENCRYPTION"},
		{seal.Config{Algorithm: seal.AESGCM, Keys: "a:short"}, "SNAPVISOR_ENCRYPTION_KEYS"},
		{seal.Config{Algorithm: seal.AESGCM, KeysFile: "/nonexistent/ring"}, "SNAPVISOR_ENCRYPTION_KEYS_FILE"},
		{seal.Config{Algorithm: seal.AESGCM, Key: config.Secret(testutil.RandomKey(t)), Rotation: config.NewAge("quarterly")}, "SNAPVISOR_KEY_ROTATION"},
		{seal.Config{Algorithm: seal.AESCBC, Key: "p", PBKDF2Iter: 10}, "SNAPVISOR_PBKDF2_ITER"},
		{seal.Config{Algorithm: seal.Age}, "SNAPVISOR_ENCRYPTION"},
	} {
		cfg := Config{Sources: []string{"/srv/data"}, Dir: "/backups", Name: "s", Compression: CompressionGzip, Encryption: tc.e}
		var ce *config.Error
		if err := cfg.Validate(); !errors.As(err, &ce) || ce.Var != tc.varIs {
			t.Errorf("Config.Validate with %s wrong = %v, want a *config.Error for it", tc.varIs, err)
		}
	}
}
