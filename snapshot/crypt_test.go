package snapshot

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"snapvisor/config"
	"snapvisor/internal/sealtest"
	"snapvisor/internal/testutil"
	"snapvisor/seal"
)

// secretMarker is in the test data; no encrypted file may contain it.
const secretMarker = "SNAPVISOR-PLAINTEXT-MARKER"

// smallTree writes a small tree: text with the marker, 200 KiB of
// incompressible bytes (several 64 KiB encryption chunks) and a subdirectory.
func smallTree(t *testing.T, root string) {
	t.Helper()
	writeFile(t, filepath.Join(root, "a.txt"), []byte(strings.Repeat(secretMarker+" some text\n", 500)), 0o644)
	rnd := make([]byte, 200<<10)
	r := mrand.New(mrand.NewPCG(1, 2))
	for i := range rnd {
		rnd[i] = byte(r.Uint32())
	}
	writeFile(t, filepath.Join(root, "random.bin"), rnd, 0o600)
	writeFile(t, filepath.Join(root, "sub", "b.txt"), []byte("b\n"), 0o640)
}

// creds are credentials made by the real CLIs: an age identity (age-keygen)
// and an OpenPGP key pair (gpg), exported as snapvisor reads them.
type creds struct {
	ageKeyFile, ageRecipient string
	gpgHome, gpgPubRing      string // GNUPGHOME holding the secret key; binary public key ring (gpg --export)
	gpgSecret                string // armored secret key (gpg --export-secret-keys --armor)
	gpgFingerprint           string
}

func newCreds(t *testing.T) creds {
	t.Helper()
	testutil.RequireTool(t, "age-keygen")
	testutil.RequireTool(t, "gpg")
	dir := t.TempDir()
	var c creds
	c.ageKeyFile = filepath.Join(dir, "age.key")
	run(t, dir, "age-keygen", "-o", c.ageKeyFile)
	c.ageRecipient = strings.TrimSpace(run(t, dir, "age-keygen", "-y", c.ageKeyFile))

	c.gpgHome = filepath.Join(dir, "gnupg")
	must(t, os.Mkdir(c.gpgHome, 0o700))
	t.Cleanup(func() { _ = exec.Command("gpgconf", "--homedir", c.gpgHome, "--kill", "all").Run() })
	gpg := func(args ...string) string {
		return run(t, dir, "gpg", append([]string{"--homedir", c.gpgHome, "--batch", "--quiet", "--pinentry-mode", "loopback", "--passphrase", ""}, args...)...)
	}
	gpg("--quick-gen-key", "snapvisor test <test@snapvisor.invalid>", "future-default", "default", "never")
	for _, line := range strings.Split(gpg("--list-keys", "--with-colons"), "\n") {
		if strings.HasPrefix(line, "fpr:") && c.gpgFingerprint == "" {
			c.gpgFingerprint = strings.Split(line, ":")[9]
		}
	}
	c.gpgPubRing = filepath.Join(dir, "pub.gpg")
	gpg("--output", c.gpgPubRing, "--export", c.gpgFingerprint)
	c.gpgSecret = gpg("--armor", "--export-secret-keys", c.gpgFingerprint)
	return c
}

func (c creds) ageIdentity(t *testing.T) config.Secret {
	t.Helper()
	b, err := os.ReadFile(c.ageKeyFile)
	must(t, err)
	return config.Secret(b)
}

// cryptCase is one way of encrypting, with the credentials that decrypt it.
type cryptCase struct {
	name string
	alg  string
	enc  seal.Config
}

