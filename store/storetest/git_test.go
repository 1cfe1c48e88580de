package storetest

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"snapvisor/internal/testutil"
)

// gitWork makes a work tree at dir with files (name → content) committed
// on main, and returns the commit's hash.
func gitWork(t *testing.T, dir string, files map[string][]byte) string {
	t.Helper()
	GitCLI(t, "", "init", "-q", dir)
	for name, b := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		MustWrite(t, p, b)
	}
	GitCLI(t, dir, "add", "-A")
	GitCLI(t, dir, "commit", "-q", "-m", "test commit")
	return strings.TrimSpace(GitCLI(t, dir, "rev-parse", "HEAD"))
}

// checkClone checks that dir (a clone) holds exactly files at commit want.
func checkClone(t *testing.T, dir, want string, files map[string][]byte) {
	t.Helper()
	if got := strings.TrimSpace(GitCLI(t, dir, "rev-parse", "HEAD")); got != want {
		t.Errorf("clone is at %s, want %s", got, want)
	}
	n := 0
	err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			if d != nil && d.Name() == ".git" {
				return filepath.SkipDir
			}
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		if wb, ok := files[filepath.ToSlash(rel)]; !ok || !bytes.Equal(b, wb) {
			t.Errorf("clone has %s (%d bytes) not as pushed", rel, len(b))
		}
		n++
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if n != len(files) {
		t.Errorf("clone has %d files, want %d", n, len(files))
	}
}

// refs lists the refs of the repository at dir (one line each).
func refs(t *testing.T, dir string) string {
	t.Helper()
	return GitCLI(t, dir, "for-each-ref", "--format=%(refname) %(objectname)")
}

// testFiles are small text files in directories, plus 2 MiB of random
// bytes: a pack above the git CLI's http.postBuffer (1 MiB), which it
// sends with a chunked body.
func testFiles() map[string][]byte {
	var big bytes.Buffer
	io.Copy(&big, Gen(7, 2<<20))
	return map[string][]byte{
		"config.yaml":     []byte("listen: 127.0.0.1\n"),
		"pki/ca.pem":      []byte("-----BEGIN CERTIFICATE-----\nx\n"),
		"pki/certs/a.crt": []byte("a\n"),
		"data/blob.bin":   big.Bytes(),
	}
}

func TestGitCLI(t *testing.T) {
	t.Run("hermetic environment", func(t *testing.T) {
		t.Setenv("GIT_DIR", "/nonexistent")
		t.Setenv("GIT_AUTHOR_NAME", "someone else")
		dir := t.TempDir()
		GitCLI(t, "", "init", "-q", dir)
		if got := GitCLI(t, dir, "var", "GIT_AUTHOR_IDENT"); !strings.HasPrefix(got, GitName+" <"+GitEmail+">") {
			t.Errorf("author = %q, want %s <%s>", got, GitName, GitEmail)
		}
		if got := GitCLI(t, dir, "config", "--list", "--show-origin"); strings.Contains(got, "global") || strings.Contains(got, "/etc/") {
			t.Errorf("configuration from outside the test:\n%s", got)
		}
		if got := strings.TrimSpace(GitCLI(t, dir, "symbolic-ref", "HEAD")); got != "refs/heads/main" {
			t.Errorf("HEAD = %s, want refs/heads/main", got)
		}
	})
	t.Run("a failure returns git's stderr", func(t *testing.T) {
		_, err := GitCLIErr(t, t.TempDir(), "log")
		if err == nil || !strings.Contains(err.Error(), "not a git repository") {
			t.Fatalf("GitCLIErr = %v, want git's complaint", err)
		}
	})
}

func TestInitBare(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "a", "b", "repo.git")
	InitBare(t, dir)
	if got := strings.TrimSpace(GitCLI(t, dir, "rev-parse", "--is-bare-repository")); got != "true" {
		t.Fatalf("rev-parse --is-bare-repository = %q", got)
	}
}

