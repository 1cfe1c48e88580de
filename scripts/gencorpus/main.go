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
//
// With -layout config it writes the source of the git format benchmark
// (scripts/bench-git.sh): a controller's configuration and PKI, 2,000 small
// files of exactly 20 MiB in all (x N at -scale N), in 40 directories:
// YAML-like text files of 1-30 KiB under etc/svc-NN (three quarters of the
// files) and PEM-like base64 files of 1-6 KiB under pki/ca-NN.
//
//	go run ./scripts/gencorpus -out DIR -layout config [-scale N]
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
	layout := flag.String("layout", "mixed", "mixed: the snapshot benchmark's corpus; flat: the restic benchmark's; config: the git benchmark's")
	flag.Parse()
	if *out == "" || *scale < 1 || (*layout != "mixed" && *layout != "flat" && *layout != "config") {
		fmt.Fprintln(os.Stderr, "usage: gencorpus -out DIR [-scale N] [-layout mixed|flat|config]")
		os.Exit(2)
	}
	gen := func() error { return generate(*out, *scale, *layout == "flat") }
	if *layout == "config" {
		gen = func() error { return generateConfig(*out, *scale) }
	}
	if err := gen(); err != nil {
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

// generateConfig writes the config layout (see the package comment): 2000
// files per scale unit, of 20 MiB in all per unit, sizes drawn at random
// and then scaled so that the total is exact (the last file takes the
// rounding).
func generateConfig(out string, scale int) error {
	if _, err := os.Stat(out); err == nil {
		return fmt.Errorf("%s exists", out)
	}
	tmp := out + ".tmp"
	if err := os.RemoveAll(tmp); err != nil {
		return err
	}
	rng := rand.New(rand.NewPCG(15, uint64(scale)))
	words := vocabulary(rng, 2000)
	const perScale, total, pkiEvery, svcDirs, caDirs = 2000, 20 * mib, 4, 28, 12
	n := perScale * scale
	type file struct {
		path string
		size int64
		pem  bool
	}
	files := make([]file, n)
	var sum int64
	for i := range files {
		f := &files[i]
		if f.pem = i%pkiEvery == 0; f.pem {
			k := i / pkiEvery
			f.path = fmt.Sprintf("pki/ca-%02d/cert-%04d.pem", k%caDirs, i)
			f.size = 1<<10 + int64(rng.IntN(5<<10))
		} else {
			k := i - i/pkiEvery - 1
			ext := [...]string{"yaml", "conf"}[rng.IntN(2)]
			f.path = fmt.Sprintf("etc/svc-%02d/conf-%04d.%s", k%svcDirs, i, ext)
			f.size = 1<<10 + int64(rng.IntN(29<<10))
		}
		sum += f.size
	}
	want := int64(total) * int64(scale)
	var written int64
	for i := range files {
		f := &files[i]
		if i == len(files)-1 {
			f.size = want - written
		} else {
			f.size = f.size * want / sum
		}
		written += f.size
		p := filepath.Join(tmp, f.path)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return err
		}
		w, err := os.Create(p)
		if err != nil {
			return err
		}
		bw := bufio.NewWriter(w)
		if f.pem {
			err = pemLike(bw, f.size, rng)
		} else {
			err = configLike(bw, f.size, rng, words)
		}
		if err == nil {
			err = bw.Flush()
		}
		if cerr := w.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return err
		}
	}
	return os.Rename(tmp, out)
}

// pemLike writes size bytes that look like a PEM certificate: a header,
// lines of 64 base64 characters of random bytes (the last one shorter), a
// footer; cut at size when size is below the header and footer.
func pemLike(w io.Writer, size int64, rng *rand.Rand) error {
	const b64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
	head, foot := "-----BEGIN CERTIFICATE-----\n", "-----END CERTIFICATE-----\n"
	b := make([]byte, 0, size+int64(len(head)+len(foot)))
	b = append(b, head...)
	for rest := size - int64(len(head)+len(foot)); rest > 0; {
		l := min(65, rest)
		for j := int64(1); j < l; j++ {
			b = append(b, b64[rng.IntN(64)])
		}
		b = append(b, '\n')
		rest -= l
	}
	b = append(b, foot...)
	_, err := w.Write(b[:size])
	return err
}

// configLike writes size bytes of YAML-like configuration: nested keys
// with words, numbers, durations, addresses and quoted strings as values.
func configLike(w io.Writer, size int64, rng *rand.Rand, words []string) error {
	z := rand.NewZipf(rng, 1.2, 2, uint64(len(words)-1))
	var b []byte
	depth := 0
	for int64(len(b)) < size {
		switch r := rng.IntN(10); {
		case r == 0 && depth < 3:
			b = fmt.Appendf(b, "%*s%s:\n", 2*depth, "", words[z.Uint64()])
			depth++
			continue
		case r == 1 && depth > 0:
			depth--
		}
		b = fmt.Appendf(b, "%*s%s_%s: ", 2*depth, "", words[z.Uint64()], words[z.Uint64()])
		switch rng.IntN(5) {
		case 0:
			b = fmt.Appendf(b, "%d\n", rng.IntN(65536))
		case 1:
			b = fmt.Appendf(b, "%ds\n", 1+rng.IntN(600))
		case 2:
			b = fmt.Appendf(b, "10.%d.%d.%d:%d\n", rng.IntN(256), rng.IntN(256), rng.IntN(256), 1024+rng.IntN(60000))
		case 3:
			b = fmt.Appendf(b, "%q\n", words[z.Uint64()]+" "+words[z.Uint64()]+" "+words[z.Uint64()])
		default:
			b = fmt.Appendf(b, "%s\n", words[z.Uint64()])
		}
	}
	_, err := w.Write(b[:size])
	return err
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
