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

	"snapvisor/config"
	"snapvisor/jobs"
	"snapvisor/snapshot"
	"snapvisor/store"
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
			"(SNAPVISOR_CONTROL_SOCKET answers), it asks that one and waits for the result; within\n"+
			"SNAPVISOR_MIN_INTERVAL of its previous run it gets that run's result. Otherwise (a\n"+
			"CronJob, docker run --rm IMAGE entrypoint snapshot) it runs the same pipeline by itself:\n"+
			"the hooks, the snapshot into SNAPVISOR_DIR, the pushes to SNAPVISOR_REMOTES and the\n"+
			"rotation, local and remote; with SNAPVISOR_DIR empty (streaming mode) the snapshot goes\n"+
			"straight to every remote and one line per remote is printed. Freezing needs the running\n"+
			"service: standalone, SNAPVISOR_FREEZE other than none is refused (exit 78).\n"+
			"The exit code tells success: a remote that did not get the snapshot is a failure.")
	asJSON := fs.Bool("json", false, "print the result as JSON")
	if _, done, err := parseArgs(fs, args, 0); done || err != nil {
		return err
	}
	if handled, err := snapshotViaSupervisor(ctx, a, *asJSON); handled {
		return err
	}
	return snapshotStandalone(ctx, a, *asJSON)
}

