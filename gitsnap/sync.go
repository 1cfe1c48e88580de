package gitsnap

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"strings"

	git "github.com/go-git/go-git/v5"
	gitconfig "github.com/go-git/go-git/v5/config"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/filemode"
	"github.com/go-git/go-git/v5/plumbing/object"
	"github.com/go-git/go-git/v5/plumbing/transport"
	githttp "github.com/go-git/go-git/v5/plumbing/transport/http"
	gitssh "github.com/go-git/go-git/v5/plumbing/transport/ssh"

	"snapvisor/store"
)

// ErrDiverged is wrapped by a push refused because the remote's branch
// holds commits the local one does not (a second writer, or a rewritten
// history): it is never overwritten (a squash's own rewrite aside: Push).
var ErrDiverged = errors.New("the remote's branch has diverged")

// fetchedRef is where Fetch keeps a remote's branch head in the local repository.
func fetchedRef(branch string) plumbing.ReferenceName {
	return plumbing.ReferenceName("refs/snapvisor/fetched/" + branch)
}

// auth builds a remote's credentials and extra CA bundle from s.
func (s Settings) auth(rem Remote) (transport.AuthMethod, []byte, error) {
	switch rem.Kind {
	case KindHTTPS:
		var ca []byte
		if s.CAFile != "" {
			b, err := os.ReadFile(s.CAFile)
			if err != nil {
				return nil, nil, fmt.Errorf("SNAPVISOR_GIT_CA_FILE: %w", err)
			}
			ca = b
		}
		if pw := s.Password.Reveal(); pw != "" {
			return &githttp.BasicAuth{Username: rem.User, Password: pw}, ca, nil
		}
		return nil, ca, nil
	case KindSSH:
		keys := []string{s.SSHKeyFile}
		if s.SSHKeyFile == "" {
			keys = store.DefaultSSHKeyFiles()
		}
		var pk *gitssh.PublicKeys
		var firstErr error
		for _, k := range keys {
			var err error
			if pk, err = gitssh.NewPublicKeysFromFile(rem.User, k, ""); err == nil {
				break
			}
			if firstErr == nil && (s.SSHKeyFile != "" || !errors.Is(err, os.ErrNotExist)) {
				firstErr = fmt.Errorf("SNAPVISOR_GIT_SSH_KEY_FILE %s: %w", k, err)
			}
		}
		if pk == nil {
			if firstErr == nil {
				firstErr = errors.New("no SSH key: set SNAPVISOR_GIT_SSH_KEY_FILE (default ~/.ssh/id_ed25519, id_ecdsa, id_rsa)")
			}
			return nil, nil, firstErr
		}
		kh := s.KnownHosts
		if kh == "" {
			kh = store.DefaultKnownHosts()
		}
		db, err := gitssh.NewKnownHostsDb(kh)
		if err != nil {
			return nil, nil, fmt.Errorf("known_hosts (SNAPVISOR_GIT_KNOWN_HOSTS) %s: %w", kh, err)
		}
		u, _ := url.Parse(rem.URL)
		host := u.Host
		if u.Port() == "" {
			host = net.JoinHostPort(u.Hostname(), "22")
		}
		pk.HostKeyCallback = db.HostKeyCallback()
		pk.HostKeyAlgorithms = db.HostKeyAlgorithms(host)
		return pk, nil, nil
	}
	return nil, nil, nil
}

