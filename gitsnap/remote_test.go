package gitsnap

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"golang.org/x/crypto/ssh"

	"snapvisor/config"
	"snapvisor/internal/testutil"
	"snapvisor/store/storetest"
)

// remoteEnv is one remote of the transport tests: a bare repository on
// this machine behind one of the transports.
type remoteEnv struct {
	name string
	rem  Remote
	s    Settings
	bare string // the repository's directory
	// cli is what the git CLI clones and pushes to, with cliArgs before
	// the command (the https URL with the token and its CA; the bare
	// path otherwise: the git CLI's own ssh is tested by storetest, and
	// each ssh login costs ~1.5 s here).
	cli     string
	cliArgs []string
	// bad are settings the remote must refuse, secret the string no error may show.
	bad    Settings
	secret string
}

func mustRemote(t *testing.T, raw string) Remote {
	t.Helper()
	rem, err := ParseRemote(raw)
	if err != nil {
		t.Fatal(err)
	}
	return rem
}

// fileRemote is a git+file remote: a bare repository made by the git CLI,
// or (missing) a path that does not exist yet.
func fileRemote(t *testing.T, missing bool) remoteEnv {
	t.Helper()
	bare := filepath.Join(t.TempDir(), "remote.git")
	name := "git+file"
	if missing {
		bare = filepath.Join(t.TempDir(), "not", "yet", "remote.git")
		name = "git+file (missing)"
	} else {
		storetest.InitBare(t, bare)
	}
	return remoteEnv{name: name, rem: mustRemote(t, "git+file://"+bare), bare: bare, cli: bare}
}

// sshRemote is a git+ssh remote on the project's sshd; bad settings
// trust another host key.
func sshRemote(t *testing.T) remoteEnv {
	t.Helper()
	testutil.RequireTool(t, "git-upload-pack")
	sv := storetest.StartSSHD(t)
	bare := filepath.Join(sv.Root, "repos", "x.git")
	storetest.InitBare(t, bare)
	other := filepath.Join(t.TempDir(), "other_host_key")
	pub := storetest.WriteKey(t, other)
	kh := filepath.Join(t.TempDir(), "known_hosts")
	_, port, _ := strings.Cut(sv.Addr, ":")
	storetest.MustWrite(t, kh, fmt.Appendf(nil, "[127.0.0.1]:%s %s", port, ssh.MarshalAuthorizedKey(pub)))
	s := Settings{SSHKeyFile: sv.KeyFile, KnownHosts: sv.KnownHosts}
	return remoteEnv{name: "git+ssh", rem: mustRemote(t, sv.GitURL(bare)), s: s, bare: bare, cli: bare,
		bad: Settings{SSHKeyFile: sv.KeyFile, KnownHosts: kh}}
}

// httpsRemote is a git+https remote behind git http-backend with a token;
// bad settings carry a wrong token.
func httpsRemote(t *testing.T) remoteEnv {
	t.Helper()
	root := t.TempDir()
	g := storetest.StartGitHTTP(t, root)
	bare := filepath.Join(root, "team", "x.git")
	storetest.InitBare(t, bare)
	wrong := "wrong-" + g.Token[:8] + "-token"
	return remoteEnv{name: "git+https", rem: mustRemote(t, g.GitURL("team/x.git")), bare: bare,
		s:       Settings{Password: config.Secret(g.Token), CAFile: g.CAFile},
		cli:     strings.Replace(g.URL, "https://", "https://snapvisor:"+g.Token+"@", 1) + "/team/x.git",
		cliArgs: []string{"-c", "http.sslCAInfo=" + g.CAFile},
		bad:     Settings{Password: config.Secret(wrong), CAFile: g.CAFile}, secret: g.Token + "|" + wrong}
}

// remoteKinds are the remotes every transport test runs against.
var remoteKinds = []struct {
	name string
	make func(*testing.T) remoteEnv
}{
	{"file", func(t *testing.T) remoteEnv { return fileRemote(t, false) }},
	{"fileMissing", func(t *testing.T) remoteEnv { return fileRemote(t, true) }},
	{"ssh", sshRemote},
	{"https", httpsRemote},
}