func cryptCases(t *testing.T, c creds) []cryptCase {
	return []cryptCase{
		{"aes256-gcm", seal.AESGCM, seal.Config{Algorithm: seal.AESGCM, Key: config.Secret(testutil.RandomKey(t))}},
		{"age-recipient", seal.Age, seal.Config{Algorithm: seal.Age, AgeRecipients: []string{c.ageRecipient}, AgeIdentity: c.ageIdentity(t)}},
		{"age-passphrase", seal.Age, seal.Config{Algorithm: seal.Age, AgePassphrase: "correct horse battery staple"}.WithAgeWorkFactor(10)},
		{"gpg-passphrase", seal.GPG, seal.Config{Algorithm: seal.GPG, GPGPassphrase: "gpg passphrase"}},
		{"gpg-public-key", seal.GPG, seal.Config{Algorithm: seal.GPG, GPGPublicKeyring: c.gpgPubRing, GPGSecretKeyring: config.Secret(c.gpgSecret)}},
		{"aes256-cbc", seal.AESCBC, seal.Config{Algorithm: seal.AESCBC, Key: "an openssl passphrase", PBKDF2Iter: 1000}},
	}
}

// TestEncryption_RoundTrip snapshots, lists, verifies and restores with every
// algorithm and compression; the stored bytes never contain the plaintext.
func TestEncryption_RoundTrip(t *testing.T) {
	c := newCreds(t)
	for _, cc := range cryptCases(t, c) {
		for _, comp := range []string{CompressionGzip, CompressionZstd, CompressionNone} {
			t.Run(cc.name+"/"+comp, func(t *testing.T) {
				ctx := context.Background()
				src := filepath.Join(t.TempDir(), "data")
				smallTree(t, src)
				want := model(t, src)
				cfg := testConfig(t, comp, src)
				cfg.Encryption = cc.enc
				must(t, cfg.Validate())
				info, err := Create(ctx, cfg, testLogger(t))
				must(t, err)
				suffix := extension(comp, cc.alg)
				if !strings.HasSuffix(info.Name, suffix) || info.Encryption != cc.alg || info.Compression != comp {
					t.Fatalf("Create = %s (%s, %s), want suffix %s", info.Name, info.Compression, info.Encryption, suffix)
				}
				stored, err := os.ReadFile(info.Path)
				must(t, err)
				if bytes.Contains(stored, []byte(secretMarker)) || bytes.Contains(stored, []byte("random.bin")) {
					t.Fatal("the stored file contains plaintext")
				}
				if got := seal.Sniff(stored); got != cc.alg {
					t.Fatalf("file starts like %q, want %q", got, cc.alg)
				}
				list, err := List(cfg.Dir, "snapshot")
				must(t, err)
				if len(list) != 1 || list[0].Name != info.Name || list[0].Encryption != cc.alg || list[0].Compression != comp || list[0].SHA256 != info.SHA256 {
					t.Fatalf("List = %+v, want %s", list, info.Name)
				}
				must(t, VerifyWith(ctx, info.Path, cc.enc))
				if err := VerifyWith(ctx, info.Path, seal.Config{}); !errors.Is(err, seal.ErrKey) {
					t.Fatalf("Verify without credentials = %v, want ErrKey", err)
				}
				writeFile(t, filepath.Join(src, "a.txt"), []byte("changed"), 0o644)
				// Restore with the decryption credentials only: the algorithm comes from the name.
				rcfg := cfg
				rcfg.Encryption = cc.enc
				rcfg.Encryption.Algorithm = seal.None
				must(t, Restore(ctx, rcfg, info.Path, RestoreOptions{DiscardCurrent: true}, testLogger(t)))
				sameTree(t, want, model(t, src), false)
			})
		}
	}
}

// TestEncryption_Stream checks that Stream writes the same encrypted format as Create.
func TestEncryption_Stream(t *testing.T) {
	src := filepath.Join(t.TempDir(), "data")
	smallTree(t, src)
	cfg := testConfig(t, CompressionZstd, src)
	cfg.Dir = ""
	cfg.Encryption = seal.Config{Algorithm: seal.AESGCM, Key: config.Secret(testutil.RandomKey(t))}
	var buf bytes.Buffer
	info, err := Stream(context.Background(), cfg, time.Now(), &buf, testLogger(t))
	must(t, err)
	if !strings.HasSuffix(info.Name, ".tar.zst.aes256gcm") || info.Size != int64(buf.Len()) {
		t.Fatalf("Stream = %+v (%d bytes written)", info, buf.Len())
	}
	s, err := readArchiveAs(context.Background(), &buf, formatOf(info.Name, cfg.Encryption), nil)
	must(t, err)
	if s.summary == nil || s.counted.Files != 3 {
		t.Fatalf("streamed archive holds %+v", s.counted)
	}
}

