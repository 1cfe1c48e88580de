// Package restic reads and writes restic's repository format (version 2,
// compressed), natively and in process: a snapshot written here is read by
// the restic CLI, and one the CLI wrote restores here. The format's facts
// come from restic's design document; the code is our own.
//
// Files of a repository, each named by the SHA-256 of its (encrypted)
// content: config, keys/<id>, data/<id[:2]>/<id> (packs), index/<id>,
// snapshots/<id>, locks/<id>. Every store of package store holds one.
package restic

import (
	"bytes"
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/user"
	"runtime"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/klauspost/compress/zstd"
	"github.com/restic/chunker"

	"snapvisor/store"
)

// Version is the repository format version this package writes; it also
// reads version 1 (uncompressed).
const Version = 2

// FileType is a kind of repository file.
type FileType string

const (
	ConfigFile   FileType = "config"
	KeyFile      FileType = "keys"
	PackFile     FileType = "data"
	IndexFile    FileType = "index"
	SnapshotFile FileType = "snapshots"
	LockFile     FileType = "locks"
)

// key is the store key of the file of type t named id.
func key(t FileType, id ID) string {
	switch t {
	case ConfigFile:
		return "config"
	case PackFile:
		s := id.String()
		return "data/" + s[:2] + "/" + s
	}
	return string(t) + "/" + id.String()
}

// Config is the repository's config file.
type Config struct {
	Version           uint        `json:"version"`
	ID                string      `json:"id"`
	ChunkerPolynomial chunker.Pol `json:"chunker_polynomial"`
}

// ErrNoRepository: the location holds no repository (no config file).
var ErrNoRepository = errors.New("no restic repository here")

// ErrWrongPassword: no key file of the repository opens with the password.
var ErrWrongPassword = errors.New("wrong password: no key of the repository opens with RESTIC_PASSWORD")

// Repo is one open repository on a store.
type Repo struct {
	st    store.Store
	key   *Key
	keyID ID
	cfg   Config
	name  string // the store's redacted URL, for errors and logs

	indexMu sync.Mutex
	index   *Index // loaded by LoadIndex
	trees   packCache
}

// Name is the repository's location (credentials redacted).
func (r *Repo) Name() string { return r.name }

// Config is the repository's config.
func (r *Repo) Config() Config { return r.cfg }

// Store is the store the repository lives on.
func (r *Repo) Store() store.Store { return r.st }

// Password is a repository password; it never prints.
type Password []byte

func (Password) String() string   { return "<redacted>" }
func (Password) GoString() string { return "<redacted>" }

// kdfParams are the scrypt parameters of key files we write: restic's own
// defaults (N=2^15 would double the time of every open for no gain that
// matters to a key that only wraps a random master key).
var kdfParams = struct{ N, R, P int }{N: 1 << 14, R: 8, P: 1}

type keyFile struct {
	Created  time.Time `json:"created"`
	Username string    `json:"username"`
	Hostname string    `json:"hostname"`
	KDF      string    `json:"kdf"`
	N        int       `json:"N"`
	R        int       `json:"r"`
	P        int       `json:"p"`
	Salt     []byte    `json:"salt"`
	Data     []byte    `json:"data"`
}

