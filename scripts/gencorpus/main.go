// Command gencorpus writes the deterministic mixed benchmark corpus used by
// scripts/bench-snapshot.sh: text-like files (log and JSON lines drawn from a
// seeded vocabulary), incompressible random files, zero-filled files and many
// small text files. The same -scale always gives byte-identical output.
//
//	go run ./scripts/gencorpus -out DIR [-scale N]
//
// At -scale 1 it writes about 470 MiB. With -layout flat it writes the
// corpus of the restic benchmark (scripts/bench-restic.sh) instead: 64 x 4 MiB
// log-like text, 32 x 4 MiB random, one 64 MiB file of zeros (448 MiB at
// -scale 1), files of exact sizes.
//
//	go run ./scripts/gencorpus -out DIR -layout flat [-scale N]
package main

import (
	"bufio"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
)

const mib = 1 << 20

func main() {
	out := flag.String("out", "", "directory to create (must not exist)")
	scale := flag.Int("scale", 1, "multiply every size by this")
	layout := flag.String("layout", "mixed", "mixed: the snapshot benchmark's corpus; flat: the restic benchmark's")
	flag.Parse()
	if *out == "" || *scale < 1 || (*layout != "mixed" && *layout != "flat") {
		fmt.Fprintln(os.Stderr, "usage: gencorpus -out DIR [-scale N] [-layout mixed|flat]")
		os.Exit(2)
	}
	if err := generate(*out, *scale, *layout == "flat"); err != nil {
		fmt.Fprintln(os.Stderr, "gencorpus:", err)
		os.Exit(1)
	}
}

func generate(out string, scale int, flat bool) error {
	if _, err := os.Stat(out); err == nil {
		return fmt.Errorf("%s exists", out)
	}
	tmp := out + ".tmp"
	if err := os.RemoveAll(tmp); err != nil {
		return err
	}
	rng := rand.New(rand.NewPCG(42, uint64(scale)))
	words := vocabulary(rng, 4000)
	type spec struct {
		dir   string
		n     int
		size  int64
		write func(w io.Writer, size int64, rng *rand.Rand) error
	}
	text := func(w io.Writer, size int64, rng *rand.Rand) error { return textLike(w, size, rng, words) }
	specs := []spec{
		{"logs", 12 * scale, 20 * mib, text},       // 240 MiB text-like
		{"blobs", 10 * scale, 10 * mib, random},    // 100 MiB random
		{"images", 4 * scale, 16 * mib, zeros},     // 64 MiB zeros
		{"small", 2000 * scale, 8 << 10, text},     // ~16 MiB of small files
		{"mixed", 4 * scale, 4 * mib, mixedBlocks}, // 16 MiB interleaved
	}
	jitter := true
	if flat {
		specs = []spec{
			{"logs", 64 * scale, 4 * mib, text},           // 256 MiB text-like
			{"blobs", 32 * scale, 4 * mib, random},        // 128 MiB random
			{"images", 1, 64 * int64(scale) * mib, zeros}, // 64 MiB zeros, one file
		}
		jitter = false
	}
	for _, s := range specs {
		for i := 0; i < s.n; i++ {
			p := filepath.Join(tmp, s.dir, fmt.Sprintf("%03d", i/500), s.dir+"-"+strconv.Itoa(i)+".dat")
			if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
				return err
			}
			f, err := os.Create(p)
			if err != nil {
				return err
			}
			bw := bufio.NewWriterSize(f, 1<<20)
			size := s.size
			if jitter {
				size += int64(rng.IntN(int(s.size/8) + 1))
			}
			if err := s.write(bw, size, rng); err != nil {
				f.Close()
				return err
			}
			if err := bw.Flush(); err != nil {
				f.Close()
				return err
			}
			if err := f.Close(); err != nil {
				return err
			}
		}
	}
	return os.Rename(tmp, out)
}

func vocabulary(rng *rand.Rand, n int) []string {
	const letters = "etaoinshrdlucmfwypvbgkqjxz"
	out := make([]string, n)
	for i := range out {
		l := 2 + rng.IntN(9)
		b := make([]byte, l)
		for j := range b {
			// Skewed letter choice: text-like entropy.
			b[j] = letters[min(rng.IntN(len(letters)), rng.IntN(len(letters)))]
		}
		out[i] = string(b)
	}
	return out
}

// textLike writes log and JSON lines with Zipf-distributed words and varying numbers.
func textLike(w io.Writer, size int64, rng *rand.Rand, words []string) error {
	z := rand.NewZipf(rng, 1.1, 2, uint64(len(words)-1))
	levels := []string{"INFO", "INFO", "INFO", "DEBUG", "WARN", "ERROR"}
	var line []byte
	var written int64
	ts := int64(1700000000)
	for written < size {
		line = line[:0]
		ts += int64(rng.IntN(3))
		if rng.IntN(4) == 0 {
			line = fmt.Appendf(line, `{"ts":%d,"level":%q,"user":%d,"path":"/%s/%s","status":%d,"bytes":%d,"msg":"`,
				ts, levels[rng.IntN(len(levels))], rng.IntN(100000), words[z.Uint64()], words[z.Uint64()], 200+rng.IntN(4)*100, rng.IntN(1<<20))
		} else {
			line = fmt.Appendf(line, "%d %s service=%s req=%08x latency=%dms ", ts, levels[rng.IntN(len(levels))], words[z.Uint64()%50], rng.Uint32(), rng.IntN(2000))
		}
		for k := 3 + rng.IntN(12); k > 0; k-- {
			line = append(line, words[z.Uint64()]...)
			line = append(line, ' ')
		}
		line = append(line, '\n')
		if rem := size - written; int64(len(line)) > rem {
			line = line[:rem]
		}
		n, err := w.Write(line)
		written += int64(n)
		if err != nil {
			return err
		}
	}
	return nil
}

func random(w io.Writer, size int64, rng *rand.Rand) error {
	buf := make([]byte, 64<<10)
	for size > 0 {
		for i := 0; i+8 <= len(buf); i += 8 {
			v := rng.Uint64()
			for j := 0; j < 8; j++ {
				buf[i+j] = byte(v >> (8 * j))
			}
		}
		n := min(int64(len(buf)), size)
		if _, err := w.Write(buf[:n]); err != nil {
			return err
		}
		size -= n
	}
	return nil
}

func zeros(w io.Writer, size int64, _ *rand.Rand) error {
	buf := make([]byte, 64<<10)
	for size > 0 {
		n := min(int64(len(buf)), size)
		if _, err := w.Write(buf[:n]); err != nil {
			return err
		}
		size -= n
	}
	return nil
}

// mixedBlocks alternates 64 KiB blocks of random bytes, zeros and repeated text.
func mixedBlocks(w io.Writer, size int64, rng *rand.Rand) error {
	for size > 0 {
		n := min(int64(64<<10), size)
		var err error
		switch rng.IntN(3) {
		case 0:
			err = random(w, n, rng)
		case 1:
			err = zeros(w, n, rng)
		default:
			b := make([]byte, n)
			for i := range b {
				b[i] = "snapvisor mixed block "[i%22]
			}
			_, err = w.Write(b)
		}
		if err != nil {
			return err
		}
		size -= n
	}
	return nil
}
