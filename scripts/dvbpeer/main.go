// Command dvbpeer is the archive step of docker-volume-backup
// (github.com/offen/docker-volume-backup, MPL-2.0), the Go peer of the
// snapshot benchmark (scripts/bench-snapshot.sh). archive.go and
// errwrap/wrap.go are its files at commit ae3672f3023f295601e81f1ffbce22fb957c2507, unchanged but for
// errwrap's import path (its internal package cannot be imported from here);
// this file does what its create_archive.go does before calling
// createArchive: walk BACKUP_SOURCES into the list of paths (no exclusion
// set) and archive them into the file named by the first argument with
// BACKUP_COMPRESSION (gz, zst; default gz) and GZIP_PARALLELISM (default 1,
// as docker-volume-backup's). The module proxy serves no version of
// docker-volume-backup, so its whole binary cannot be built here; its
// upload, rotation and notification steps play no part in the benchmark.
//
//	BACKUP_SOURCES=DIR GZIP_PARALLELISM=2 dvbpeer OUT.tar.gz
package main

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "dvbpeer:", err)
		os.Exit(1)
	}
}

func run() error {
	if len(os.Args) != 2 {
		return fmt.Errorf("usage: BACKUP_SOURCES=DIR [BACKUP_COMPRESSION=gz|zst] [GZIP_PARALLELISM=N] dvbpeer OUT")
	}
	src := os.Getenv("BACKUP_SOURCES")
	if src == "" {
		src = "/backup"
	}
	algo := os.Getenv("BACKUP_COMPRESSION")
	if algo == "" {
		algo = "gz"
	}
	par := 1
	if v := os.Getenv("GZIP_PARALLELISM"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			return fmt.Errorf("GZIP_PARALLELISM=%q: want a whole number", v)
		}
		par = n
	}
	backupPath, err := filepath.Abs(stripTrailingSlashes(src))
	if err != nil {
		return err
	}
	var files []string
	if err := filepath.WalkDir(backupPath, func(path string, _ fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		files = append(files, path)
		return nil
	}); err != nil {
		return err
	}
	return createArchive(files, src, os.Args[1], algo, par)
}