// Open opens the repository on st with password. It returns an error
// matching ErrNoRepository when there is none, ErrWrongPassword when no key
// opens, and refuses versions it does not know.
func Open(ctx context.Context, st store.Store, password Password) (*Repo, error) {
	r := &Repo{st: st, name: st.Name()}
	raw, err := r.get(ctx, "config")
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%s: %w", r.name, ErrNoRepository)
	}
	if err != nil {
		return nil, fmt.Errorf("%s: read config: %w", r.name, err)
	}
	keys, err := st.List(ctx, "keys/")
	if err != nil {
		return nil, fmt.Errorf("%s: list keys: %w", r.name, err)
	}
	if len(keys) == 0 {
		return nil, fmt.Errorf("%s: the repository has a config but no key file", r.name)
	}
	// The key is the one that opens with the password and whose master key
	// opens the config: an init killed before its config (ours or
	// restic's) leaves a key of another master key under the same password.
	var plain []byte
	var cfgErr error
	for _, o := range keys {
		id, err := ParseID(strings.TrimPrefix(o.Key, "keys/"))
		if err != nil {
			continue
		}
		k, err := r.openKey(ctx, o.Key, password)
		if errors.Is(err, ErrUnauthenticated) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %s: %w", r.name, o.Key, err)
		}
		if plain, err = k.Open(nil, raw); err != nil {
			cfgErr = cmp.Or(cfgErr, err)
			continue
		}
		r.key, r.keyID = k, id
		break
	}
	if r.key == nil && cfgErr != nil {
		return nil, fmt.Errorf("%s: config: %w", r.name, cfgErr)
	}
	if r.key == nil {
		return nil, fmt.Errorf("%s: %w", r.name, ErrWrongPassword)
	}
	if err := json.Unmarshal(plain, &r.cfg); err != nil {
		return nil, fmt.Errorf("%s: config: %w", r.name, err)
	}
	if r.cfg.Version < 1 || r.cfg.Version > Version {
		return nil, fmt.Errorf("%s: repository version %d is not supported (versions 1 and 2 are)", r.name, r.cfg.Version)
	}
	if !r.cfg.ChunkerPolynomial.Irreducible() {
		return nil, fmt.Errorf("%s: config: chunker polynomial %v is not irreducible", r.name, r.cfg.ChunkerPolynomial)
	}
	return r, nil
}

// reopen checks that the repository is still the one r opened: its config
// file decrypts with r's key to the same config. The index is reloaded by
// the caller.
func (r *Repo) reopen(ctx context.Context) error {
	raw, err := r.get(ctx, "config")
	if err != nil {
		return err
	}
	plain, err := r.key.Open(nil, raw)
	if err != nil {
		return err
	}
	var cfg Config
	if err := json.Unmarshal(plain, &cfg); err != nil {
		return err
	}
	if cfg != r.cfg {
		return errors.New("config changed")
	}
	return nil
}

func (r *Repo) openKey(ctx context.Context, name string, password Password) (*Key, error) {
	raw, err := r.get(ctx, name)
	if err != nil {
		return nil, err
	}
	var kf keyFile
	if err := json.Unmarshal(raw, &kf); err != nil {
		return nil, fmt.Errorf("key file: %w", err)
	}
	if kf.KDF != "scrypt" {
		return nil, fmt.Errorf("key file: unknown kdf %q", kf.KDF)
	}
	user, err := kdf(password, kf.Salt, kf.N, kf.R, kf.P)
	if err != nil {
		return nil, err
	}
	plain, err := user.Open(nil, kf.Data)
	if err != nil {
		return nil, err
	}
	master := &Key{}
	if err := json.Unmarshal(plain, master); err != nil {
		return nil, fmt.Errorf("master key: %w", err)
	}
	return master, nil
}

// Init creates a repository (version 2) on st, with the chunker polynomial
// pol (a new random one when zero). It fails when a config exists. A key
// file that an init killed before its config left, and that opens with
// password, is reused rather than joined by a second one.
func Init(ctx context.Context, st store.Store, password Password, pol chunker.Pol) (*Repo, error) {
	r := &Repo{st: st, name: st.Name()}
	if _, err := r.get(ctx, "config"); err == nil {
		return nil, fmt.Errorf("%s: a repository exists already", r.name)
	} else if !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%s: %w", r.name, err)
	}
	if pol == 0 {
		var err error
		if pol, err = chunker.RandomPolynomial(); err != nil {
			return nil, err
		}
	}
	master, kid, err := r.leftKey(ctx, password)
	if err != nil {
		return nil, err
	}
	if master == nil {
		if master, kid, err = r.newKey(ctx, password); err != nil {
			return nil, err
		}
	}
	r.key, r.keyID = master, kid
	var idb [32]byte
	if _, err := rand.Read(idb[:]); err != nil {
		return nil, err
	}
	r.cfg = Config{Version: Version, ID: hex.EncodeToString(idb[:]), ChunkerPolynomial: pol}
	cj, err := json.Marshal(r.cfg)
	if err != nil {
		return nil, err
	}
	// The config is written last: a repository without it does not exist.
	if err := r.put(ctx, "config", master.Seal(nil, cj)); err != nil {
		return nil, fmt.Errorf("%s: write config: %w", r.name, err)
	}
	return r, nil
}

