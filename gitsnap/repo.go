package gitsnap

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/go-git/go-billy/v5/osfs"
	git "github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/cache"
	"github.com/go-git/go-git/v5/plumbing/object"
	"github.com/go-git/go-git/v5/storage/filesystem"
)

// ErrNoRepository is returned by Open when the directory holds no repository
// (and create is false).
var ErrNoRepository = errors.New("no git repository")

// ErrNoBranch is returned when a repository has no snapshot branch.
var ErrNoBranch = errors.New("the branch does not exist")

// objectCache bounds go-git's cache of decoded objects (its default is
// 96 MiB): snapshots read each object about once.
const objectCache = 4 * cache.MiByte

// Repo is a bare repository holding snapshot commits on one branch.
type Repo struct {
	path   string
	branch plumbing.ReferenceName
	repo   *git.Repository
	st     *filesystem.Storage
	pack   *packWriter // the pack new objects go into, while an operation writes
	// known: blobs of the head's tree, present without a lookup (Commit).
	known map[plumbing.Hash]bool
}

// RepoPath is where SNAPVISOR_DIR keeps the repository of snapshots named name.
func RepoPath(dir, name string) string { return filepath.Join(dir, name+".git") }

// Open opens the bare repository at path for branch; with create, a
// missing one (or an empty directory) is initialised, its HEAD on branch.
func Open(path, branch string, create bool) (*Repo, error) {
	empty, err := missingOrEmpty(path)
	if err != nil {
		return nil, fmt.Errorf("git repository %s: %w", path, err)
	}
	if empty && !create {
		return nil, fmt.Errorf("%s: %w", path, ErrNoRepository)
	}
	if empty {
		if err := os.MkdirAll(path, 0o700); err != nil {
			return nil, fmt.Errorf("git repository %s: %w", path, err)
		}
	}
	st := filesystem.NewStorageWithOptions(osfs.New(path), cache.NewObjectLRU(objectCache), filesystem.Options{KeepDescriptors: true})
	r := &Repo{path: path, branch: plumbing.NewBranchReferenceName(branch), st: st}
	if empty {
		r.repo, err = git.InitWithOptions(st, nil, git.InitOptions{DefaultBranch: r.branch})
		if err == nil {
			err = setBare(r.repo)
		}
	} else {
		r.repo, err = git.Open(st, nil)
		if errors.Is(err, git.ErrRepositoryNotExists) {
			return nil, fmt.Errorf("%s is not empty and holds no git repository: %w", path, ErrNoRepository)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("git repository %s: %w", path, err)
	}
	return r, nil
}

// setBare marks a new repository bare, as git init --bare does.
func setBare(r *git.Repository) error {
	cfg, err := r.Config()
	if err != nil {
		return err
	}
	cfg.Core.IsBare = true
	return r.SetConfig(cfg)
}

func missingOrEmpty(path string) (bool, error) {
	ents, err := os.ReadDir(path)
	if errors.Is(err, fs.ErrNotExist) {
		return true, nil
	}
	if err != nil {
		return false, err
	}
	return len(ents) == 0, nil
}

// Close releases the repository's open pack files.
func (r *Repo) Close() error { return r.st.Close() }

// Path is the repository's directory.
func (r *Repo) Path() string { return r.path }

// Branch is the snapshot branch's short name.
func (r *Repo) Branch() string { return r.branch.Short() }

// Head returns the branch's commit; ErrNoBranch when it has none yet.
func (r *Repo) Head() (plumbing.Hash, error) {
	ref, err := r.st.Reference(r.branch)
	if errors.Is(err, plumbing.ErrReferenceNotFound) {
		return plumbing.ZeroHash, fmt.Errorf("%s in %s: %w", r.Branch(), r.path, ErrNoBranch)
	}
	if err != nil {
		return plumbing.ZeroHash, fmt.Errorf("branch %s in %s: %w", r.Branch(), r.path, err)
	}
	return ref.Hash(), nil
}

// setHead moves the branch from old (zero: it must not exist) to h.
func (r *Repo) setHead(h, old plumbing.Hash) error {
	var prev *plumbing.Reference
	if !old.IsZero() {
		prev = plumbing.NewHashReference(r.branch, old)
	}
	if err := r.st.CheckAndSetReference(plumbing.NewHashReference(r.branch, h), prev); err != nil {
		return fmt.Errorf("move branch %s of %s to %s: %w", r.Branch(), r.path, h, err)
	}
	return nil
}

// Commit is one snapshot commit as list shows it.
type Commit struct {
	Hash    string    `json:"hash"`
	Short   string    `json:"short"`
	Time    time.Time `json:"time"`
	Subject string    `json:"subject"`
	// Changed is the number of files added, removed or modified against
	// the first parent; -1 when unknown.
	Changed int      `json:"files_changed"`
	Tags    []string `json:"tags,omitempty"`
}

// Trailers of snapshot commits' messages.
const (
	trailerTrigger = "Snapvisor-Trigger"
	trailerHost    = "Snapvisor-Host"
	trailerChanged = "Snapvisor-Files-Changed"
	trailerFiles   = "Snapvisor-Files"
)

// trailer returns the value of a "Key: value" line of msg, "" when absent.
func trailer(msg, key string) string {
	for _, l := range strings.Split(msg, "\n") {
		if v, ok := strings.CutPrefix(l, key+": "); ok {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

// Log lists the branch's commits along first parents, newest first.
func (r *Repo) Log() ([]Commit, error) {
	h, err := r.Head()
	if err != nil {
		return nil, err
	}
	return r.LogFrom(h)
}

// LogFrom lists the commits from h along first parents, newest first.
func (r *Repo) LogFrom(h plumbing.Hash) ([]Commit, error) {
	tags := r.tagsByCommit()
	var out []Commit
	for !h.IsZero() {
		c, err := object.GetCommit(r.st, h)
		if err != nil {
			return out, fmt.Errorf("commit %s of %s: %w", h, r.Branch(), err)
		}
		n := -1
		if v := trailer(c.Message, trailerChanged); v != "" {
			if i, err := strconv.Atoi(v); err == nil {
				n = i
			}
		} else if st, err := r.diffCount(c); err == nil {
			n = st
		}
		out = append(out, Commit{Hash: h.String(), Short: h.String()[:7], Time: c.Committer.When, Subject: strings.SplitN(c.Message, "\n", 2)[0], Changed: n, Tags: tags[h]})
		h = plumbing.ZeroHash
		if len(c.ParentHashes) > 0 {
			h = c.ParentHashes[0]
		}
	}
	return out, nil
}

// diffCount counts the files a commit changed against its first parent
// (for commits made by other tools, which carry no trailer).
func (r *Repo) diffCount(c *object.Commit) (int, error) {
	now, err := r.files(c.TreeHash)
	if err != nil {
		return 0, err
	}
	before := map[string]fileRef{}
	if len(c.ParentHashes) > 0 {
		p, err := object.GetCommit(r.st, c.ParentHashes[0])
		if err != nil {
			return 0, err
		}
		if before, err = r.files(p.TreeHash); err != nil {
			return 0, err
		}
	}
	return changedFiles(before, now), nil
}

// tagsByCommit maps commits to the tags (lightweight or annotated) naming them.
func (r *Repo) tagsByCommit() map[plumbing.Hash][]string {
	out := map[plumbing.Hash][]string{}
	it, err := r.repo.Tags()
	if err != nil {
		return out
	}
	_ = it.ForEach(func(ref *plumbing.Reference) error {
		h := ref.Hash()
		if t, err := object.GetTag(r.st, h); err == nil {
			h = t.Target
		}
		out[h] = append(out[h], ref.Name().Short())
		return nil
	})
	return out
}

// Resolve finds the commit ref names: latest (the branch's head), a tag,
// or a full or abbreviated (at least 4 hex digits, unique) commit hash.
func (r *Repo) Resolve(ref string) (plumbing.Hash, error) {
	if ref == "" || ref == "latest" {
		return r.Head()
	}
	if t, err := r.st.Reference(plumbing.NewTagReferenceName(ref)); err == nil {
		h := t.Hash()
		if tag, err := object.GetTag(r.st, h); err == nil {
			h = tag.Target
		}
		if _, err := object.GetCommit(r.st, h); err != nil {
			return plumbing.ZeroHash, fmt.Errorf("tag %s does not name a commit: %w", ref, err)
		}
		return h, nil
	}
	hex := strings.ToLower(ref)
	if len(hex) < 4 || len(hex) > 40 || strings.Trim(hex, "0123456789abcdef") != "" {
		return plumbing.ZeroHash, fmt.Errorf("%q is neither latest, a tag nor a commit hash of %s", ref, r.path)
	}
	found, err := r.commitsWithPrefix(hex)
	if err != nil {
		return plumbing.ZeroHash, err
	}
	switch len(found) {
	case 0:
		return plumbing.ZeroHash, fmt.Errorf("no commit %s in %s", ref, r.path)
	case 1:
		return found[0], nil
	}
	return plumbing.ZeroHash, fmt.Errorf("commit hash %s is ambiguous in %s (%d commits): give more digits", ref, r.path, len(found))
}

// Parent returns the first parent of commit h (zero for a root commit).
func (r *Repo) Parent(h plumbing.Hash) (plumbing.Hash, error) {
	c, err := object.GetCommit(r.st, h)
	if err != nil {
		return plumbing.ZeroHash, missing(r, plumbing.CommitObject, h, err)
	}
	if len(c.ParentHashes) == 0 {
		return plumbing.ZeroHash, nil
	}
	return c.ParentHashes[0], nil
}

// commitsWithPrefix finds the commits reachable from any reference (the
// branch, fetched heads, tags) whose hash starts with hex.
func (r *Repo) commitsWithPrefix(hex string) ([]plumbing.Hash, error) {
	refs, err := r.st.IterReferences()
	if err != nil {
		return nil, err
	}
	var todo []plumbing.Hash
	_ = refs.ForEach(func(ref *plumbing.Reference) error {
		if ref.Type() == plumbing.HashReference {
			h := ref.Hash()
			if t, err := object.GetTag(r.st, h); err == nil {
				h = t.Target
			}
			todo = append(todo, h)
		}
		return nil
	})
	seen := map[plumbing.Hash]bool{}
	var found []plumbing.Hash
	for len(todo) > 0 {
		h := todo[len(todo)-1]
		todo = todo[:len(todo)-1]
		if seen[h] {
			continue
		}
		seen[h] = true
		c, err := object.GetCommit(r.st, h)
		if err != nil {
			continue // a tag of a tree or blob, or a history cut short
		}
		if strings.HasPrefix(h.String(), hex) {
			found = append(found, h)
		}
		todo = append(todo, c.ParentHashes...)
	}
	return found, nil
}