// cliExtract restores the tree from an archive with a shell pipeline and compares it.
func cliExtract(t *testing.T, want map[string]node, script string, env ...string) {
	t.Helper()
	out := t.TempDir()
	cmd := exec.Command("bash", "-c", "set -eo pipefail; "+script)
	cmd.Env = append(os.Environ(), append(env, "OUT="+out)...)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%s: %v\n%s", script, err, b)
	}
	sameTree(t, want, model(t, filepath.Join(out, "data")), false)
}

// cliArchive makes dir/<name> with a shell pipeline (tar of the parent of src) and its .sha256.
func cliArchive(t *testing.T, src, dir, name, script string, env ...string) string {
	t.Helper()
	must(t, os.MkdirAll(dir, 0o700))
	p := filepath.Join(dir, name)
	cmd := exec.Command("bash", "-c", "set -eo pipefail; "+script)
	cmd.Env = append(os.Environ(), append(env, "PARENT="+filepath.Dir(src), "ARCHIVE="+p)...)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%s: %v\n%s", script, err, b)
	}
	writeSum(t, p)
	return p
}

// TestEncryption_CLIInterop checks both directions against the standard
// tools: snapvisor's files decrypt with age, gpg and openssl, and their files
// restore with snapvisor.
func TestEncryption_CLIInterop(t *testing.T) {
	testutil.RequireTool(t, "age")
	testutil.RequireTool(t, "openssl")
	c := newCreds(t)
	passFile := filepath.Join(t.TempDir(), "pass")
	must(t, os.WriteFile(passFile, []byte("interop passphrase\n"), 0o600))
	cbcKey := config.Secret("interop passphrase")
	gpgBatch := `gpg --homedir "$GH" --batch --quiet --pinentry-mode loopback`
	cases := []struct {
		name    string
		enc     seal.Config
		decrypt string // reads $ARCHIVE, extracts into $OUT
		encrypt string // tars $PARENT/data into $ARCHIVE
		suffix  string
	}{
		{"age", seal.Config{Algorithm: seal.Age, AgeRecipients: []string{c.ageRecipient}, AgeIdentity: c.ageIdentity(t)},
			`age -d -i "$AGEKEY" "$ARCHIVE" | tar -xz -C "$OUT"`,
			`tar --format=posix -cz -C "$PARENT" data | age -r "$AGEREC" -o "$ARCHIVE"`, ".tar.gz.age"},
		{"gpg-passphrase", seal.Config{Algorithm: seal.GPG, GPGPassphrase: "interop passphrase"},
			gpgBatch + ` --passphrase-file "$PASS" --decrypt "$ARCHIVE" | tar -xz -C "$OUT"`,
			`tar --format=posix -cz -C "$PARENT" data | ` + gpgBatch + ` --passphrase-file "$PASS" --symmetric --cipher-algo AES256 -o "$ARCHIVE"`, ".tar.gz.gpg"},
		{"gpg-public-key", seal.Config{Algorithm: seal.GPG, GPGPublicKeyring: c.gpgPubRing, GPGSecretKeyring: config.Secret(c.gpgSecret)},
			gpgBatch + ` --decrypt "$ARCHIVE" | tar -xz -C "$OUT"`,
			`tar --format=posix -cz -C "$PARENT" data | ` + gpgBatch + ` --trust-model always --encrypt -r "$FPR" -o "$ARCHIVE"`, ".tar.gz.gpg"},
		{"aes256-cbc", seal.Config{Algorithm: seal.AESCBC, Key: cbcKey}, // default iterations
			`openssl enc -d -aes-256-cbc -pbkdf2 -iter 600000 -pass file:"$PASS" -in "$ARCHIVE" | tar -xz -C "$OUT"`,
			`tar --format=posix -cz -C "$PARENT" data | openssl enc -aes-256-cbc -pbkdf2 -iter 600000 -pass file:"$PASS" -out "$ARCHIVE"`, ".tar.gz.aes256cbc"},
	}
	env := []string{"GH=" + c.gpgHome, "PASS=" + passFile, "AGEKEY=" + c.ageKeyFile, "AGEREC=" + c.ageRecipient, "FPR=" + c.gpgFingerprint}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			src := filepath.Join(t.TempDir(), "data")
			smallTree(t, src)
			want := model(t, src)
			cfg := testConfig(t, CompressionGzip, src)
			cfg.Encryption = tc.enc
			t.Run("SnapvisorToCLI", func(t *testing.T) {
				info, err := Create(ctx, cfg, testLogger(t))
				must(t, err)
				run(t, cfg.Dir, "sha256sum", "-c", "--strict", info.Name+".sha256")
				cliExtract(t, want, tc.decrypt, append(env, "ARCHIVE="+info.Path)...)
			})
			t.Run("CLIToSnapvisor", func(t *testing.T) {
				dir := filepath.Join(t.TempDir(), "backups")
				p := cliArchive(t, src, dir, "snapshot-20240102T030405Z"+tc.suffix, tc.encrypt, env...)
				must(t, VerifyWith(ctx, p, tc.enc))
				must(t, os.RemoveAll(src))
				rcfg := cfg
				rcfg.Dir = dir
				must(t, Restore(ctx, rcfg, p, RestoreOptions{}, testLogger(t)))
				sameTree(t, want, model(t, src), false)
			})
		})
	}
}