func cmdRestore(ctx context.Context, a *app, args []string) error {
	fs := newFlagSet(a, "restore", "restore [--discard-current] [--from URL] [NAME|latest]",
		"Restores a snapshot into the source paths (SNAPVISOR_SOURCE). NAME is a file in\n"+
			"SNAPVISOR_DIR or a path; latest (the default) is the newest snapshot that verifies.\n"+
			"With --from URL, NAME (a key as `list --remote URL` shows it) or the newest that\n"+
			"verifies is downloaded from that remote into a temporary directory beside the first\n"+
			"source, checked, restored and deleted. The checksum is verified and the archive\n"+
			"extracted beside each source before the current contents are swapped out to\n"+
			"<source>.pre-restore-<UTC time>.")
	discard := fs.Bool("discard-current", false, "delete the current contents after the swap instead of keeping them as <source>.pre-restore-<time>")
	from := fs.String("from", "", "restore from this remote `URL` (same forms and credentials as SNAPVISOR_REMOTES)")
	pos, done, err := parseArgs(fs, args, 1)
	if done || err != nil {
		return err
	}
	opts := snapshot.RestoreOptions{DiscardCurrent: *discard, Now: time.Now}
	if *from != "" {
		return restoreFrom(ctx, a, *from, pos, opts)
	}
	if a.snap.Dir == "" && (len(pos) == 0 || !strings.ContainsRune(pos[0], os.PathSeparator)) {
		return &usageError{"restore: SNAPVISOR_DIR is empty (streaming mode), so there are no local snapshots: use restore --from URL, or give a path"}
	}
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

func cmdList(ctx context.Context, a *app, args []string) error {
	fs := newFlagSet(a, "list", "list [--json] [--remote URL]",
		"Lists the complete snapshots in SNAPVISOR_DIR named SNAPVISOR_NAME-*, newest first;\n"+
			"with --remote URL, those on that remote (an archive counts once its .sha256 is there).")
	asJSON := fs.Bool("json", false, "print a JSON array of {name, path, time, size, compression, sha256}; with --remote, of {key, name, time, size, compression, modified, remote}")
	remoteURL := fs.String("remote", "", "list the snapshots on this remote `URL` (same forms and credentials as SNAPVISOR_REMOTES)")
	if _, done, err := parseArgs(fs, args, 0); done || err != nil {
		return err
	}
	if *remoteURL != "" {
		return listRemote(ctx, a, *remoteURL, *asJSON)
	}
	if a.snap.Dir == "" {
		return &usageError{"list: SNAPVISOR_DIR is empty (streaming mode), so there are no local snapshots: use list --remote URL"}
	}
	list, err := snapshot.List(a.snap.Dir, a.snap.Name)
	if err != nil {
		return err
	}
	return printList(a, *asJSON, list, func(s snapshot.Info) snapshotRow {
		return snapshotRow{s.Name, s.Time, s.Size, s.Compression, s.Encryption}
	})
}

// snapshotRow is one line of the `list` table, for a local or a remote snapshot.
type snapshotRow struct {
	name        string
	time        time.Time
	size        int64
	compression string
	encryption  string
}

// printList prints list as JSON (an empty array when there is none) or as the `list` table.
func printList[T any](a *app, asJSON bool, list []T, row func(T) snapshotRow) error {
	if asJSON {
		if list == nil {
			list = []T{}
		}
		return printJSON(a.stdout, list)
	}
	tw := newTabWriter(a.stdout)
	fmt.Fprintln(tw, "NAME\tTIME\tSIZE\tCOMPRESSION\tENCRYPTION")
	for _, s := range list {
		r := row(s)
		fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\n", r.name, r.time.Format(time.RFC3339), r.size, r.compression, r.encryption)
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
		// Every archive by its name, not List: one whose .sha256 is missing or
		// damaged must be reported as FAILED, not skipped.
		archives, err := snapshot.Archives(a.snap.Dir, a.snap.Name)
		if err != nil {
			return err
		}
		if len(archives) == 0 {
			return fmt.Errorf("verify: no snapshot named %s-* in %s", a.snap.Name, a.snap.Dir)
		}
		if !*all {
			archives = archives[:1]
		}
		paths = archives
	}
	failed := 0
	var last error
	for _, p := range paths {
		if err := snapshot.VerifyWith(ctx, p, a.snap.Encryption); err != nil {
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
		// The FAILED line is the report: exit with the error's code without printing it again.
		return &exitError{code: report(io.Discard, nil, last)}
	}
	return fmt.Errorf("verify: %d of %d snapshots failed", failed, len(paths))
}

// openRemote opens one remote for a subcommand, with the retry policy and
// time limit of the configuration. Its errors are configuration errors (exit
// 78) when the URL or the settings are wrong.
func openRemote(ctx context.Context, a *app, rawURL string) (store.Store, error) {
	cfg := a.cfg.Store
	cfg.Remotes = []string{rawURL}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	s, err := store.Open(ctx, rawURL, cfg, a.log)
	if err != nil {
		return nil, err
	}
	return store.WithRetry(s, cfg.Policy(), a.log), nil
}

func listRemote(ctx context.Context, a *app, rawURL string, asJSON bool) error {
	s, err := openRemote(ctx, a, rawURL)
	if err != nil {
		return err
	}
	defer s.Close()
	lctx, cancel := store.WithTimeout(ctx, s)
	defer cancel()
	list, err := store.ListSnapshots(lctx, s, a.snap.Name)
	if err != nil {
		return store.TimeoutError(lctx, err)
	}
	return printList(a, asJSON, list, func(r store.RemoteSnapshot) snapshotRow {
		return snapshotRow{r.Key, r.Time, r.Size, r.Compression, snapshot.EncryptionOf(r.Key)}
	})
}

// restoreFrom restores NAME, or the newest snapshot that verifies, from one remote.
func restoreFrom(ctx context.Context, a *app, rawURL string, pos []string, opts snapshot.RestoreOptions) error {
	key := ""
	if len(pos) == 1 && pos[0] != "latest" {
		key = pos[0]
		if strings.ContainsRune(key, '/') {
			return &usageError{fmt.Sprintf("restore --from: NAME is a key as `entrypoint list --remote URL` shows it, not a path: %q", key)}
		}
	}
	s, err := openRemote(ctx, a, rawURL)
	if err != nil {
		return err
	}
	defer s.Close()
	rs, err := jobs.RestoreFromRemotes(ctx, a.snap, []store.Store{s}, key, "", opts, a.log)
	if err != nil {
		return fmt.Errorf("restore --from %s: %w", s.Name(), err)
	}
	if rs.Key == "" {
		return fmt.Errorf("restore --from %s: no snapshot named %s-* there", s.Name(), a.snap.Name)
	}
	fmt.Fprintln(a.stdout, rs.Key)
	return nil
}

// snapshotStandalone takes one snapshot with no entrypoint running, through
// the pipeline of a scheduled run (jobs.Runner without a service: hooks run
// standalone, then the snapshot, the pushes and the rotation, local and
// remote). It prints the local path, or in streaming mode one line per remote
// that took the snapshot; a failed push is a failure.
func snapshotStandalone(ctx context.Context, a *app, asJSON bool) error {
	jc := a.cfg.Jobs
	if jc.Freeze == jobs.FreezePause || jc.Freeze == jobs.FreezeStop {
		e := config.Invalid("FREEZE", jc.Freeze, "none for a standalone `entrypoint snapshot`")
		e.Err = fmt.Errorf("no entrypoint answers on %s (SNAPVISOR_CONTROL_SOCKET), and pausing or stopping the service needs the entrypoint that runs it: "+
			"run `entrypoint snapshot` inside that container (docker exec, kubectl exec), or set SNAPVISOR_FREEZE=none for this command", jc.ControlSocket)
		return e
	}
	if a.snap.Dir == "" && len(a.cfg.Store.URLs()) == 0 {
		return config.Invalid("DIR", "", "a snapshot directory, or SNAPVISOR_DIR empty together with SNAPVISOR_REMOTES (streaming mode)")
	}
	var stores []store.Store
	if len(a.cfg.Store.URLs()) > 0 {
		if err := a.cfg.Store.Validate(); err != nil {
			return err
		}
		var err error
		stores, err = store.OpenAll(ctx, a.cfg.Store, nil, a.log)
		defer func() { _ = store.CloseAll(stores) }()
		var ce *config.Error
		if errors.As(err, &ce) {
			return err
		}
		if err != nil {
			// Reported again as a failed push to that remote.
			a.log.Warn("some remotes could not be opened", zap.Error(err))
		}
	}
	// The hooks see what they see in a scheduled run: the environment minus
	// snapvisor's secrets, the stores' credentials included.
	c := *a.cfg
	c.Jobs.Backup = true
	env := serviceEnv(os.Environ(), c.serviceSecrets())
	runner := jobs.NewRunner(jc, a.snap, a.cfg.Policy, nil, env, a.log, nil)
	runner.SetStores(stores)
	// The remotes' leases are renewed while the run lasts (a push may
	// outlast SNAPVISOR_LEASE_TTL) and released after it: a CronJob's next
	// pod is another writer, which must not wait for the TTL.
	lctx, stopLeases := context.WithCancel(ctx)
	kept := make(chan struct{})
	go func() {
		defer close(kept)
		runner.KeepLeases(lctx)
	}()
	res, err := runner.Trigger(ctx, jobs.ReasonStandalone)
	stopLeases()
	<-kept                                     // one round at most, bounded per remote
	runner.ReleaseLeases(context.Background()) // bounded per remote
	if err != nil {
		return err
	}
	if asJSON {
		if err := json.NewEncoder(a.stdout).Encode(res); err != nil {
			return err
		}
	} else if res.OK() {
		if a.snap.Dir != "" {
			fmt.Fprintln(a.stdout, filepath.Join(a.snap.Dir, res.Snapshot))
		}
		for _, r := range res.Remotes {
			if r.Error == "" && a.snap.Dir == "" {
				fmt.Fprintf(a.stdout, "%s/%s\n", strings.TrimSuffix(r.Remote, "/"), res.Snapshot)
			}
		}
	}
	return resultError(res)
}

// resultError is the error (exit 1) of a snapshot's result: no snapshot, or a
// remote that did not get it.
func resultError(res jobs.Result) error {
	switch {
	case res.Skipped != "":
		return fmt.Errorf("snapshot skipped: %s", res.Skipped)
	case !res.OK():
		return fmt.Errorf("snapshot failed: %s", res.Error)
	}
	for _, r := range res.Remotes {
		if r.Error != "" {
			return fmt.Errorf("snapshot %s is on %d of %d remotes: %s: %s", res.Snapshot, countOK(res.Remotes), len(res.Remotes), r.Remote, r.Error)
		}
	}
	return nil
}

func countOK(results []jobs.PushResult) int {
	n := 0
	for _, r := range results {
		if r.Error == "" {
			n++
		}
	}
	return n
}
