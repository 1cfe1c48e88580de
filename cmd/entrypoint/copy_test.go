//go:build !initonly

package main

import (
	"bytes"
	"encoding/json"
	"io"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"snapvisor/internal/testutil"
	"snapvisor/remote"
	"snapvisor/store"
	"snapvisor/store/storetest"
)

// copyLineJSON is one element of `copy --json`.
type copyLineJSON struct {
	remote.CopyResult
	Error string `json:"error"`
}

// pushTo pushes a snapshot named app-<at> of n pseudo-random bytes to s and returns its key.
func pushTo(t *testing.T, s store.Store, at time.Time, n int64) string {
	t.Helper()
	p := storetest.MakeSnapshot(t, t.TempDir(), "app", at, ".tar.zst", n)
	rs, err := remote.Push(storetest.Ctx(t, 5*time.Minute), s, p)
	if err != nil {
		t.Fatalf("push: %v", err)
	}
	return rs.Key
}

// keysIn is the keys of a `list --remote --json`.
func keysIn(list []remote.Snapshot) []string {
	var out []string
	for _, s := range list {
		out = append(out, s.Key)
	}
	return out
}

// TestCopy_Command: `entrypoint copy` between two MinIO instances (two
// regions): --all copies every good snapshot and reports the one that fails
// verification on the source (never copied, exit 1); a rerun skips what is
// there (--json); latest and NAME; usage errors exit 64 (the same location
// among them) and the git format is refused.
func TestCopy_Command(t *testing.T) {
	a, b := storetest.StartMinIO(t), storetest.StartMinIO(t)
	a.MakeBucket(t, "snapvisor")
	b.MakeBucket(t, "snapvisor")
	urlA, urlB := a.URL("snapvisor", "app"), b.URL("snapvisor", "app")
	env := append(a.Env(), "SNAPVISOR_NAME=app", "SNAPVISOR_REMOTE_RETRIES=1", "SNAPVISOR_REMOTE_BACKOFF=50ms",
		"SNAPVISOR_CONTROL_SOCKET="+filepath.Join(t.TempDir(), "c.sock"))
	sa := storetest.Open(t, urlA, storetest.MinIOConfig())
	t0 := time.Date(2025, 6, 1, 0, 0, 0, 0, time.UTC)
	good1 := pushTo(t, sa, t0, 1<<20)
	bad := pushTo(t, sa, t0.Add(time.Hour), 1<<20)
	good2 := pushTo(t, sa, t0.Add(2*time.Hour), 2<<20)
	altered, _ := io.ReadAll(storetest.Gen(7, 1<<20))
	if err := sa.Put(storetest.Ctx(t, time.Minute), bad, bytes.NewReader(altered), 1<<20); err != nil {
		t.Fatal(err)
	}

	code, out, errOut := entrypoint(t, env, "copy", "--from", urlA, "--to", urlB, "--all")
	if code != 1 || !strings.Contains(errOut, bad) {
		t.Fatalf("copy --all with a damaged source snapshot: exit %d, want 1 naming %s\nstdout:\n%s\nstderr:\n%s", code, bad, out, errOut)
	}
	if got := keysIn(remoteList(t, env, urlB)); len(got) != 2 || got[0] != good2 || got[1] != good1 {
		t.Fatalf("B lists %v, want [%s %s]", got, good2, good1)
	}

	code, out, errOut = entrypoint(t, env, "copy", "--from", urlA, "--to", urlB, "--all", "--json")
	var lines []copyLineJSON
	if err := json.Unmarshal([]byte(out), &lines); code != 1 || err != nil || len(lines) != 3 {
		t.Fatalf("rerun --json: exit %d, %v: %s %s", code, err, out, errOut)
	}
	for _, l := range lines {
		if (l.Key == bad) != (l.Error != "") || (l.Key != bad && !l.Skipped) {
			t.Errorf("rerun: %+v; want the good ones skipped, the bad one failed", l)
		}
	}

	// latest, and NAME, into a third place.
	urlC := b.URL("snapvisor", "c")
	if code, out, errOut := entrypoint(t, env, "copy", "--from", urlA, "--to", urlC); code != 0 || !strings.Contains(out, "copied  "+good2) {
		t.Fatalf("copy latest: exit %d: %s %s", code, out, errOut)
	}
	if code, out, errOut := entrypoint(t, env, "copy", "--from", urlA, "--to", urlC, good1); code != 0 {
		t.Fatalf("copy NAME: exit %d: %s %s", code, out, errOut)
	}
	if got := keysIn(remoteList(t, env, urlC)); len(got) != 2 {
		t.Fatalf("C lists %v, want 2 snapshots", got)
	}

	for name, args := range map[string][]string{
		"noTo":         {"copy", "--from", urlA},
		"nameAndAll":   {"copy", "--from", urlA, "--to", urlB, "--all", good1},
		"sameLocation": {"copy", "--from", urlA, "--to", strings.Replace(urlA, "/app?", "/app/?", 1)},
	} {
		if code, _, errOut := entrypoint(t, env, args...); code != exitUsage {
			t.Errorf("%s: exit %d, want %d: %s", name, code, exitUsage, errOut)
		}
	}
	if code, _, errOut := entrypoint(t, append(env, "SNAPVISOR_FORMAT=git"), "copy", "--from", urlA, "--to", urlB); code == 0 || !strings.Contains(errOut, "git") {
		t.Errorf("git format: exit %d: %s; want a refusal", code, errOut)
	}
}