// leftKey finds a key file that opens with password in a repository that
// has no config: an init killed before its config left it. Reusing it keeps
// the repository at one key, so that the restic CLI, which takes the first
// key file that opens, gets the one the config is sealed for.
func (r *Repo) leftKey(ctx context.Context, password Password) (*Key, ID, error) {
	keys, err := r.st.List(ctx, "keys/")
	if err != nil {
		return nil, ID{}, fmt.Errorf("%s: list keys: %w", r.name, err)
	}
	for _, o := range keys {
		id, err := ParseID(strings.TrimPrefix(o.Key, "keys/"))
		if err != nil {
			continue
		}
		if k, err := r.openKey(ctx, o.Key, password); err == nil {
			return k, id, nil
		}
	}
	return nil, ID{}, nil
}

// newKey makes a master key and stores a key file wrapping it with password.
func (r *Repo) newKey(ctx context.Context, password Password) (*Key, ID, error) {
	master, err := newRandomKey()
	if err != nil {
		return nil, ID{}, err
	}
	salt := make([]byte, 64)
	if _, err := rand.Read(salt); err != nil {
		return nil, ID{}, err
	}
	userKey, err := kdf(password, salt, kdfParams.N, kdfParams.R, kdfParams.P)
	if err != nil {
		return nil, ID{}, err
	}
	mj, err := json.Marshal(master)
	if err != nil {
		return nil, ID{}, err
	}
	host, _ := os.Hostname()
	kf := keyFile{Created: time.Now(), Username: username(), Hostname: host, KDF: "scrypt",
		N: kdfParams.N, R: kdfParams.R, P: kdfParams.P, Salt: salt, Data: userKey.Seal(nil, mj)}
	kj, err := json.Marshal(kf)
	if err != nil {
		return nil, ID{}, err
	}
	kid := Hash(kj)
	if err := r.put(ctx, key(KeyFile, kid), kj); err != nil {
		return nil, ID{}, fmt.Errorf("%s: write key: %w", r.name, err)
	}
	return master, kid, nil
}

func username() string {
	if u, err := user.Current(); err == nil {
		return u.Username
	}
	return ""
}

func (r *Repo) get(ctx context.Context, k string) ([]byte, error) {
	rc, err := r.st.Get(ctx, k)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	return io.ReadAll(rc)
}

func (r *Repo) put(ctx context.Context, k string, b []byte) error {
	return r.st.Put(ctx, k, bytes.NewReader(b), int64(len(b)))
}

// zstd coders shared by every repository: restic's settings (default level,
// no checksum, 512 KiB window), so that sizes match the CLI's.
var (
	encOnce sync.Once
	enc     *zstd.Encoder
	decOnce sync.Once
	dec     *zstd.Decoder
)

func encoder() *zstd.Encoder {
	encOnce.Do(func() {
		enc, _ = zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedDefault), zstd.WithEncoderCRC(false),
			zstd.WithWindowSize(512*1024), zstd.WithEncoderConcurrency(runtime.GOMAXPROCS(0)), zstd.WithLowerEncoderMem(true))
	})
	return enc
}

func decoder() *zstd.Decoder {
	decOnce.Do(func() {
		dec, _ = zstd.NewReader(nil, zstd.WithDecoderConcurrency(0), zstd.WithDecoderMaxMemory(1<<34))
	})
	return dec
}