// open decrypts ct to its end as restore does (seal's damage as ErrCorrupt);
// it fails when the result differs from plain without an error.
func open(enc seal.Config, alg string, ct, plain []byte) error {
	r, err := seal.NewReader(bytes.NewReader(ct), alg, enc)
	if err != nil {
		return asCorrupt(err)
	}
	got, err := io.ReadAll(corruptReader{r})
	if err != nil {
		return err
	}
	if !bytes.Equal(got, plain) {
		return errors.New("decrypted to different plaintext WITHOUT an error")
	}
	return nil
}

// chunkGeometry returns where the chunked payload starts and the size of one chunk.
func chunkGeometry(t *testing.T, alg string, ct []byte) (start, size int) {
	t.Helper()
	switch alg {
	case seal.AESGCM:
		id, err := seal.KeyID(bytes.NewReader(ct))
		must(t, err)
		// magic, version, id length, id, salt, MAC (seal's package documentation)
		return len("SNAPVISOR-AES256GCM") + 2 + len(id) + 32 + 32, 16 + 64<<10 + 16
	case seal.Age:
		i := bytes.Index(ct, []byte("\n--- "))
		j := bytes.IndexByte(ct[i+1:], '\n')
		return i + 1 + j + 1 + 16, 64<<10 + 16
	}
	return 100, 64 << 10 // OpenPGP: no chunk structure to align to
}

