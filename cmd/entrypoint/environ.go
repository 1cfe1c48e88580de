//go:build !initonly

package main

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
)

// scrubEnviron takes the named variables out of this process's environment:
// out of Go's copy (os.Unsetenv) and out of the original block on the
// initial stack, the one the kernel shows in /proc/PID/environ, where each
// value is overwritten with NUL bytes (the name stays, with an empty value).
//
// Overwriting the block is safe: the Go runtime copied every variable out
// of it at start-up (runtime goenvs_unix, gostring) and syscall works on
// that copy, so nothing in the process reads the block again. There is no
// library for this; it goes through /proc/self/mem, which writes our own
// memory without unsafe pointers to memory Go does not own.
func scrubEnviron(names []string) error {
	want := map[string]bool{}
	for _, n := range names {
		if _, ok := os.LookupEnv(n); ok {
			want[n] = true
			if err := os.Unsetenv(n); err != nil {
				return fmt.Errorf("unset %s: %w", n, err)
			}
		}
	}
	if len(want) == 0 {
		return nil
	}
	start, end, err := environBlock()
	if err != nil {
		return err
	}
	mem, err := os.OpenFile("/proc/self/mem", os.O_RDWR, 0)
	if err != nil {
		return fmt.Errorf("scrub the environment block: %w", err)
	}
	defer mem.Close()
	block := make([]byte, end-start)
	if _, err := mem.ReadAt(block, int64(start)); err != nil {
		return fmt.Errorf("scrub the environment block: read: %w", err)
	}
	for off := 0; off < len(block); {
		n := bytes.IndexByte(block[off:], 0)
		if n < 0 {
			n = len(block) - off
		}
		if k, v, ok := bytes.Cut(block[off:off+n], []byte("=")); ok && want[string(k)] && len(v) > 0 {
			at := int64(start) + int64(off+len(k)+1)
			if _, err := mem.WriteAt(make([]byte, len(v)), at); err != nil {
				return fmt.Errorf("scrub %s in the environment block: %w", k, err)
			}
		}
		off += n + 1
	}
	return nil
}

// environBlock returns where the environment block the process was started
// with lies: fields 50 and 51 (env_start, env_end) of /proc/self/stat.
func environBlock() (start, end uint64, err error) {
	b, err := os.ReadFile("/proc/self/stat")
	if err != nil {
		return 0, 0, fmt.Errorf("find the environment block: %w", err)
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')') // comm may contain spaces and parens
	if i < 0 {
		return 0, 0, errors.New("find the environment block: /proc/self/stat has no comm field")
	}
	f := strings.Fields(s[i+1:]) // f[0] is field 3 (state)
	if len(f) < 49 {
		return 0, 0, errors.New("find the environment block: /proc/self/stat has no env_start/env_end (Linux before 3.5)")
	}
	start, err1 := strconv.ParseUint(f[47], 10, 64)
	end, err2 := strconv.ParseUint(f[48], 10, 64)
	if err1 != nil || err2 != nil || end <= start || end-start > 1<<30 {
		return 0, 0, fmt.Errorf("find the environment block: bad env_start/env_end %q %q in /proc/self/stat", f[47], f[48])
	}
	return start, end, nil
}
