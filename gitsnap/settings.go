// Package gitsnap keeps snapshots as a Git history (SNAPVISOR_FORMAT=git):
// each snapshot commits the source tree itself, with a metadata file for
// what Git does not keep, to a bare repository in SNAPVISOR_DIR, pushed to
// every remote of SNAPVISOR_GIT_REMOTES. go-git does the object format and
// the ssh and https transports, so the image needs no git binary.
package gitsnap

import (
	"errors"
	"fmt"
	"net/mail"
	"net/url"
	"os"
	"path/filepath"
	"strings"

	"snapvisor/config"
	"snapvisor/store"
)

// Settings are the git format's variables.
type Settings struct {
	Remotes     []string      `envconfig:"SNAPVISOR_GIT_REMOTES" desc:"comma-separated Git remotes each snapshot is pushed to (SNAPVISOR_FORMAT=git): git+ssh://user@host:port/path.git, git+https://[user@]host/path.git, git+file:///path.git (created when missing)"`
	Branch      string        `envconfig:"SNAPVISOR_GIT_BRANCH" desc:"branch the snapshots are committed to (default snapvisor/<SNAPVISOR_NAME>)"`
	Author      string        `envconfig:"SNAPVISOR_GIT_AUTHOR" default:"snapvisor <snapvisor@localhost>" desc:"author and committer of snapshot commits, as Name <email>"`
	MaxFileSize config.Size   `envconfig:"SNAPVISOR_GIT_MAX_FILE_SIZE" default:"10MiB" desc:"a file larger than this is left out of git-format snapshots with a warning naming it (use the archive or restic format for large data)"`
	Strict      bool          `envconfig:"SNAPVISOR_GIT_STRICT" default:"false" desc:"true: a file above SNAPVISOR_GIT_MAX_FILE_SIZE fails the snapshot instead of being left out"`
	SSHKeyFile  string        `envconfig:"SNAPVISOR_GIT_SSH_KEY_FILE" desc:"private key for git+ssh remotes (default ~/.ssh/id_ed25519, id_ecdsa, id_rsa, the first that exists)"`
	KnownHosts  string        `envconfig:"SNAPVISOR_GIT_KNOWN_HOSTS" desc:"known_hosts file checked for git+ssh host keys (default ~/.ssh/known_hosts; required)"`
	Password    config.Secret `envconfig:"SNAPVISOR_GIT_PASSWORD" desc:"password or access token for git+https remotes (user from the URL, else snapvisor)"`
	CAFile      string        `envconfig:"SNAPVISOR_GIT_CA_FILE" desc:"PEM file of extra CA certificates trusted for git+https remotes"`
	SquashAfter config.Age    `envconfig:"SNAPVISOR_GIT_SQUASH_AFTER" desc:"squash the commits older than this (e.g. 90d) into one and force-push the rewritten branch; empty: history is kept whole"`
}

// Validate checks the settings when the git format is on; name is
// SNAPVISOR_NAME (the default branch's last part).
func (s *Settings) Validate(name string) error {
	for _, raw := range s.Remotes {
		if _, err := ParseRemote(raw); err != nil {
			shown := make([]string, len(s.Remotes))
			for i, r := range s.Remotes {
				shown[i] = store.Redact(r) // a password in a URL is refused, never shown back
			}
			e := config.Invalid("GIT_REMOTES", strings.Join(shown, ","), "comma-separated git+ssh://user@host:port/path.git, git+https://host/path.git or git+file:///path.git URLs (no password in the URL: SNAPVISOR_GIT_PASSWORD)")
			e.Err = err
			return e
		}
	}
	if err := checkBranch(s.BranchOr(name)); err != nil {
		e := config.Invalid("GIT_BRANCH", s.Branch, "a valid Git branch name such as snapvisor/controller")
		e.Err = err
		return e
	}
	if _, err := s.author(); err != nil {
		e := config.Invalid("GIT_AUTHOR", s.Author, "Name <email>, e.g. snapvisor <backup@example.org>")
		e.Err = err
		return e
	}
	if err := s.MaxFileSize.Check("GIT_MAX_FILE_SIZE", "a size such as 10MiB, 512KiB or a number of bytes"); err != nil {
		return err
	}
	if s.MaxFileSize.Bytes() <= 0 {
		return config.Invalid("GIT_MAX_FILE_SIZE", s.MaxFileSize.String(), "a size above zero such as 10MiB")
	}
	if err := s.SquashAfter.Check("GIT_SQUASH_AFTER", "an age such as 90d or 12w (empty: never squash)"); err != nil {
		return err
	}
	for _, f := range []struct{ name, path string }{{"GIT_SSH_KEY_FILE", s.SSHKeyFile}, {"GIT_CA_FILE", s.CAFile}, {"GIT_KNOWN_HOSTS", s.KnownHosts}} {
		if f.path == "" {
			continue
		}
		if _, err := os.Stat(f.path); err != nil {
			e := config.Invalid(f.name, f.path, "the path of a readable file")
			e.Err = err
			return e
		}
	}
	return nil
}