// TestEncryption_Tampering checks that aes256-gcm, age and gpg detect a
// flipped byte, truncation, a dropped, swapped or repeated chunk and appended
// data, both in the decryption layer and through Verify and Restore with a
// .sha256 recomputed by the attacker.
func TestEncryption_Tampering(t *testing.T) {
	c := newCreds(t)
	plain := make([]byte, 5*64<<10+1234)
	_, err := rand.Read(plain)
	must(t, err)
	for _, cc := range cryptCases(t, c) {
		if cc.alg == seal.AESCBC {
			continue // no integrity of its own: see TestEncryption_CBCIntegrityIsTheChecksum
		}
		t.Run(cc.name, func(t *testing.T) {
			ct := sealtest.Seal(t, cc.enc, plain)
			must(t, open(cc.enc, cc.alg, ct, plain))
			start, size := chunkGeometry(t, cc.alg, ct)
			if len(ct) < start+3*size {
				t.Fatalf("ciphertext of %d bytes has fewer than 3 chunks of %d after %d", len(ct), size, start)
			}
			flip := func(i int) []byte { b := bytes.Clone(ct); b[i] ^= 0x01; return b }
			cut := func(from, to int) []byte { return append(bytes.Clone(ct[:from]), ct[to:]...) }
			swapped := bytes.Clone(ct)
			copy(swapped[start:], ct[start+size:start+2*size])
			copy(swapped[start+size:], ct[start:start+size])
			repeated := append(append(bytes.Clone(ct[:start+2*size]), ct[start+size:start+2*size]...), ct[start+2*size:]...)
			tampered := map[string][]byte{
				"flip header byte":       flip(start / 2),
				"flip first chunk byte":  flip(start + 10),
				"flip middle byte":       flip(len(ct) / 2),
				"flip last byte":         flip(len(ct) - 1),
				"truncate by one byte":   ct[:len(ct)-1],
				"truncate at chunk edge": ct[:start+2*size],
				"truncate in the middle": ct[:len(ct)/2],
				"truncate to header":     ct[:start],
				"drop a chunk":           cut(start+size, start+2*size),
				"swap two chunks":        swapped,
				"repeat a chunk":         repeated,
				"append data":            append(bytes.Clone(ct), ct[start:start+100]...),
			}
			for what, b := range tampered {
				if err := open(cc.enc, cc.alg, b, plain); err == nil {
					t.Errorf("%s: not detected", what)
				} else if !errors.Is(err, ErrCorrupt) && !errors.Is(err, seal.ErrKey) {
					t.Errorf("%s: error %v wraps neither ErrCorrupt nor ErrKey", what, err)
				}
			}
		})
	}
	t.Run("Pipeline", func(t *testing.T) {
		for _, cc := range cryptCases(t, c) {
			if cc.alg == seal.AESCBC || cc.name == "age-passphrase" || cc.name == "gpg-public-key" {
				continue
			}
			t.Run(cc.name, func(t *testing.T) {
				ctx := context.Background()
				src := filepath.Join(t.TempDir(), "data")
				smallTree(t, src)
				cfg := testConfig(t, CompressionNone, src) // no gzip CRC to catch the change first
				cfg.Encryption = cc.enc
				info, err := Create(ctx, cfg, testLogger(t))
				must(t, err)
				b, err := os.ReadFile(info.Path)
				must(t, err)
				b[len(b)/2] ^= 0x40
				must(t, os.WriteFile(info.Path, b, 0o600))
				if err := VerifyWith(ctx, info.Path, cc.enc); !errors.Is(err, ErrChecksum) {
					t.Fatalf("Verify of a modified file = %v, want ErrChecksum", err)
				}
				writeSum(t, info.Path) // the attacker fixes the checksum too
				if err := VerifyWith(ctx, info.Path, cc.enc); !errors.Is(err, ErrCorrupt) {
					t.Fatalf("Verify with a recomputed checksum = %v, want ErrCorrupt from authentication", err)
				}
				writeFile(t, filepath.Join(src, "new.txt"), []byte("current data"), 0o644)
				before := model(t, src)
				if err := Restore(ctx, cfg, info.Path, RestoreOptions{}, testLogger(t)); !errors.Is(err, ErrCorrupt) {
					t.Fatalf("Restore = %v, want ErrCorrupt", err)
				}
				sameTree(t, before, model(t, src), false)
				if got := entriesOf(t, filepath.Dir(src)); len(got) != 1 {
					t.Fatalf("restore left %v beside the target", got)
				}
			})
		}
	})
}

// TestEncryption_CBCIntegrityIsTheChecksum documents that aes256-cbc changes
// are caught by the .sha256 (it has no authentication of its own).
func TestEncryption_CBCIntegrityIsTheChecksum(t *testing.T) {
	src := filepath.Join(t.TempDir(), "data")
	smallTree(t, src)
	cfg := testConfig(t, CompressionGzip, src)
	cfg.Encryption = seal.Config{Algorithm: seal.AESCBC, Key: "p", PBKDF2Iter: 1000}
	info, err := Create(context.Background(), cfg, testLogger(t))
	must(t, err)
	b, err := os.ReadFile(info.Path)
	must(t, err)
	b[len(b)/2] ^= 1
	must(t, os.WriteFile(info.Path, b, 0o600))
	if err := VerifyWith(context.Background(), info.Path, cfg.Encryption); !errors.Is(err, ErrChecksum) {
		t.Fatalf("Verify = %v, want ErrChecksum", err)
	}
}

