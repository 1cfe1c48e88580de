package storetest

import (
	"bytes"
	"context"
	crand "crypto/rand"
	"crypto/subtle"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/cgi"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"snapvisor/internal/testutil"
)

// gitTimeout bounds one git CLI command of a test.
const gitTimeout = 2 * time.Minute

// Identity of the commits the git CLI makes in tests.
const (
	GitName  = "snapvisor test"
	GitEmail = "test@snapvisor.invalid"
)

// gitEnv is a hermetic environment for the git CLI: the process's
// environment without any GIT_* variable, HOME and XDG_CONFIG_HOME in home
// (no user configuration), no system configuration, a fixed identity, no
// prompts, C locale, and main as the default branch of git init.
func gitEnv(home string) []string {
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		switch {
		case strings.HasPrefix(k, "GIT_"), k == "HOME", k == "XDG_CONFIG_HOME", k == "SSH_ASKPASS",
			k == "LANG", k == "LANGUAGE", strings.HasPrefix(k, "LC_"):
			continue
		}
		env = append(env, kv)
	}
	return append(env, "HOME="+home, "XDG_CONFIG_HOME="+filepath.Join(home, ".config"),
		"GIT_CONFIG_NOSYSTEM=1", "GIT_TERMINAL_PROMPT=0", "LANG=C", "LC_ALL=C",
		"GIT_AUTHOR_NAME="+GitName, "GIT_AUTHOR_EMAIL="+GitEmail,
		"GIT_COMMITTER_NAME="+GitName, "GIT_COMMITTER_EMAIL="+GitEmail,
		"GIT_CONFIG_COUNT=1", "GIT_CONFIG_KEY_0=init.defaultBranch", "GIT_CONFIG_VALUE_0=main")
}

// GitCLIErr runs `git -C dir args...` (no -C when dir is "") in a hermetic
// environment (see GitCLI) and returns its stdout, or an error holding
// git's stderr: for tests that expect git to be refused.
func GitCLIErr(t testing.TB, dir string, args ...string) (string, error) {
	t.Helper()
	bin := testutil.RequireTool(t, "git")
	if dir != "" {
		args = append([]string{"-C", dir}, args...)
	}
	ctx, cancel := context.WithTimeout(context.Background(), gitTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = gitEnv(t.TempDir())
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), fmt.Errorf("git %s: %w\n%s", strings.Join(args, " "), err, stderr.String())
	}
	return stdout.String(), nil
}

