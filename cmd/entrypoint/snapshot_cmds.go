package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"go.uber.org/zap"

	"snapvisor/jobs"
	"snapvisor/snapshot"
)

// newFlagSet returns a FlagSet for a subcommand whose -h prints usage and flags to stdout.
func newFlagSet(a *app, name, usage, about string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {
		fmt.Fprintf(a.stdout, "Usage: entrypoint %s\n\n%s\n", usage, about)
		n := 0
		fs.VisitAll(func(*flag.Flag) { n++ })
		if n > 0 {
			fmt.Fprintln(a.stdout, "\nFlags:")
			fs.SetOutput(a.stdout)
			fs.PrintDefaults()
			fs.SetOutput(io.Discard)
		}
	}
	return fs
}

// parseArgs parses flags anywhere on the command line and returns the positional arguments.
// done is true when -h was given (usage already printed).
func parseArgs(fs *flag.FlagSet, args []string, maxPos int) (pos []string, done bool, err error) {
	rest := args
	for {
		if err := fs.Parse(rest); err != nil {
			if errors.Is(err, flag.ErrHelp) { // fs.Usage has printed the help
				return nil, true, nil
			}
			return nil, false, &usageError{fmt.Sprintf("%s: %v", fs.Name(), err)}
		}
		if fs.NArg() == 0 {
			break
		}
		pos = append(pos, fs.Arg(0))
		rest = fs.Args()[1:]
	}
	if len(pos) > maxPos {
		return nil, false, &usageError{fmt.Sprintf("%s: unexpected argument %q", fs.Name(), pos[maxPos])}
	}
	return pos, false, nil
}

// snapshotPath maps a NAME argument to a path: a bare file name is looked up in the snapshot directory.
func snapshotPath(a *app, name string) string {
	if strings.ContainsRune(name, os.PathSeparator) {
		return name
	}
	return filepath.Join(a.snap.Dir, name)
}

func cmdSnapshot(ctx context.Context, a *app, args []string) error {
	fs := newFlagSet(a, "snapshot", "snapshot [--json]",
		"Takes one snapshot now and prints its path. When an entrypoint runs in this container\n"+
			"(SNAPVISOR_CONTROL_SOCKET answers), it asks that one, which runs the hooks, the freeze,\n"+
			"rotation and the pushes to the remotes, and waits for the result; otherwise it snapshots\n"+
			"SNAPVISOR_SOURCE into SNAPVISOR_DIR by itself. The exit code tells success.")
	asJSON := fs.Bool("json", false, "print the result as JSON")
	if _, done, err := parseArgs(fs, args, 0); done || err != nil {
		return err
	}
	if handled, err := snapshotViaSupervisor(ctx, a, *asJSON); handled {
		return err
	}
	info, err := snapshot.Create(ctx, a.snap, a.log)
	if err != nil {
		if *asJSON {
			_ = json.NewEncoder(a.stdout).Encode(jobs.Result{Reason: "standalone", Error: err.Error()})
		}
		return err
	}
	if *asJSON {
		return json.NewEncoder(a.stdout).Encode(jobs.Result{Reason: "standalone", Started: info.Time, Snapshot: info.Name, Size: info.Size})
	}
	fmt.Fprintln(a.stdout, info.Path)
	return nil
}