// LoadFile reads, authenticates and decompresses the file of type t named id.
func (r *Repo) LoadFile(ctx context.Context, t FileType, id ID) ([]byte, error) {
	raw, err := r.get(ctx, key(t, id))
	if err != nil {
		return nil, fmt.Errorf("%s: %s: %w", r.name, key(t, id), err)
	}
	if Hash(raw) != id {
		return nil, fmt.Errorf("%s: %s: content does not match its name (damaged)", r.name, key(t, id))
	}
	plain, err := r.key.Open(nil, raw)
	if err != nil {
		return nil, fmt.Errorf("%s: %s: %w", r.name, key(t, id), err)
	}
	if r.cfg.Version < 2 || len(plain) == 0 || plain[0] == '{' || plain[0] == '[' {
		return plain, nil
	}
	if plain[0] != 2 {
		return nil, fmt.Errorf("%s: %s: unknown encoding %d", r.name, key(t, id), plain[0])
	}
	out, err := decoder().DecodeAll(plain[1:], nil)
	if err != nil {
		return nil, fmt.Errorf("%s: %s: decompress: %w", r.name, key(t, id), err)
	}
	return out, nil
}

// LoadJSON loads a file and decodes its JSON into v.
func (r *Repo) LoadJSON(ctx context.Context, t FileType, id ID, v any) error {
	b, err := r.LoadFile(ctx, t, id)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("%s: %s: %w", r.name, key(t, id), err)
	}
	return nil
}

// SaveJSON encodes v, compresses (version 2), encrypts and stores it as a
// file of type t; it returns its ID.
func (r *Repo) SaveJSON(ctx context.Context, t FileType, v any) (ID, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return ID{}, err
	}
	if r.cfg.Version >= 2 {
		b = encoder().EncodeAll(b, []byte{2})
	}
	sealed := r.key.Seal(nil, b)
	id := Hash(sealed)
	if err := r.put(ctx, key(t, id), sealed); err != nil {
		return ID{}, fmt.Errorf("%s: write %s: %w", r.name, key(t, id), err)
	}
	return id, nil
}

// List returns the IDs and sizes of the files of type t.
func (r *Repo) List(ctx context.Context, t FileType) (map[ID]int64, error) {
	objs, err := r.st.List(ctx, string(t)+"/")
	if err != nil {
		return nil, fmt.Errorf("%s: list %s: %w", r.name, t, err)
	}
	out := make(map[ID]int64, len(objs))
	for _, o := range objs {
		i := strings.LastIndexByte(o.Key, '/')
		id, err := ParseID(o.Key[i+1:])
		if err != nil {
			continue // not a repository file (restic ignores them too)
		}
		if t == PackFile && o.Key != key(PackFile, id) {
			continue
		}
		out[id] = o.Size
	}
	return out, nil
}

// Remove deletes the file of type t named id.
func (r *Repo) Remove(ctx context.Context, t FileType, id ID) error {
	if err := r.st.Delete(ctx, key(t, id)); err != nil {
		return fmt.Errorf("%s: delete %s: %w", r.name, key(t, id), err)
	}
	return nil
}

// sortedIDs returns m's keys in order.
func sortedIDs[V any](m map[ID]V) []ID {
	out := make([]ID, 0, len(m))
	for id := range m {
		out = append(out, id)
	}
	sort.Slice(out, func(i, j int) bool { return bytes.Compare(out[i][:], out[j][:]) < 0 })
	return out
}

// Size is the bytes the repository stores (every file of it).
func (r *Repo) Size(ctx context.Context) (int64, error) {
	objs, err := r.st.List(ctx, "")
	if err != nil {
		return 0, fmt.Errorf("%s: list: %w", r.name, err)
	}
	var n int64
	for _, o := range objs {
		n += o.Size
	}
	return n, nil
}
