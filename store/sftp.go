//go:build !snapvisor_no_sftp

package store

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/url"
	"os"
	"path"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/pkg/sftp"
	"go.uber.org/zap"
	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
)

func init() {
	register(backend{
		scheme: "sftp", order: 3, example: "sftp://user@host:port/path",
		credentials: "SNAPVISOR_SFTP_KEY_FILE or SNAPVISOR_SFTP_PASSWORD",
		check:       checkSFTPURL, open: openSFTP, streamBuffer: sftpStreamBuffer,
	})
}

// sftpStreamBuffer: the copy buffers of a streaming upload.
const sftpStreamBuffer = 1 << 20

// checkSFTPURL checks an sftp:// URL: a host, a valid port, a path, no password.
func checkSFTPURL(u *url.URL) error {
	if u.Hostname() == "" {
		return errors.New("missing host")
	}
	if u.Path == "" {
		return errors.New("missing path: sftp://user@host:port/path")
	}
	if _, ok := u.User.Password(); ok {
		// The URL is in SNAPVISOR_REMOTES, which the service inherits and logs may show.
		return errors.New("a password does not belong in the URL; use SNAPVISOR_SFTP_PASSWORD (or a key, SNAPVISOR_SFTP_KEY_FILE)")
	}
	if u.Port() != "" {
		return checkPort(u.Port())
	}
	return nil
}

// sftpStore is a directory on an SSH server: sftp://user@host:port/absolute/path.
// Host keys are checked against a known_hosts file (SNAPVISOR_SFTP_KNOWN_HOSTS,
// default ~/.ssh/known_hosts) unless SNAPVISOR_SFTP_INSECURE_IGNORE_HOST_KEY=true.
// Uploads go to ".<name>.tmp-<random>" beside the target and are renamed into
// place with the posix-rename extension. One SSH connection is kept and
// re-established after a failure.
type sftpStore struct {
	addr    string
	root    string
	name    string
	config  *ssh.ClientConfig
	log     *zap.Logger
	scrub   func(string) string
	warnIns bool

	mu     sync.Mutex
	conn   *ssh.Client
	client *sftp.Client
}

var _ Store = (*sftpStore)(nil)

func openSFTP(ctx context.Context, u *url.URL, cfg Config, log *zap.Logger) (Store, error) {
	s := &sftpStore{
		root: path.Clean(u.Path),
		name: Redact(u.String()),
		log:  log.With(zap.String("remote", Redact(u.String()))),
	}
	port := u.Port()
	if port == "" {
		port = "22"
	}
	s.addr = net.JoinHostPort(u.Hostname(), port)
	user := u.User.Username()
	if user == "" {
		user = os.Getenv("USER")
	}
	if user == "" {
		return nil, s.permanent("open", fmt.Errorf("no user: use sftp://user@host/path"))
	}

	var auths []ssh.AuthMethod
	signer, err := sftpSigner(cfg)
	if err != nil {
		return nil, s.permanent("open", err)
	}
	if signer != nil {
		auths = append(auths, ssh.PublicKeys(signer))
	}
	if _, ok := u.User.Password(); ok { // parseRemote refuses it; never use one
		return nil, s.permanent("open", errors.New("a password does not belong in the URL; use SNAPVISOR_SFTP_PASSWORD"))
	}
	password := cfg.SFTPPassword.Reveal()
	if password != "" {
		auths = append(auths, ssh.Password(password))
	}
	if len(auths) == 0 {
		return nil, s.permanent("open", errors.New("no key (SNAPVISOR_SFTP_KEY_FILE, ~/.ssh/id_*) and no password"))
	}
	s.scrub = scrubber(password, cfg.SFTPKeyPassphrase.Reveal())

	var hostKey ssh.HostKeyCallback
	var algos []string
	if cfg.SFTPInsecureNoHost {
		hostKey = ssh.InsecureIgnoreHostKey() //nolint:gosec // explicit, loudly logged opt-out
		s.warnIns = true
		s.log.Warn("SFTP HOST KEY CHECKING IS OFF (SNAPVISOR_SFTP_INSECURE_IGNORE_HOST_KEY=true): " +
			"anyone who can intercept the connection can read and alter the snapshots")
	} else {
		file := cfg.SFTPKnownHosts
		if file == "" {
			file = DefaultKnownHosts()
		}
		hostKey, err = knownhosts.New(file)
		if err != nil {
			return nil, s.permanent("open", fmt.Errorf("known_hosts (SNAPVISOR_SFTP_KNOWN_HOSTS, or the insecure opt-out SNAPVISOR_SFTP_INSECURE_IGNORE_HOST_KEY=true): %w", err))
		}
		algos = knownAlgorithms(hostKey, s.addr)
	}
	s.config = &ssh.ClientConfig{
		User:              user,
		Auth:              auths,
		HostKeyCallback:   hostKey,
		HostKeyAlgorithms: algos,
		Timeout:           15 * time.Second,
	}
	return s, nil
}