// TestCopy_Kill: `entrypoint copy --all` killed (SIGKILL) in the middle of a
// 200 MiB copy MinIO A to MinIO B leaves nothing listed on B; the next run
// completes it, and B's copy downloads and hashes to A's .sha256.
func TestCopy_Kill(t *testing.T) {
	a, b := storetest.StartMinIO(t), storetest.StartMinIO(t)
	a.MakeBucket(t, "snapvisor")
	b.MakeBucket(t, "snapvisor")
	urlA, urlB := a.URL("snapvisor", "app"), b.URL("snapvisor", "app")
	env := append(a.Env(), "SNAPVISOR_NAME=app", "SNAPVISOR_REMOTE_RETRIES=1", "SNAPVISOR_REMOTE_BACKOFF=50ms",
		"SNAPVISOR_CONTROL_SOCKET="+filepath.Join(t.TempDir(), "c.sock"))
	sa := storetest.Open(t, urlA, storetest.MinIOConfig())
	key := pushTo(t, sa, time.Date(2025, 6, 2, 0, 0, 0, 0, time.UTC), 200<<20)

	cmd := exec.Command(binPath, "copy", "--from", urlA, "--to", urlB, "--all")
	cmd.Env = append(os.Environ(), env...)
	var so, se strings.Builder
	cmd.Stdout, cmd.Stderr = &so, &se
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	testutil.Eventually(t, 2*time.Minute, "the copy has a multipart upload in progress on B", func() bool {
		select {
		case <-exited:
			t.Fatalf("the copy ended before it could be killed: %s %s", so.String(), se.String())
		default:
		}
		return b.IncompleteUploads(t, "snapvisor", path.Join("app", key)) > 0
	})
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-exited
	if got := remoteList(t, env, urlB); len(got) != 0 {
		t.Fatalf("B lists %v after the kill, want nothing", keysIn(got))
	}

	if code, out, errOut := entrypoint(t, env, "copy", "--from", urlA, "--to", urlB, "--all"); code != 0 {
		t.Fatalf("rerun: exit %d: %s %s", code, out, errOut)
	}
	if got := keysIn(remoteList(t, env, urlB)); len(got) != 1 || got[0] != key {
		t.Fatalf("B lists %v, want [%s]", got, key)
	}
	if n := b.IncompleteUploads(t, "snapvisor", path.Join("app", key)); n != 0 {
		t.Errorf("the killed copy's multipart upload is still on B (%d): its parts are stored, and billed, forever", n)
	}
	sb := storetest.Open(t, urlB, storetest.MinIOConfig())
	ctx := storetest.Ctx(t, 5*time.Minute)
	if err := remote.VerifyCopy(ctx, sb, key); err != nil {
		t.Fatalf("B's copy: %v", err)
	}
	sumA, sumB := readAll(t, sa, key+".sha256"), readAll(t, sb, key+".sha256")
	if !bytes.Equal(sumA, sumB) {
		t.Fatalf("B's .sha256 %q, A's %q", sumB, sumA)
	}
}

// readAll reads key from s.
func readAll(t *testing.T, s store.Store, key string) []byte {
	t.Helper()
	rc, err := s.Get(storetest.Ctx(t, time.Minute), key)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestCopy_Restic: with SNAPVISOR_FORMAT=restic, `entrypoint copy` copies
// the repository (SNAPVISOR_DIR's, as file://) to another place, where
// `list --remote` reads its snapshot; a rerun copies nothing; the git
// format is refused.
func TestCopy_Restic(t *testing.T) {
	env, _, repo := resticSetup(t)
	if code, out, errOut := entrypointWithin(t, 2*time.Minute, env, "snapshot"); code != 0 {
		t.Fatalf("snapshot: exit %d: %s %s", code, out, errOut)
	}
	dst := filepath.Join(t.TempDir(), "copy")
	code, out, errOut := entrypointWithin(t, 2*time.Minute, env, "copy", "--from", "file://"+repo, "--to", "file://"+dst, "--json")
	var st struct{ Files, Skipped int }
	if err := json.Unmarshal([]byte(out), &st); code != 0 || err != nil || st.Files == 0 {
		t.Fatalf("copy: exit %d, %v: %s %s", code, err, out, errOut)
	}
	code, out, errOut = entrypointWithin(t, time.Minute, env, "list", "--remote", "file://"+dst, "--json")
	var rows []json.RawMessage
	if err := json.Unmarshal([]byte(out), &rows); code != 0 || err != nil || len(rows) != 1 {
		t.Fatalf("list --remote the copy: exit %d, %v: %s %s", code, err, out, errOut)
	}
	code, out, errOut = entrypointWithin(t, 2*time.Minute, env, "copy", "--from", "file://"+repo, "--to", "file://"+dst, "--json")
	if err := json.Unmarshal([]byte(out), &st); code != 0 || err != nil || st.Files != 0 || st.Skipped == 0 {
		t.Fatalf("rerun: exit %d, %v: %s %s; want nothing copied", code, err, out, errOut)
	}
}

// TestCopy_Help: `copy --help` prints its usage; `help` lists copy.
func TestCopy_Help(t *testing.T) {
	if code, out, _ := entrypoint(t, nil, "copy", "--help"); code != 0 || !strings.Contains(out, "Usage: entrypoint copy --from URL --to URL") {
		t.Errorf("copy --help: exit %d: %s", code, out)
	}
	if code, out, _ := entrypoint(t, nil, "help"); code != 0 || !strings.Contains(out, "  copy ") {
		t.Errorf("help does not list copy: exit %d: %s", code, out)
	}
}