// BranchOr is SNAPVISOR_GIT_BRANCH, else snapvisor/<name>.
func (s Settings) BranchOr(name string) string {
	if s.Branch != "" {
		return s.Branch
	}
	return "snapvisor/" + name
}

// author parses SNAPVISOR_GIT_AUTHOR.
func (s Settings) author() (*mail.Address, error) {
	a, err := mail.ParseAddress(s.Author)
	if err != nil {
		return nil, err
	}
	if a.Name == "" {
		a.Name = a.Address
	}
	return a, nil
}

// checkBranch applies the rules of git check-ref-format to a branch name.
func checkBranch(b string) error {
	if b == "" || strings.HasPrefix(b, "-") || strings.HasPrefix(b, "/") || strings.HasSuffix(b, "/") ||
		strings.HasSuffix(b, ".") || strings.Contains(b, "..") || strings.Contains(b, "//") || strings.Contains(b, "@{") || b == "@" {
		return fmt.Errorf("%q is not a valid branch name", b)
	}
	for _, part := range strings.Split(b, "/") {
		if strings.HasPrefix(part, ".") || strings.HasSuffix(part, ".lock") {
			return fmt.Errorf("%q is not a valid branch name: component %q", b, part)
		}
	}
	for _, r := range b {
		if r < 0x20 || r == 0x7f || strings.ContainsRune(" ~^:?*[\\", r) {
			return fmt.Errorf("%q is not a valid branch name: character %q", b, r)
		}
	}
	return nil
}

// Remote kinds.
const (
	KindSSH   = "ssh"
	KindHTTPS = "https"
	KindFile  = "file"
)

// Remote is one entry of SNAPVISOR_GIT_REMOTES.
type Remote struct {
	Raw  string // as configured
	Kind string // KindSSH, KindHTTPS or KindFile
	// URL is the address go-git is given: ssh://..., https://... (no
	// user), or the repository's absolute path for KindFile.
	URL  string
	User string
}

// Name is the remote as logs and errors show it (no secret: URLs with a
// password are refused).
func (r Remote) Name() string { return r.Raw }

// ParseRemote checks one git+ssh, git+https or git+file URL.
func ParseRemote(raw string) (Remote, error) {
	u, err := url.Parse(raw)
	if err != nil {
		// url.Error quotes the whole URL, a password included.
		return Remote{}, fmt.Errorf("%s: not a URL: %w", store.Redact(raw), errors.Unwrap(err))
	}
	r := Remote{Raw: raw}
	if _, has := u.User.Password(); has {
		return Remote{}, fmt.Errorf("%s: a password in the URL would be logged: put it in SNAPVISOR_GIT_PASSWORD", u.Redacted())
	}
	if u.RawQuery != "" || u.Fragment != "" {
		return Remote{}, fmt.Errorf("%s: no query or fragment expected", raw)
	}
	switch u.Scheme {
	case "git+ssh":
		if u.Host == "" || u.Path == "" || u.Path == "/" {
			return Remote{}, fmt.Errorf("%s: expected git+ssh://user@host:port/path.git", raw)
		}
		r.Kind, r.User = KindSSH, u.User.Username()
		if r.User == "" {
			r.User = "git"
		}
		v := *u
		v.Scheme = "ssh"
		r.URL = v.String()
	case "git+https":
		if u.Host == "" || u.Path == "" || u.Path == "/" {
			return Remote{}, fmt.Errorf("%s: expected git+https://host/path.git", raw)
		}
		r.Kind, r.User = KindHTTPS, u.User.Username()
		if r.User == "" {
			r.User = "snapvisor"
		}
		v := *u
		v.Scheme, v.User = "https", nil
		r.URL = v.String()
	case "git+file":
		if u.Host != "" && u.Host != "localhost" {
			return Remote{}, fmt.Errorf("%s: expected git+file:///absolute/path.git", raw)
		}
		if !filepath.IsAbs(u.Path) || filepath.Clean(u.Path) == "/" {
			return Remote{}, fmt.Errorf("%s: expected git+file:///absolute/path.git", raw)
		}
		r.Kind, r.URL = KindFile, filepath.Clean(u.Path)
	default:
		return Remote{}, fmt.Errorf("%s: scheme %q: expected git+ssh, git+https or git+file", raw, u.Scheme)
	}
	return r, nil
}