// sftpSigner loads the configured key file or the first default one.
func sftpSigner(cfg Config) (ssh.Signer, error) {
	files := []string{cfg.SFTPKeyFile}
	explicit := cfg.SFTPKeyFile != ""
	if !explicit {
		files = DefaultSSHKeyFiles()
	}
	for _, f := range files {
		pem, err := os.ReadFile(f)
		if err != nil {
			if explicit {
				return nil, fmt.Errorf("SNAPVISOR_SFTP_KEY_FILE: %w", err)
			}
			continue
		}
		var signer ssh.Signer
		if pp := cfg.SFTPKeyPassphrase.Reveal(); pp != "" {
			signer, err = ssh.ParsePrivateKeyWithPassphrase(pem, []byte(pp))
		} else {
			signer, err = ssh.ParsePrivateKey(pem)
		}
		if err != nil {
			return nil, fmt.Errorf("key file %s: %w", f, err)
		}
		return signer, nil
	}
	return nil, nil
}

// knownAlgorithms returns the host key algorithms known_hosts has for addr, so
// that the server is asked for a key type that can be checked.
func knownAlgorithms(cb ssh.HostKeyCallback, addr string) []string {
	tcp, err := net.ResolveTCPAddr("tcp", addr)
	if err != nil {
		return nil
	}
	err = cb(addr, tcp, probeKey{})
	var ke *knownhosts.KeyError
	if !errors.As(err, &ke) {
		return nil
	}
	var out []string
	for _, k := range ke.Want {
		switch t := k.Key.Type(); t {
		case ssh.KeyAlgoRSA:
			out = append(out, ssh.KeyAlgoRSASHA512, ssh.KeyAlgoRSASHA256, ssh.KeyAlgoRSA)
		default:
			out = append(out, t)
		}
	}
	return out
}

// probeKey is a key that matches nothing; checking it lists the known keys.
type probeKey struct{}

func (probeKey) Type() string                        { return "snapvisor-probe" }
func (probeKey) Marshal() []byte                     { return []byte("snapvisor-probe") }
func (probeKey) Verify([]byte, *ssh.Signature) error { return errors.New("probe") }

func (s *sftpStore) Name() string { return s.name }

func (s *sftpStore) streamBuffer() int64 { return sftpStreamBuffer }

func (s *sftpStore) permanent(op string, err error) error {
	return &Error{Store: s.name, Op: op, Err: err, Permanent: true, scrub: s.scrub}
}

func (s *sftpStore) fail(op, key string, err error) error {
	e := &Error{Store: s.name, Op: op, Key: key, Err: err, scrub: s.scrub}
	var ke *knownhosts.KeyError
	var re *knownhosts.RevokedError
	switch {
	case errors.Is(err, errBadKey), errors.Is(err, fs.ErrPermission), errors.As(err, &ke), errors.As(err, &re):
		e.Permanent = true
	case err != nil && strings.Contains(err.Error(), "unable to authenticate"):
		e.Permanent = true
	}
	return e
}

// session returns the SFTP client, connecting when there is none.
func (s *sftpStore) session(ctx context.Context) (*sftp.Client, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.client != nil {
		return s.client, nil
	}
	d := net.Dialer{Timeout: s.config.Timeout}
	nc, err := d.DialContext(ctx, "tcp", s.addr)
	if err != nil {
		return nil, err
	}
	stop := context.AfterFunc(ctx, func() { nc.Close() })
	c, chans, reqs, err := ssh.NewClientConn(nc, s.addr, s.config)
	stop()
	if err != nil {
		nc.Close()
		return nil, err
	}
	conn := ssh.NewClient(c, chans, reqs)
	client, err := sftp.NewClient(conn, sftp.UseConcurrentWrites(true), sftp.UseConcurrentReads(true),
		sftp.MaxConcurrentRequestsPerFile(16))
	if err != nil {
		conn.Close()
		return nil, err
	}
	if s.warnIns {
		s.log.Warn("SFTP connection without host key checking (SNAPVISOR_SFTP_INSECURE_IGNORE_HOST_KEY=true)")
	}
	s.conn, s.client = conn, client
	return client, nil
}

// reset drops the connection after an error that may have broken it.
func (s *sftpStore) reset(client *sftp.Client, err error) {
	var se *sftp.StatusError
	if err == nil || errors.As(err, &se) || errors.Is(err, fs.ErrNotExist) {
		return // the server answered: the connection is fine
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.client == client && client != nil {
		s.client.Close()
		s.conn.Close()
		s.client, s.conn = nil, nil
	}
}

// do runs op on a live session; cancelling ctx closes the connection.
func (s *sftpStore) do(ctx context.Context, op, key string, fn func(c *sftp.Client) error) error {
	c, err := s.session(ctx)
	if err != nil {
		return s.fail(op, key, err)
	}
	stop := context.AfterFunc(ctx, func() { s.reset(c, context.Canceled) })
	err = fn(c)
	stop()
	if err != nil {
		s.reset(c, err)
		if ctx.Err() != nil {
			err = fmt.Errorf("%w (%v)", ctx.Err(), err)
		}
		return s.fail(op, key, err)
	}
	return nil
}

func (s *sftpStore) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.client == nil {
		return nil
	}
	s.client.Close()
	err := s.conn.Close()
	s.client, s.conn = nil, nil
	return err
}