// Push makes the remote's branch equal the local one. It moves only
// forward: a remote branch with commits the local history lacks is
// ErrDiverged, never overwritten. The one exception is a squash
// (Squash): while the pre-squash history is kept (preSquashRef), a remote
// branch that is part of it is rewritten, with a lease on the commit it
// was seen at (a writer that moved it since is refused).
func (r *Repo) Push(ctx context.Context, rem Remote, s Settings) error {
	head, err := r.Head()
	if err != nil {
		return err
	}
	if rem.Kind == KindFile {
		return r.pushFile(rem, head)
	}
	auth, ca, err := s.auth(rem)
	if err != nil {
		return err
	}
	gr, err := r.repo.CreateRemoteAnonymous(&gitconfig.RemoteConfig{Name: "anonymous", URLs: []string{rem.URL}})
	if err != nil {
		return err
	}
	spec := gitconfig.RefSpec(r.branch.String() + ":" + r.branch.String())
	opts := &git.PushOptions{RemoteName: "anonymous", RefSpecs: []gitconfig.RefSpec{spec}, Auth: auth, CABundle: ca}
	err = gr.PushContext(ctx, opts)
	if err == nil || errors.Is(err, git.NoErrAlreadyUpToDate) {
		return nil
	}
	if !nonFastForward(err) {
		return fmt.Errorf("push %s to %s: %w", r.Branch(), rem.Name(), err)
	}
	diverged := fmt.Errorf("push %s to %s: %w: %v (refusing to overwrite it; see SNAPVISOR_GIT_BRANCH for a second writer)", r.Branch(), rem.Name(), ErrDiverged, err)
	if !r.squashing() {
		return diverged
	}
	refs, lerr := gr.ListContext(ctx, &git.ListOptions{Auth: auth, CABundle: ca})
	if lerr != nil {
		return fmt.Errorf("push %s to %s: %w", r.Branch(), rem.Name(), lerr)
	}
	var old plumbing.Hash
	for _, ref := range refs {
		if ref.Name() == r.branch {
			old = ref.Hash()
		}
	}
	if !r.squashedAway(old) {
		return diverged
	}
	opts.RefSpecs = []gitconfig.RefSpec{"+" + spec}
	opts.ForceWithLease = &git.ForceWithLease{RefName: r.branch, Hash: old}
	// go-git's lease check resolves refs/remotes/anonymous/<branch> before
	// it looks at Hash, and fails with "reference not found" in a repository
	// that never pushed over ssh or https (one adopted from a remote).
	track := plumbing.NewRemoteReferenceName("anonymous", r.Branch())
	if err := r.st.SetReference(plumbing.NewHashReference(track, old)); err != nil {
		return fmt.Errorf("push %s to %s: %w", r.Branch(), rem.Name(), err)
	}
	err = gr.PushContext(ctx, opts)
	switch {
	case err == nil, errors.Is(err, git.NoErrAlreadyUpToDate):
		return nil
	case nonFastForward(err):
		return diverged
	}
	return fmt.Errorf("push %s to %s (rewritten by SNAPVISOR_GIT_SQUASH_AFTER): %w", r.Branch(), rem.Name(), err)
}

// nonFastForward reports go-git's refusals of a push that would lose commits.
func nonFastForward(err error) bool {
	return strings.Contains(err.Error(), "non-fast-forward") || errors.Is(err, git.ErrForceNeeded) || strings.Contains(err.Error(), "lease")
}

// preSquashRef keeps the history a squash rewrote until every remote holds
// the rewritten branch: Push may overwrite a remote branch that is part of it.
func (r *Repo) preSquashRef() plumbing.ReferenceName {
	return plumbing.ReferenceName("refs/snapvisor/pre-squash/" + r.Branch())
}

// squashing reports whether a squash's rewrite is still being pushed.
func (r *Repo) squashing() bool {
	_, err := r.st.Reference(r.preSquashRef())
	return err == nil
}

// squashedAway reports whether commit h is part of the history the last
// squash rewrote (so a remote branch at h holds nothing we lack).
func (r *Repo) squashedAway(h plumbing.Hash) bool {
	ref, err := r.st.Reference(r.preSquashRef())
	if err != nil || h.IsZero() {
		return false
	}
	ok, err := r.isAncestor(h, ref.Hash())
	return err == nil && ok
}

// SquashDone ends a squash once every remote holds the rewritten branch:
// the pre-squash history is released and the objects only it used are
// dropped (Repack).
func (r *Repo) SquashDone() error {
	if !r.squashing() {
		return nil
	}
	if err := r.st.RemoveReference(r.preSquashRef()); err != nil {
		return err
	}
	_, err := r.Repack(1)
	return err
}

