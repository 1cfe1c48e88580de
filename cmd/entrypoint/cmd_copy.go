//go:build !initonly

package main

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"go.uber.org/zap"

	"snapvisor/remote"
	"snapvisor/restic"
)

func cmdCopy(ctx context.Context, a *app, args []string) error {
	fs := newFlagSet(a, "copy", "copy --from URL --to URL [--json] [NAME|latest|--all]",
		"Copies snapshots from one remote to another (any two stores; same forms and credentials\n"+
			"as SNAPVISOR_REMOTES). NAME is a key as `list --remote URL` shows it; latest (the\n"+
			"default) is the newest complete snapshot of SNAPVISOR_NAME on the source; --all copies\n"+
			"every complete snapshot of SNAPVISOR_NAME there. Each archive is streamed (bounded\n"+
			"memory), hashed on the way against the source's .sha256 and confirmed on the\n"+
			"destination before its .sha256 is written, last: a copy cut short is never listed,\n"+
			"and a rerun resumes (snapshots already there with the same checksum are skipped).\n"+
			"S3 to S3 on one endpoint is copied by the server. A snapshot that fails verification\n"+
			"on the source is not copied. A different snapshot under the same key on the\n"+
			"destination is never replaced. Exit 0 when every snapshot was copied or skipped, 1\n"+
			"when any failed (each named; the others are still copied).\n"+
			"With SNAPVISOR_FORMAT=restic, the source's repository is copied file by file (each\n"+
			"checked against its name, the SHA-256 of its content), snapshot files last, into an\n"+
			"empty destination or one holding the same repository (missing files only).\n"+
			"With SNAPVISOR_FORMAT=git there is nothing to copy: every push reconciles the git remotes.")
	from := fs.String("from", "", "copy from this remote `URL` (required)")
	to := fs.String("to", "", "copy to this remote `URL` (required)")
	all := fs.Bool("all", false, "copy every complete snapshot of SNAPVISOR_NAME on the source")
	asJSON := fs.Bool("json", false, "print a JSON array of {key, from, to, bytes, skipped, server_side, seconds, error}")
	noProgress := progressFlag(fs)
	pos, done, err := parseArgs(fs, args, 1)
	if done || err != nil {
		return err
	}
	switch {
	case *from == "" || *to == "":
		return &usageError{"copy: both --from URL and --to URL are required"}
	case *all && len(pos) == 1:
		return &usageError{fmt.Sprintf("copy: give NAME (%q) or --all, not both", pos[0])}
	case len(pos) == 1 && strings.ContainsRune(pos[0], '/'):
		return &usageError{fmt.Sprintf("copy: NAME is a key as `entrypoint list --remote URL` shows it, not a path: %q", pos[0])}
	case a.cfg.git():
		return &usageError{"copy: SNAPVISOR_FORMAT=git has nothing to copy: every push reconciles all the git remotes in SNAPVISOR_REMOTES (add the new remote there)"}
	}
	src, err := openRemote(ctx, a, *from)
	if err != nil {
		return err
	}
	defer src.Close()
	dst, err := openRemote(ctx, a, *to)
	if err != nil {
		return err
	}
	defer dst.Close()
	if remote.SameLocation(src, dst) {
		return &usageError{fmt.Sprintf("copy: --from %s and --to %s are the same location: %v", src.Name(), dst.Name(), remote.ErrSameLocation)}
	}
	if a.cfg.restic() {
		return copyRestic(ctx, a, src, dst, *asJSON)
	}

	keys, err := copyKeys(ctx, a, src, pos, *all)
	if err != nil {
		return err
	}
	var lines []copyLine
	var failed []error
	for _, key := range keys {
		pctx, _, stopProgress := a.withProgress(ctx, *asJSON || *noProgress)
		l := copyOne(pctx, src, dst, key)
		stopProgress()
		lines = append(lines, l)
		if l.Error != "" {
			failed = append(failed, fmt.Errorf("%s: %s", key, l.Error))
			a.log.Error("copy failed", zap.String("key", key), zap.String("from", src.Name()), zap.String("to", dst.Name()), zap.String("error", l.Error))
		}
		if !*asJSON {
			fmt.Fprintln(a.stdout, l.String())
		}
	}
	if *asJSON {
		if lines == nil {
			lines = []copyLine{}
		}
		if err := printJSON(a.stdout, lines); err != nil {
			return err
		}
	}
	if len(failed) > 0 {
		return fmt.Errorf("copy: %d of %d snapshots failed: %w", len(failed), len(keys), errors.Join(failed...))
	}
	return nil
}

// copyKeys are the keys to copy: NAME, the newest complete snapshot of
// SNAPVISOR_NAME on src (latest), or every one (--all), newest first.
func copyKeys(ctx context.Context, a *app, src remote.Remote, pos []string, all bool) ([]string, error) {
	if len(pos) == 1 && pos[0] != "latest" {
		return pos, nil
	}
	lctx, cancel := src.WithTimeout(ctx)
	defer cancel()
	list, err := remote.ListSnapshots(lctx, src, a.snap.Name)
	if err != nil {
		return nil, remote.TimeoutError(lctx, err)
	}
	if len(list) == 0 {
		return nil, fmt.Errorf("copy: no complete snapshot named %s-* on %s", a.snap.Name, src.Name())
	}
	if !all {
		list = list[:1]
	}
	keys := make([]string, len(list))
	for i, s := range list {
		keys[i] = s.Key
	}
	return keys, nil
}

// copyLine is one snapshot's outcome: a line of output, an element of --json.
type copyLine struct {
	remote.CopyResult
	Seconds float64 `json:"seconds"`
	Error   string  `json:"error,omitempty"`
}

func (l copyLine) String() string {
	switch {
	case l.Error != "":
		return fmt.Sprintf("failed  %s: %s", l.Key, l.Error)
	case l.Skipped:
		return fmt.Sprintf("skipped %s (already there, same checksum)", l.Key)
	}
	how := ""
	if l.ServerSide {
		how = ", server side"
	}
	rate := 0.0
	if l.Seconds > 0 {
		rate = float64(l.Bytes) / (1 << 20) / l.Seconds
	}
	return fmt.Sprintf("copied  %s  %d bytes  %.1fs  %.1f MiB/s%s", l.Key, l.Bytes, l.Seconds, rate, how)
}

// copyOne copies key within the destination's time limit (SNAPVISOR_REMOTE_TIMEOUT).
func copyOne(ctx context.Context, src, dst remote.Remote, key string) copyLine {
	cctx, cancel := dst.WithTimeout(ctx)
	defer cancel()
	start := time.Now()
	res, err := remote.Copy(cctx, src, dst, key, remote.CopyOptions{})
	l := copyLine{CopyResult: res, Seconds: time.Since(start).Seconds()}
	if err != nil {
		l.Error = remote.TimeoutError(cctx, err).Error()
	}
	return l
}

// copyRestic copies the restic repository on src to dst (restic.CopyRepo).
func copyRestic(ctx context.Context, a *app, src, dst remote.Remote, asJSON bool) error {
	cctx, cancel := dst.WithTimeout(ctx)
	defer cancel()
	start := time.Now()
	st, err := restic.CopyRepo(cctx, src, dst)
	if err != nil {
		return fmt.Errorf("copy: %w", remote.TimeoutError(cctx, err))
	}
	if asJSON {
		return printJSON(a.stdout, st)
	}
	fmt.Fprintf(a.stdout, "copied  restic repository  %d files, %d bytes, %d already there  %.1fs\n",
		st.Files, st.Bytes, st.Skipped, time.Since(start).Seconds())
	return nil
}