func TestStartGitHTTP(t *testing.T) {
	root := t.TempDir()
	g := StartGitHTTP(t, root)
	if !strings.HasPrefix(g.URL, "https://127.0.0.1:") {
		t.Fatalf("URL = %s, want https://127.0.0.1:PORT", g.URL)
	}
	InitBare(t, filepath.Join(root, "team", "repo.git"))
	bare := filepath.Join(root, "team", "repo.git")
	ca := "http.sslCAInfo=" + g.CAFile
	withToken := func(user, token string) string {
		return strings.Replace(g.URL, "https://", "https://"+user+":"+token+"@", 1) + "/team/repo.git"
	}

	t.Run("info/refs answers 401 without the token, 200 with it", func(t *testing.T) {
		pool := x509.NewCertPool()
		pem, err := os.ReadFile(g.CAFile)
		if err != nil || !pool.AppendCertsFromPEM(pem) {
			t.Fatalf("CAFile %s: %v", g.CAFile, err)
		}
		hc := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
		for _, tc := range []struct {
			name, pass string
			auth       bool
			want       int
		}{{"none", "", false, 401}, {"wrong", "wrong-token", true, 401}, {"right", g.Token, true, 200}} {
			req, _ := http.NewRequest(http.MethodGet, g.URL+"/team/repo.git/info/refs?service=git-receive-pack", nil)
			if tc.auth {
				req.SetBasicAuth("anyone", tc.pass)
			}
			resp, err := hc.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != tc.want {
				t.Errorf("%s: status %d, want %d\n%s", tc.name, resp.StatusCode, tc.want, g.Stderr)
			}
			if tc.want == 401 && resp.Header.Get("WWW-Authenticate") != `Basic realm="git"` {
				t.Errorf("%s: WWW-Authenticate = %q", tc.name, resp.Header.Get("WWW-Authenticate"))
			}
		}
	})

	t.Run("a wrong or missing token is refused, nothing changes", func(t *testing.T) {
		work := filepath.Join(t.TempDir(), "work")
		gitWork(t, work, map[string][]byte{"a": []byte("a\n")})
		before := refs(t, bare)
		for _, url := range []string{withToken("anyone", "wrong-token"), g.URL + "/team/repo.git"} {
			n := g.Requests()
			if _, err := GitCLIErr(t, work, "-c", ca, "push", url, "HEAD:refs/heads/main"); err == nil {
				t.Errorf("push to %s succeeded", url)
			}
			if g.Requests() == n {
				t.Errorf("push to %s never reached the server", url)
			}
		}
		if after := refs(t, bare); after != before {
			t.Errorf("refs changed by a refused push: %q → %q", before, after)
		}
	})

	t.Run("push and clone with the token", func(t *testing.T) {
		files := testFiles()
		work := filepath.Join(t.TempDir(), "work")
		head := gitWork(t, work, files)
		GitCLI(t, work, "-c", ca, "push", "-q", withToken("anyone", g.Token), "HEAD:refs/heads/snapvisor/app")
		if got := refs(t, bare); got != "refs/heads/snapvisor/app "+head+"\n" {
			t.Errorf("bare repository refs = %q, want the pushed branch at %s", got, head)
		}
		clone := filepath.Join(t.TempDir(), "clone")
		GitCLI(t, "", "-c", ca, "clone", "-q", "--branch", "snapvisor/app", withToken("other-user", g.Token), clone)
		checkClone(t, clone, head, files)
	})
}

func TestSSHD_GitURL(t *testing.T) {
	testutil.RequireTool(t, "ssh")
	s := StartSSHD(t)
	bare := filepath.Join(s.Root, "repos", "app.git")
	InitBare(t, bare)
	url := s.GitURL(bare)
	if want := "git+ssh://" + s.User + "@" + s.Addr + bare; url != want {
		t.Fatalf("GitURL = %s, want %s", url, want)
	}
	cli := strings.TrimPrefix(url, "git+")
	ssh := "core.sshCommand=" + s.GitSSHCommand()

	files := testFiles()
	work := filepath.Join(t.TempDir(), "work")
	head := gitWork(t, work, files)
	GitCLI(t, work, "-c", ssh, "push", "-q", cli, "HEAD:refs/heads/snapvisor/app")
	if got := refs(t, bare); got != "refs/heads/snapvisor/app "+head+"\n" {
		t.Errorf("bare repository refs = %q, want the pushed branch at %s", got, head)
	}
	clone := filepath.Join(t.TempDir(), "clone")
	GitCLI(t, "", "-c", ssh, "clone", "-q", "--branch", "snapvisor/app", cli, clone)
	checkClone(t, clone, head, files)

	t.Run("an unknown host key is refused", func(t *testing.T) {
		other := *s
		other.KnownHosts = filepath.Join(t.TempDir(), "known_hosts")
		MustWrite(t, other.KnownHosts, nil)
		if _, err := GitCLIErr(t, "", "-c", "core.sshCommand="+other.GitSSHCommand(), "ls-remote", cli); err == nil {
			t.Error("ls-remote with an empty known_hosts succeeded")
		}
	})
}