// pushFile pushes to a repository on a local path without a git binary:
// the missing objects are copied (each verified) into one pack, synced,
// then the remote's branch is moved by compare-and-set.
func (r *Repo) pushFile(rem Remote, head plumbing.Hash) error {
	dst, err := Open(rem.URL, r.Branch(), true)
	if err != nil {
		return fmt.Errorf("push to %s: %w", rem.Name(), err)
	}
	defer dst.Close()
	old, err := dst.Head()
	if err != nil && !errors.Is(err, ErrNoBranch) {
		return fmt.Errorf("push to %s: %w", rem.Name(), err)
	}
	if old == head {
		return nil
	}
	if !old.IsZero() {
		ok, err := r.isAncestor(old, head)
		if err != nil {
			return fmt.Errorf("push to %s: %w", rem.Name(), err)
		}
		if !ok && !r.squashedAway(old) {
			return fmt.Errorf("push %s to %s: %w: it is at %s, which this repository's history does not contain (another writer, or a rewritten history): refusing to overwrite it (see SNAPVISOR_GIT_BRANCH for a second writer)",
				r.Branch(), rem.Name(), ErrDiverged, short(old))
		}
	}
	if err := copyObjects(r, dst, head); err != nil {
		return fmt.Errorf("push to %s: %w", rem.Name(), err)
	}
	// Compare-and-set on the commit seen above: the lease.
	if err := dst.setHead(head, old); err != nil {
		return fmt.Errorf("push to %s: %w", rem.Name(), err)
	}
	return dst.syncHead()
}

func short(h plumbing.Hash) string {
	if h.IsZero() {
		return "(no branch)"
	}
	return h.String()[:7]
}

// isAncestor reports whether commit a is h or one of its ancestors.
func (r *Repo) isAncestor(a, h plumbing.Hash) (bool, error) {
	if a == h {
		return true, nil
	}
	if r.st.HasEncodedObject(a) != nil {
		return false, nil
	}
	ca, err := object.GetCommit(r.st, a)
	if err != nil {
		return false, nil
	}
	ch, err := object.GetCommit(r.st, h)
	if err != nil {
		return false, err
	}
	return ca.IsAncestor(ch)
}

// Fetch brings the remote's branch into this repository (under
// refs/snapvisor/fetched/) and returns its head; ErrNoBranch when the
// remote has no such branch (or no repository).
func (r *Repo) Fetch(ctx context.Context, rem Remote, s Settings) (plumbing.Hash, error) {
	var head plumbing.Hash
	if rem.Kind == KindFile {
		src, err := Open(rem.URL, r.Branch(), false)
		if errors.Is(err, ErrNoRepository) {
			return head, fmt.Errorf("%s: %w", rem.Name(), ErrNoBranch)
		}
		if err != nil {
			return head, err
		}
		defer src.Close()
		if head, err = src.Head(); err != nil {
			return head, err
		}
		if err := copyObjects(src, r, head); err != nil {
			return head, fmt.Errorf("fetch from %s: %w", rem.Name(), err)
		}
	} else {
		auth, ca, err := s.auth(rem)
		if err != nil {
			return head, err
		}
		gr, err := r.repo.CreateRemoteAnonymous(&gitconfig.RemoteConfig{Name: "anonymous", URLs: []string{rem.URL}})
		if err != nil {
			return head, err
		}
		spec := gitconfig.RefSpec("+" + r.branch.String() + ":" + fetchedRef(r.Branch()).String())
		err = gr.FetchContext(ctx, &git.FetchOptions{RemoteName: "anonymous", RefSpecs: []gitconfig.RefSpec{spec}, Auth: auth, CABundle: ca, Tags: git.NoTags})
		var nm git.NoMatchingRefSpecError
		switch {
		case errors.As(err, &nm), errors.Is(err, transport.ErrEmptyRemoteRepository):
			return head, fmt.Errorf("%s: %w", rem.Name(), ErrNoBranch)
		case err != nil && !errors.Is(err, git.NoErrAlreadyUpToDate):
			return head, fmt.Errorf("fetch %s from %s: %w", r.Branch(), rem.Name(), err)
		}
		ref, err := r.st.Reference(fetchedRef(r.Branch()))
		if err != nil {
			return head, fmt.Errorf("fetch %s from %s: %w", r.Branch(), rem.Name(), err)
		}
		return ref.Hash(), nil
	}
	return head, r.st.SetReference(plumbing.NewHashReference(fetchedRef(r.Branch()), head))
}