// TestRemotes pushes snapshots to git+file, git+ssh and git+https remotes
// and reads them back with the git CLI and with Fetch; a history another
// writer extended is refused, and so are wrong credentials.
func TestRemotes(t *testing.T) {
	for _, kind := range remoteKinds {
		t.Run(kind.name, func(t *testing.T) {
			env := kind.make(t)
			ctx := context.Background()
			src := richSource(t)
			r := newRepo(t)

			// Two snapshots, each pushed; a third run without a change makes no commit.
			c1 := mustCommit(t, r, opts(src))
			if err := r.Push(ctx, env.rem, env.s); err != nil {
				t.Fatalf("first push: %v", err)
			}
			writeFiles(t, src, map[string]string{"a.txt": "changed", "sub/new.txt": "new"})
			if err := os.Remove(filepath.Join(src, "sub", "b.txt")); err != nil {
				t.Fatal(err)
			}
			c2 := mustCommit(t, r, opts(src))
			if c3 := mustCommit(t, r, opts(src)); !c3.Unchanged || c3.Hash != c2.Hash {
				t.Fatalf("a run without a change made a commit: %+v", c3)
			}
			if err := r.Push(ctx, env.rem, env.s); err != nil {
				t.Fatalf("second push: %v", err)
			}

			// The git CLI sees one commit per changed snapshot.
			if got := revParse(t, env.bare, "refs/heads/"+testBranch); got != c2.Hash.String() {
				t.Fatalf("remote branch at %s, want %s", got, c2.Hash)
			}
			log := strings.Fields(storetest.GitCLI(t, env.bare, "log", "--format=%H", testBranch))
			if want := []string{c2.Hash.String(), c1.Hash.String()}; !slices.Equal(log, want) {
				t.Fatalf("git log %s = %v, want %v", testBranch, log, want)
			}
			storetest.GitCLI(t, env.bare, "fsck", "--strict", "--no-dangling")

			// git clone gives exactly the source's files, and the metadata file.
			clone := filepath.Join(t.TempDir(), "clone")
			storetest.GitCLI(t, "", append(slices.Clone(env.cliArgs), "clone", "-q", "--branch", testBranch, env.cli, clone)...)
			got := checkoutFiles(t, clone)
			if _, ok := got[MetaFile]; !ok {
				t.Errorf("the clone has no %s", MetaFile)
			}
			delete(got, MetaFile)
			sameFiles(t, "clone", checkoutFiles(t, src), got)

			// Fetch into a new repository, restore: the source, modes, times and all.
			r2 := newRepo(t)
			h, err := r2.Fetch(ctx, env.rem, env.s)
			if err != nil {
				t.Fatalf("fetch: %v", err)
			}
			if h != c2.Hash {
				t.Fatalf("fetch returned %s, want %s", h, c2.Hash)
			}
			dst := filepath.Join(t.TempDir(), "data")
			if err := restoreTo(t, r2, h, dst); err != nil {
				t.Fatal(err)
			}
			testutil.SameTree(t, src, dst)

			t.Run("diverged", func(t *testing.T) {
				writeFiles(t, clone, map[string]string{"other-writer.txt": "by the git CLI\n"})
				storetest.GitCLI(t, clone, "add", "-A")
				storetest.GitCLI(t, clone, "commit", "-q", "-m", "a second writer")
				storetest.GitCLI(t, clone, append(slices.Clone(env.cliArgs), "push", "-q", "origin", testBranch)...)
				cli := revParse(t, clone, "HEAD")
				writeFiles(t, src, map[string]string{"a.txt": "changed again"})
				mustCommit(t, r, opts(src))
				err := r.Push(ctx, env.rem, env.s)
				if !errors.Is(err, ErrDiverged) {
					t.Fatalf("push over a second writer's commit = %v, want ErrDiverged", err)
				}
				if got := revParse(t, env.bare, "refs/heads/"+testBranch); got != cli {
					t.Fatalf("remote branch at %s after a refused push, want the CLI's commit %s", got, cli)
				}
			})

			if env.rem.Kind == KindFile {
				return
			}
			t.Run("refusedCredentials", func(t *testing.T) {
				before := storetest.GitCLI(t, env.bare, "for-each-ref")
				other := newRepo(t)
				mustCommit(t, other, opts(src))
				errs := map[string]error{"push": other.Push(ctx, env.rem, env.bad)}
				if env.rem.Kind == KindHTTPS {
					// Fetch too (cheap here; ssh logins are not).
					_, errs["fetch"] = other.Fetch(ctx, env.rem, env.bad)
					errs["push without a password"] = other.Push(ctx, env.rem, Settings{CAFile: env.s.CAFile})
				}
				for what, err := range errs {
					if err == nil {
						t.Errorf("%s with refused credentials succeeded", what)
						continue
					}
					t.Logf("%s refused: %v", what, err)
					if errors.Is(err, ErrDiverged) {
						t.Errorf("%s with refused credentials = %v: not a divergence", what, err)
					}
					for _, s := range strings.Split(env.secret, "|") {
						if s != "" && strings.Contains(err.Error(), s) {
							t.Errorf("%s: the error shows the token: %v", what, err)
						}
					}
				}
				if after := storetest.GitCLI(t, env.bare, "for-each-ref"); after != before {
					t.Errorf("refused credentials changed the remote's refs: %q → %q", before, after)
				}
			})
		})
	}
}