// GitCLI runs `git -C dir args...` (no -C when dir is "") and returns its
// stdout; the test fails with git's stderr when git fails. The environment
// is hermetic: an empty HOME, no system or user configuration, no GIT_*
// variable of the caller, identity GitName <GitEmail>, no prompts
// (GIT_TERMINAL_PROMPT=0), LANG=C, init.defaultBranch=main. Settings a
// command needs go in its args (-c http.sslCAInfo=..., -c core.sshCommand=...).
// A missing git fails with CI=true and skips elsewhere.
func GitCLI(t testing.TB, dir string, args ...string) string {
	t.Helper()
	out, err := GitCLIErr(t, dir, args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// InitBare creates an empty bare repository at dir (and its parents).
func InitBare(t testing.TB, dir string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
		t.Fatal(err)
	}
	GitCLI(t, "", "init", "--bare", "-q", dir)
}

// GitHTTP is an HTTPS git server on 127.0.0.1: `git http-backend` (smart
// HTTP, fetch and push) run as CGI for the repositories under Root, behind
// HTTP Basic auth with any user name and Token as the password.
type GitHTTP struct {
	URL    string      // https://127.0.0.1:PORT; the repository Root/a/b.git is at URL/a/b.git
	Token  string      // the password every request must carry
	CAFile string      // the server's certificate (PEM), for a client to trust
	Root   string      // GIT_PROJECT_ROOT: the directory holding the repositories
	Stderr *SyncBuffer // http-backend's stderr and the server's errors, for a failing test's message

	requests atomic.Int64
}

// StartGitHTTP starts a GitHTTP serving the repositories under root (made
// with InitBare, for instance); it is closed when the test ends. A request
// without the token, or with a wrong one, gets 401 and
// `WWW-Authenticate: Basic realm="git"`, so clients retry with credentials;
// an authenticated one runs http-backend with REMOTE_USER set to its user
// name, which enables push (git-receive-pack). A missing git fails with
// CI=true and skips elsewhere.
func StartGitHTTP(t testing.TB, root string) *GitHTTP {
	t.Helper()
	git := testutil.RequireTool(t, "git")
	out, err := exec.Command(git, "--exec-path").Output()
	if err != nil {
		t.Fatalf("git --exec-path: %v", err)
	}
	if !isExecutable(filepath.Join(strings.TrimSpace(string(out)), "git-http-backend")) {
		testutil.Unavailable(t, "git-http-backend is not in %s (Debian's git has it; scripts/deps.sh installs git)", strings.TrimSpace(string(out)))
	}
	g := &GitHTTP{Root: root, Token: randomToken(t), Stderr: &SyncBuffer{}}
	// http-backend reads neither this machine's nor a user's
	// configuration (an empty HOME): only the CGI environment and these.
	backend := &cgi.Handler{
		Path: git,
		Args: []string{"http-backend"},
		Dir:  root,
		Env: []string{"GIT_PROJECT_ROOT=" + root, "GIT_HTTP_EXPORT_ALL=1", "GIT_CONFIG_NOSYSTEM=1",
			"HOME=" + t.TempDir(), "LANG=C"},
		Stderr: g.Stderr,
		Logger: log.New(g.Stderr, "cgi: ", 0),
	}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		g.requests.Add(1)
		user, pass, ok := r.BasicAuth()
		if !ok || subtle.ConstantTimeCompare([]byte(pass), []byte(g.Token)) != 1 {
			w.Header().Set("WWW-Authenticate", `Basic realm="git"`)
			http.Error(w, "authentication required", http.StatusUnauthorized)
			return
		}
		if user == "" {
			user = "git"
		}
		// net/http/cgi refuses chunked request bodies, which the git CLI
		// sends for packs above http.postBuffer: read the body here and
		// pass it on with its length.
		if len(r.TransferEncoding) > 0 {
			body, err := io.ReadAll(r.Body)
			if err != nil {
				http.Error(w, err.Error(), http.StatusBadRequest)
				return
			}
			r.Body, r.ContentLength, r.TransferEncoding = io.NopCloser(bytes.NewReader(body)), int64(len(body)), nil
		}
		h := *backend
		h.Env = append(append([]string(nil), backend.Env...), "REMOTE_USER="+user)
		h.ServeHTTP(w, r)
	}))
	srv.Config.ErrorLog = log.New(g.Stderr, "http: ", 0)
	srv.StartTLS()
	t.Cleanup(srv.Close)
	g.URL = srv.URL
	g.CAFile = filepath.Join(t.TempDir(), "git-http-ca.pem")
	if err := os.WriteFile(g.CAFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}), 0o644); err != nil {
		t.Fatal(err)
	}
	return g
}

// GitURL is the git+https:// remote URL of the repository Root/rel (no
// credentials: the token goes in SNAPVISOR_GIT_PASSWORD).
func (g *GitHTTP) GitURL(rel string) string {
	return "git+" + g.URL + "/" + strings.TrimPrefix(rel, "/")
}

// Requests counts the requests the server has received, refused ones included.
func (g *GitHTTP) Requests() int64 { return g.requests.Load() }

// GitURL is the git+ssh:// remote URL of the bare repository at the
// absolute path p on this sshd (git-upload-pack and git-receive-pack run
// as User). The git CLI takes it without the "git+" prefix, with
// GitSSHCommand as GIT_SSH_COMMAND (or core.sshCommand).
func (s *SSHD) GitURL(p string) string {
	return fmt.Sprintf("git+ssh://%s@%s%s", s.User, s.Addr, p)
}

// GitSSHCommand is a GIT_SSH_COMMAND (or core.sshCommand) value that lets
// the git CLI reach this sshd: its client key only, its known_hosts
// checked strictly, no user configuration, no prompts. The key exchange is
// curve25519-sha256: OpenSSH 9's default, sntrup761x25519, costs each
// connection ~1.5 s of CPU on a loaded 2-core test machine.
func (s *SSHD) GitSSHCommand() string {
	return fmt.Sprintf("ssh -F /dev/null -i '%s' -o UserKnownHostsFile='%s' -o StrictHostKeyChecking=yes -o IdentitiesOnly=yes -o BatchMode=yes -o KexAlgorithms=curve25519-sha256",
		s.KeyFile, s.KnownHosts)
}

// randomToken returns 32 random hex digits: a password that needs no
// escaping in a URL.
func randomToken(t testing.TB) string {
	t.Helper()
	b := make([]byte, 16)
	if _, err := crand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}