// copyObjects copies to dst every object of head's history that dst lacks,
// each checked against its hash; a commit dst has is taken to come with
// its whole history, a tree with everything in it.
func copyObjects(src, dst *Repo, head plumbing.Hash) (err error) {
	if err := dst.beginPack(); err != nil {
		return err
	}
	defer func() {
		if perr := dst.endPack(err == nil); err == nil {
			err = perr
		}
	}()
	out := sink{pack: dst.pack, has: dst.has}
	todo := []plumbing.Hash{head}
	var commits []plumbing.EncodedObject
	seen := map[plumbing.Hash]bool{}
	for len(todo) > 0 {
		h := todo[len(todo)-1]
		todo = todo[:len(todo)-1]
		if seen[h] || dst.has(h) {
			continue
		}
		seen[h] = true
		o, err := src.verified(h, plumbing.CommitObject)
		if err != nil {
			return err
		}
		c, err := object.DecodeCommit(src.st, o)
		if err != nil {
			return err
		}
		if err := copyTree(src, out, c.TreeHash); err != nil {
			return err
		}
		commits = append(commits, o)
		todo = append(todo, c.ParentHashes...)
	}
	// Parents before children, so that no commit is ever there without its history.
	for i := len(commits) - 1; i >= 0; i-- {
		if err := copyObject(out, commits[i]); err != nil {
			return err
		}
	}
	return nil
}

// sink is where copied objects go: a pack being written, and what it
// (or its repository) holds already.
type sink struct {
	pack *packWriter
	has  func(plumbing.Hash) bool
}

// copyTree copies tree h and everything in it that out lacks; a tree out
// has is taken to come with everything in it.
func copyTree(src *Repo, out sink, h plumbing.Hash) error {
	if out.has(h) {
		return nil
	}
	o, err := src.verified(h, plumbing.TreeObject)
	if err != nil {
		return err
	}
	t, err := object.DecodeTree(src.st, o)
	if err != nil {
		return err
	}
	for _, e := range t.Entries {
		switch e.Mode {
		case filemode.Dir:
			if err := copyTree(src, out, e.Hash); err != nil {
				return err
			}
		case filemode.Submodule:
		default:
			if out.has(e.Hash) {
				continue
			}
			b, err := src.st.EncodedObject(plumbing.BlobObject, e.Hash)
			if err != nil {
				return missing(src, plumbing.BlobObject, e.Hash, err)
			}
			if err := copyObject(out, b); err != nil {
				return err
			}
		}
	}
	return copyObject(out, o)
}

// copyObject writes o into out's pack, checking its hash on the way.
func copyObject(out sink, o plumbing.EncodedObject) error {
	rd, err := o.Reader()
	if err != nil {
		return err
	}
	defer rd.Close()
	data, err := io.ReadAll(rd)
	if err != nil {
		return err
	}
	if h := computeHash(o.Type(), data); h != o.Hash() {
		return fmt.Errorf("%s %s is %w: its content hashes to %s", o.Type(), o.Hash(), ErrDamaged, h)
	}
	return out.pack.Add(o.Type(), o.Hash(), data)
}

// copyReachable adds to pack every object reachable from h (a commit, or
// a tag of one) that pack lacks, each checked against its hash.
func copyReachable(src *Repo, pack *packWriter, h plumbing.Hash) error {
	out := sink{pack: pack, has: pack.Has}
	todo := []plumbing.Hash{h}
	for len(todo) > 0 {
		h := todo[len(todo)-1]
		todo = todo[:len(todo)-1]
		if pack.Has(h) {
			continue
		}
		o, err := src.st.EncodedObject(plumbing.AnyObject, h)
		if err != nil {
			return missing(src, plumbing.AnyObject, h, err)
		}
		switch o.Type() {
		case plumbing.TagObject:
			t, err := object.DecodeTag(src.st, o)
			if err != nil {
				return err
			}
			todo = append(todo, t.Target)
		case plumbing.CommitObject:
			c, err := object.DecodeCommit(src.st, o)
			if err != nil {
				return err
			}
			if err := copyTree(src, out, c.TreeHash); err != nil {
				return err
			}
			todo = append(todo, c.ParentHashes...)
		case plumbing.TreeObject:
			if err := copyTree(src, out, h); err != nil {
				return err
			}
			continue
		}
		if err := copyObject(out, o); err != nil {
			return err
		}
	}
	return nil
}