// TestEncryption_WrongKey checks that a missing or wrong key, identity or
// passphrase is an ErrKey error naming what to set, and leaves the target untouched.
func TestEncryption_WrongKey(t *testing.T) {
	c := newCreds(t)
	other := newCreds(t)
	gcmKey := config.Secret(testutil.RandomKey(t))
	otherRing := config.Secret(fmt.Sprintf("%s:%s\n", singleKeyIDOf(t, gcmKey), testutil.RandomKey(t)))
	cases := []struct {
		name      string
		enc, dec  seal.Config
		errSays   string
		keyAbsent string // must not appear in the error
	}{
		{"gcm/no key", seal.Config{Algorithm: seal.AESGCM, Key: gcmKey}, seal.Config{}, "not configured", gcmKey.Reveal()},
		{"gcm/other key", seal.Config{Algorithm: seal.AESGCM, Key: gcmKey}, seal.Config{Key: config.Secret(testutil.RandomKey(t))}, "not configured", gcmKey.Reveal()},
		{"gcm/same id other key", seal.Config{Algorithm: seal.AESGCM, Key: gcmKey}, seal.Config{Keys: otherRing}, "is not the key", gcmKey.Reveal()},
		{"age/no identity", seal.Config{Algorithm: seal.Age, AgeRecipients: []string{c.ageRecipient}}, seal.Config{}, "SNAPVISOR_AGE_IDENTITY", ""},
		{"age/other identity", seal.Config{Algorithm: seal.Age, AgeRecipients: []string{c.ageRecipient}}, seal.Config{AgeIdentity: other.ageIdentity(t)}, "no configured identity", ""},
		{"age/wrong passphrase", seal.Config{Algorithm: seal.Age, AgePassphrase: "right"}.WithAgeWorkFactor(10), seal.Config{AgePassphrase: "wrong"}, "no configured identity", "right"},
		{"gpg/wrong passphrase", seal.Config{Algorithm: seal.GPG, GPGPassphrase: "right one"}, seal.Config{GPGPassphrase: "wrong one"}, "SNAPVISOR_GPG_PASSPHRASE", "right one"},
		{"gpg/other secret key", seal.Config{Algorithm: seal.GPG, GPGPublicKeyring: c.gpgPubRing}, seal.Config{GPGSecretKeyring: config.Secret(other.gpgSecret)}, "SNAPVISOR_GPG_SECRET_KEYRING", ""},
		{"cbc/no passphrase", seal.Config{Algorithm: seal.AESCBC, Key: "right one", PBKDF2Iter: 1000}, seal.Config{PBKDF2Iter: 1000}, "SNAPVISOR_ENCRYPTION_KEY", "right one"},
		{"cbc/wrong passphrase", seal.Config{Algorithm: seal.AESCBC, Key: "right one", PBKDF2Iter: 1000}, seal.Config{Key: "wrong one", PBKDF2Iter: 1000}, "wrong passphrase", "right one"},
		{"cbc/wrong iterations", seal.Config{Algorithm: seal.AESCBC, Key: "right one", PBKDF2Iter: 1000}, seal.Config{Key: "right one", PBKDF2Iter: 2000}, "SNAPVISOR_PBKDF2_ITER", "right one"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			src := filepath.Join(t.TempDir(), "data")
			smallTree(t, src)
			cfg := testConfig(t, CompressionGzip, src)
			cfg.Encryption = tc.enc
			info, err := Create(ctx, cfg, testLogger(t))
			must(t, err)
			writeFile(t, filepath.Join(src, "new.txt"), []byte("current data"), 0o644)
			before := model(t, src)
			rcfg := cfg
			rcfg.Encryption = tc.dec
			err = Restore(ctx, rcfg, info.Path, RestoreOptions{}, testLogger(t))
			if !errors.Is(err, seal.ErrKey) || !strings.Contains(err.Error(), tc.errSays) {
				t.Fatalf("Restore = %v, want ErrKey saying %q", err, tc.errSays)
			}
			if tc.keyAbsent != "" && strings.Contains(err.Error(), tc.keyAbsent) {
				t.Fatalf("the error reveals the key: %v", err)
			}
			sameTree(t, before, model(t, src), false)
			if got := entriesOf(t, filepath.Dir(src)); len(got) != 1 {
				t.Fatalf("restore left %v beside the target", got)
			}
			if err := VerifyWith(ctx, info.Path, tc.dec); !errors.Is(err, seal.ErrKey) {
				t.Fatalf("Verify = %v, want ErrKey", err)
			}
		})
	}
}