func cmdRestore(ctx context.Context, a *app, args []string) error {
	fs := newFlagSet(a, "restore", "restore [--discard-current] [NAME|latest]",
		"Restores a snapshot into the source paths (SNAPVISOR_SOURCE). NAME is a file in\n"+
			"SNAPVISOR_DIR or a path; latest (the default) is the newest snapshot that verifies.\n"+
			"The checksum is verified and the archive extracted beside each source before the\n"+
			"current contents are swapped out to <source>.pre-restore-<UTC time>.")
	discard := fs.Bool("discard-current", false, "delete the current contents after the swap instead of keeping them as <source>.pre-restore-<time>")
	pos, done, err := parseArgs(fs, args, 1)
	if done || err != nil {
		return err
	}
	opts := snapshot.RestoreOptions{DiscardCurrent: *discard, Now: time.Now}
	if len(pos) == 1 && pos[0] != "latest" {
		return snapshot.Restore(ctx, a.snap, snapshotPath(a, pos[0]), opts, a.log)
	}
	list, err := snapshot.List(a.snap.Dir, a.snap.Name)
	if err != nil {
		return err
	}
	if len(list) == 0 {
		return fmt.Errorf("restore latest: no snapshot named %s-* in %s", a.snap.Name, a.snap.Dir)
	}
	// Newest first: a snapshot that fails its checksum or does not read to the end is skipped
	// (Restore leaves the targets untouched when it fails).
	for _, s := range list {
		err := snapshot.Restore(ctx, a.snap, s.Path, opts, a.log)
		if err == nil {
			fmt.Fprintln(a.stdout, s.Path)
			return nil
		}
		if !errors.Is(err, snapshot.ErrChecksum) && !errors.Is(err, snapshot.ErrCorrupt) {
			return err
		}
		a.log.Warn("restore latest: skipping a snapshot that does not verify", zap.String("snapshot", s.Path), zap.Error(err))
	}
	return fmt.Errorf("restore latest: none of the %d snapshots in %s verifies", len(list), a.snap.Dir)
}

func cmdList(_ context.Context, a *app, args []string) error {
	fs := newFlagSet(a, "list", "list [--json]",
		"Lists the complete snapshots in SNAPVISOR_DIR named SNAPVISOR_NAME-*, newest first.")
	asJSON := fs.Bool("json", false, "print a JSON array of {name, path, time, size, compression, sha256}")
	if _, done, err := parseArgs(fs, args, 0); done || err != nil {
		return err
	}
	list, err := snapshot.List(a.snap.Dir, a.snap.Name)
	if err != nil {
		return err
	}
	if *asJSON {
		if list == nil {
			list = []snapshot.Info{}
		}
		enc := json.NewEncoder(a.stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(list)
	}
	tw := newTabWriter(a.stdout)
	fmt.Fprintln(tw, "NAME\tTIME\tSIZE\tCOMPRESSION")
	for _, s := range list {
		fmt.Fprintf(tw, "%s\t%s\t%d\t%s\n", s.Name, s.Time.Format(time.RFC3339), s.Size, s.Compression)
	}
	return tw.Flush()
}

func cmdVerify(ctx context.Context, a *app, args []string) error {
	fs := newFlagSet(a, "verify", "verify [NAME|--all]",
		"Checks a snapshot's checksum and that its archive reads to the end.\n"+
			"Without NAME, checks the newest snapshot; --all checks every one.")
	all := fs.Bool("all", false, "verify every snapshot")
	pos, done, err := parseArgs(fs, args, 1)
	if done || err != nil {
		return err
	}
	if *all && len(pos) > 0 {
		return &usageError{"verify: give NAME or --all, not both"}
	}
	var paths []string
	switch {
	case len(pos) == 1:
		paths = []string{snapshotPath(a, pos[0])}
	default:
		list, err := snapshot.List(a.snap.Dir, a.snap.Name)
		if err != nil {
			return err
		}
		if len(list) == 0 {
			return fmt.Errorf("verify: no snapshot named %s-* in %s", a.snap.Name, a.snap.Dir)
		}
		if !*all {
			list = list[:1]
		}
		for _, s := range list {
			paths = append(paths, s.Path)
		}
	}
	failed := 0
	var last error
	for _, p := range paths {
		if err := snapshot.Verify(ctx, p); err != nil {
			failed++
			last = err
			fmt.Fprintf(a.stdout, "FAILED %s: %v\n", filepath.Base(p), err)
			continue
		}
		fmt.Fprintf(a.stdout, "OK     %s\n", filepath.Base(p))
	}
	switch {
	case failed == 0:
		return nil
	case len(paths) == 1:
		return last
	}
	return fmt.Errorf("verify: %d of %d snapshots failed", failed, len(paths))
}