func (s *sftpStore) path(key string) string { return path.Join(s.root, key) }

func (s *sftpStore) Put(ctx context.Context, key string, r io.Reader, size int64) error {
	if err := checkKey(key); err != nil {
		return s.fail("put", key, err)
	}
	final := s.path(key)
	tmp := path.Join(path.Dir(final), "."+path.Base(final)+".tmp-"+randomHex(6))
	return s.do(ctx, "put", key, func(c *sftp.Client) (err error) {
		if err := c.MkdirAll(path.Dir(final)); err != nil {
			return err
		}
		f, err := c.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL)
		if err != nil {
			return err
		}
		defer func() {
			if err != nil {
				f.Close()
				c.Remove(tmp)
			}
		}()
		n, err := f.ReadFromWithConcurrency(ctxReader{ctx, r}, 0)
		if err != nil {
			return err
		}
		if size >= 0 && n != size {
			return errShort(n, size)
		}
		if err = f.Close(); err != nil {
			return err
		}
		if _, ok := c.HasExtension("posix-rename@openssh.com"); ok {
			return c.PosixRename(tmp, final)
		}
		// Without posix-rename the target must not exist: the old one briefly
		// disappears, but a partial file never appears.
		if err = c.Remove(final); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
		return c.Rename(tmp, final)
	})
}

func (s *sftpStore) Get(ctx context.Context, key string) (io.ReadCloser, error) {
	if err := checkKey(key); err != nil {
		return nil, s.fail("get", key, err)
	}
	var f *sftp.File
	err := s.do(ctx, "get", key, func(c *sftp.Client) error {
		var err error
		f, err = c.Open(s.path(key))
		return err
	})
	if err != nil {
		return nil, err
	}
	return &sftpReader{ctx: ctx, f: f, s: s, key: key}, nil
}

// sftpReader stops at the end of ctx and reports errors through the store.
type sftpReader struct {
	ctx context.Context
	f   *sftp.File
	s   *sftpStore
	key string
}

func (r *sftpReader) Read(p []byte) (int, error) {
	if err := r.ctx.Err(); err != nil {
		return 0, r.s.fail("get", r.key, err)
	}
	n, err := r.f.Read(p)
	if err != nil && err != io.EOF {
		err = r.s.fail("get", r.key, err)
	}
	return n, err
}

func (r *sftpReader) Close() error { return r.f.Close() }

func (s *sftpStore) List(ctx context.Context, prefix string) ([]Object, error) {
	out, _, err := s.list(ctx, prefix)
	return out, err
}

// Uploads returns the upload temporaries (".<base>.tmp-*") of keys starting
// with prefix: what an interrupted Put left behind.
func (s *sftpStore) Uploads(ctx context.Context, prefix string) ([]Upload, error) {
	_, ups, err := s.list(ctx, prefix)
	return ups, err
}

// AbortUpload deletes the temporary u.ID.
func (s *sftpStore) AbortUpload(ctx context.Context, u Upload) error { return s.Delete(ctx, u.ID) }

// list walks the directory for the objects and the upload temporaries of
// keys starting with prefix.
func (s *sftpStore) list(ctx context.Context, prefix string) (out []Object, ups []Upload, err error) {
	err = s.do(ctx, "list", prefix, func(c *sftp.Client) error {
		out, ups = nil, nil
		w := c.Walk(s.root)
		for w.Step() {
			if err := w.Err(); err != nil {
				if w.Path() == s.root {
					if errors.Is(err, fs.ErrNotExist) {
						return nil // nothing uploaded yet
					}
					return err
				}
				continue
			}
			if err := ctx.Err(); err != nil {
				return err
			}
			key := strings.TrimPrefix(strings.TrimPrefix(w.Path(), s.root), "/")
			fi := w.Stat()
			if fi.IsDir() {
				if key != "" && !strings.HasPrefix(key+"/", prefix) && !strings.HasPrefix(prefix, key+"/") {
					w.SkipDir()
				}
				continue
			}
			if !fi.Mode().IsRegular() {
				continue
			}
			if target, ok := tempTarget(key); ok {
				if strings.HasPrefix(target, prefix) {
					ups = append(ups, Upload{Key: target, ID: key})
				}
				continue
			}
			if !strings.HasPrefix(key, prefix) {
				continue
			}
			out = append(out, Object{Key: key, Size: fi.Size(), Modified: fi.ModTime()})
		}
		return nil
	})
	if err != nil {
		return nil, nil, err
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Key < out[j].Key })
	return out, ups, nil
}

func (s *sftpStore) Delete(ctx context.Context, key string) error {
	if err := checkKey(key); err != nil {
		return s.fail("delete", key, err)
	}
	return s.do(ctx, "delete", key, func(c *sftp.Client) error {
		if err := c.Remove(s.path(key)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
		return nil
	})
}