// singleKeyIDOf is the key id of s as SNAPVISOR_ENCRYPTION_KEY.
func singleKeyIDOf(t *testing.T, s config.Secret) string {
	t.Helper()
	keys, err := seal.Config{Key: s}.KeyStates()
	must(t, err)
	return keys[0].ID
}

// TestEncryption_MisnamedFile checks that an encrypted file without its suffix gets a clear error.
func TestEncryption_MisnamedFile(t *testing.T) {
	src := filepath.Join(t.TempDir(), "data")
	smallTree(t, src)
	cfg := testConfig(t, CompressionGzip, src)
	cfg.Encryption = seal.Config{Algorithm: seal.AESGCM, Key: config.Secret(testutil.RandomKey(t))}
	info, err := Create(context.Background(), cfg, testLogger(t))
	must(t, err)
	plainName := strings.TrimSuffix(info.Path, ".aes256gcm")
	must(t, os.Rename(info.Path, plainName))
	writeSum(t, plainName)
	err = VerifyWith(context.Background(), plainName, cfg.Encryption)
	if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), ".aes256gcm suffix") {
		t.Fatalf("Verify = %v, want a hint about the missing .aes256gcm suffix", err)
	}
}

func TestParseFileName_Encryption(t *testing.T) {
	cases := []struct {
		base, comp, enc string
		ok              bool
	}{
		{"db-20250102T030405Z.tar.gz.aes256gcm", CompressionGzip, seal.AESGCM, true},
		{"db-20250102T030405Z.tar.zst.age", CompressionZstd, seal.Age, true},
		{"db-20250102T030405Z.tar.gpg", CompressionNone, seal.GPG, true},
		{"db-20250102T030405Z.tar.gz.aes256cbc", CompressionGzip, seal.AESCBC, true},
		{"db-20250102T030405Z.tar.gz", CompressionGzip, seal.None, true},
		{"db-20250102T030405Z.tar.gz.aes256gcm.sha256", "", "", false},
		{"db-20250102T030405Z.tar.aes256gcm.gz", "", "", false},
		{"db-20250102T030405Z.tar.gz.aes", "", "", false},
	}
	for _, tc := range cases {
		t.Run(tc.base, func(t *testing.T) {
			n, ok := ParseFileName(tc.base)
			if ok != tc.ok || (ok && (n.Prefix != "db" || n.Compression != tc.comp || n.Encryption != tc.enc)) {
				t.Fatalf("ParseFileName = %+v %v; want %q %q %v", n, ok, tc.comp, tc.enc, tc.ok)
			}
			if af := formatOf(tc.base, seal.Config{}); ok && (af.compression != tc.comp || af.encryption != tc.enc) {
				t.Fatalf("formatOf = %q %q, want %q %q", af.compression, af.encryption, tc.comp, tc.enc)
			}
		})
	}
	for _, tmp := range []string{".db-20250102T030405Z.tar.gz.aes256gcm.tmp-123", ".db-20250102T030405Z.tar.age.sha256.tmp-9"} {
		if !IsTemp(tmp) {
			t.Errorf("IsTemp(%s) = false", tmp)
		}
	}
}
