// Command benchremote uploads one local snapshot to a remote exactly as the
// entrypoint does after each snapshot (store.Open, the retry wrapper with the
// configured policy, remote.Push: archive, size check, .sha256 last, read back),
// or downloads one as a restore does (remote.Fetch: .sha256, archive, checksum),
// and prints the time it took. scripts/bench-remote.sh runs it side by side
// with `rclone copy` and `redis-cli` against the same servers and measures its
// peak RSS.
//
//	benchremote ARCHIVE URL
//	benchremote -fetch URL KEY DIR
//
// ARCHIVE is a snapshot file (<name>-<UTC time>.tar[.gz|.zst]) with its
// .sha256 beside it; URL and credentials are as for SNAPVISOR_REMOTES.
// -fetch downloads the snapshot KEY into DIR as a restore does (remote.Fetch:
// archive and .sha256, checksum checked).
package main

import (
	"context"
	"fmt"
	"os"
	"time"

	"snapvisor/config"
	"snapvisor/remote"
	"snapvisor/store"
)

func main() {
	var err error
	switch {
	case len(os.Args) == 3:
		err = run(os.Args[1], os.Args[2])
	case len(os.Args) == 5 && os.Args[1] == "-fetch":
		err = fetch(os.Args[2], os.Args[3], os.Args[4])
	default:
		fmt.Fprintln(os.Stderr, "usage: benchremote ARCHIVE URL | benchremote -fetch URL KEY DIR")
		os.Exit(64)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "benchremote:", err)
		os.Exit(1)
	}
}

// open opens url as the entrypoint does, with the retry wrapper and the time limit.
func open(url string) (remote.Remote, func(), error) {
	var cfg store.Config
	if err := config.Load(&cfg); err != nil {
		return remote.Remote{}, nil, err
	}
	cfg.Remotes = []string{url}
	if err := cfg.Validate(); err != nil {
		return remote.Remote{}, nil, err
	}
	s, err := store.Open(context.Background(), url, cfg, nil)
	if err != nil {
		return remote.Remote{}, nil, err
	}
	return remote.Remote{Store: store.WithRetry(s, cfg.Policy(), nil), Timeout: cfg.Timeout}, func() { s.Close() }, nil
}

func fetch(url, key, dir string) error {
	r, closeStore, err := open(url)
	if err != nil {
		return err
	}
	defer closeStore()
	start := time.Now()
	ctx, cancel := r.WithTimeout(context.Background())
	defer cancel()
	p, err := remote.Fetch(ctx, r, key, dir)
	if err = remote.TimeoutError(ctx, err); err != nil {
		return err
	}
	d := time.Since(start)
	fi, err := os.Stat(p)
	if err != nil {
		return err
	}
	fmt.Printf("%s %d bytes in %.3f s (%.1f MiB/s)\n", key, fi.Size(), d.Seconds(), float64(fi.Size())/(1<<20)/d.Seconds())
	return nil
}

func run(archive, url string) error {
	r, closeStore, err := open(url)
	if err != nil {
		return err
	}
	defer closeStore()
	start := time.Now()
	ctx, cancel := r.WithTimeout(context.Background())
	defer cancel()
	rs, err := remote.Push(ctx, r, archive)
	err = remote.TimeoutError(ctx, err)
	if err != nil {
		return err
	}
	d := time.Since(start)
	fmt.Printf("%s %d bytes in %.3f s (%.1f MiB/s)\n", rs.Key, rs.Size, d.Seconds(), float64(rs.Size)/(1<<20)/d.Seconds())
	return nil
}
