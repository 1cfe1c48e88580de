package snapshot

import (
	"bytes"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/klauspost/compress/zstd"

	"snapvisor/internal/testutil"
)

// blockTestData is compressible text with stretches of zeros and of
// incompressible bytes, so blocks take every deflate and zstd path.
func blockTestData(n int) []byte {
	var b bytes.Buffer
	x := uint64(88172645463325252)
	for i := 0; b.Len() < n; i++ {
		switch i % 5 {
		case 0, 1, 2:
			fmt.Fprintf(&b, "%d INFO service=api latency=%dms path=/v1/items/%d\n", 1700000000+i, i%977, i%131)
		case 3:
			b.Write(make([]byte, 257))
		default:
			for j := 0; j < 300; j++ {
				x ^= x << 13
				x ^= x >> 7
				x ^= x << 17
				b.WriteByte(byte(x))
			}
		}
	}
	return b.Bytes()[:n]
}

func decodeAll(t *testing.T, compression string, r io.Reader) []byte {
	t.Helper()
	switch compression {
	case CompressionGzip:
		z, err := gzip.NewReader(r) // the standard library, not ours
		must(t, err)
		z.Multistream(false)
		out, err := io.ReadAll(z)
		must(t, err)
		return out
	default:
		z, err := zstd.NewReader(r)
		must(t, err)
		defer z.Close()
		out, err := io.ReadAll(z)
		must(t, err)
		return out
	}
}

func TestBlockWriter_RoundTrip(t *testing.T) {
	const bs = 64 << 10
	data := blockTestData(7*bs/2 + 123)
	for _, tc := range []struct {
		compression string
		level       int
	}{{CompressionGzip, 1}, {CompressionGzip, 6}, {CompressionGzip, 9}, {CompressionZstd, 3}, {CompressionZstd, 19}} {
		t.Run(fmt.Sprintf("%s-%d", tc.compression, tc.level), func(t *testing.T) {
			for _, size := range []int{0, 1, bs - 1, bs, 2 * bs, len(data)} {
				var first []byte
				// The last run reads into space(), as the walker does: no copy, same bytes.
				for i, workers := range []int{1, 3, 2} {
					viaSpace := i == 2
					var codec blockCodec
					var err error
					if tc.compression == CompressionGzip {
						codec, err = gzipCodec(tc.level)
					} else {
						codec, err = zstdCodec(tc.level, workers, bs)
					}
					must(t, err)
					var out bytes.Buffer
					z := newBlockWriter(&out, codec, workers, bs)
					for p := data[:size]; len(p) > 0; { // odd write sizes straddle blocks
						n := min(len(p), 10007)
						q := p[:n]
						if viaSpace {
							buf := z.space()
							q = buf[:copy(buf, q)]
						}
						_, err := z.Write(q)
						must(t, err)
						p = p[len(q):]
					}
					must(t, z.Close())
					if got := decodeAll(t, tc.compression, bytes.NewReader(out.Bytes())); !bytes.Equal(got, data[:size]) {
						t.Fatalf("size %d, %d workers: decoded %d bytes differing from the %d written", size, workers, len(got), size)
					}
					// The same input gives the same bytes whatever the worker count.
					if first == nil {
						first = out.Bytes()
					} else if !bytes.Equal(first, out.Bytes()) {
						t.Fatalf("size %d: output differs between 1 and %d workers (via space: %v)", size, workers, viaSpace)
					}
				}
			}
		})
	}
}

// failingWriter fails every write after the first n bytes.
type failingWriter struct{ n int }

func (f *failingWriter) Write(p []byte) (int, error) {
	if len(p) > f.n {
		return 0, errors.New("device on fire")
	}
	f.n -= len(p)
	return len(p), nil
}

func TestBlockWriter_WriteError(t *testing.T) {
	const bs = 64 << 10
	data := blockTestData(40 * bs)
	for _, compression := range []string{CompressionGzip, CompressionZstd} {
		t.Run(compression, func(t *testing.T) {
			for _, room := range []int{0, 5, 3 * bs} { // in the header, the first block, later
				var codec blockCodec
				var err error
				if compression == CompressionGzip {
					codec, err = gzipCodec(6)
				} else {
					codec, err = zstdCodec(3, 2, bs)
				}
				must(t, err)
				z := newBlockWriter(&failingWriter{n: room}, codec, 2, bs)
				var werr error
				for p := data; len(p) > 0 && werr == nil; p = p[min(len(p), bs/3):] {
					_, werr = z.Write(p[:min(len(p), bs/3)])
				}
				cerr := z.Close() // returns, stops the goroutines, and reports the failure
				if cerr == nil || !strings.Contains(cerr.Error(), "device on fire") {
					t.Fatalf("room %d: Close = %v (Write: %v), want the writer's error", room, cerr, werr)
				}
				if _, err := z.Write([]byte("x")); err == nil {
					t.Fatalf("room %d: Write after Close succeeded", room)
				}
			}
		})
	}
}

func TestGzipCodec_BadLevel(t *testing.T) {
	for _, level := range []int{0, 10, -1} {
		if _, err := gzipCodec(level); err == nil {
			t.Errorf("gzipCodec(%d) succeeded", level)
		}
	}
}

// TestGzipCodec_ZlibSize: a level means the size pigz gives the same data
// (within about 1%, here on Go source and log-like text, apart and mixed;
// within 3% on machine code, which no encoder level compresses as well as zlib),
// and the archive depends on the bytes only: the same with 1 and 3 workers.
func TestGzipCodec_ZlibSize(t *testing.T) {
	testutil.RequireTool(t, "pigz")
	rng := rand.New(rand.NewPCG(7, 8))
	var logs bytes.Buffer
	for i := 0; logs.Len() < 3<<20; i++ {
		fmt.Fprintf(&logs, "2026-11-28T16:%02d:%02d.%03dZ level=info msg=\"request done\" path=/api/v1/items/%d status=%d ms=%d user=u%d\n",
			i/60%60, i%60, rng.IntN(1000), rng.IntN(5000), []int{200, 200, 200, 404, 500}[rng.IntN(5)], rng.IntN(900), rng.IntN(300))
	}
	var source []byte
	for _, dir := range []string{".", "../jobs", "../store", "../restic"} {
		names, _ := filepath.Glob(filepath.Join(dir, "*.go"))
		for _, n := range names {
			b, err := os.ReadFile(n)
			if err != nil {
				t.Fatal(err)
			}
			source = append(source, b...)
		}
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	bin, err := os.ReadFile(exe)
	if err != nil {
		t.Fatal(err)
	}
	bin = bin[:min(len(bin), 3<<20)]
	inputs := map[string][]byte{"logs": logs.Bytes(), "source": source, "binary": bin,
		"mixed": slices.Concat(source[:len(source)/2], logs.Bytes()[:1<<20], source[len(source)/2:])}
	for name, in := range inputs {
		t.Run(name, func(t *testing.T) {
			cmd := exec.Command("pigz", "-6", "-n", "-c")
			cmd.Stdin = bytes.NewReader(in)
			ref, err := cmd.Output()
			if err != nil {
				t.Fatal(err)
			}
			var outs [][]byte
			for _, workers := range []int{1, 3} {
				codec, err := gzipCodec(6)
				if err != nil {
					t.Fatal(err)
				}
				var out bytes.Buffer
				z := newBlockWriter(&out, codec, workers, gzipBlockSize)
				if _, err := z.Write(in); err != nil {
					t.Fatal(err)
				}
				if err := z.Close(); err != nil {
					t.Fatal(err)
				}
				outs = append(outs, out.Bytes())
			}
			if !bytes.Equal(outs[0], outs[1]) {
				t.Errorf("1 and 3 workers wrote different archives (%d, %d bytes)", len(outs[0]), len(outs[1]))
			}
			r, err := gzip.NewReader(bytes.NewReader(outs[0]))
			if err != nil {
				t.Fatal(err)
			}
			back, err := io.ReadAll(r)
			if err != nil || !bytes.Equal(back, in) {
				t.Fatalf("round trip: %v, equal %v", err, bytes.Equal(back, in))
			}
			ratio := float64(len(outs[0])) / float64(len(ref))
			t.Logf("%s: %d bytes, pigz -6 %d: %.4fx", name, len(outs[0]), len(ref), ratio)
			// Within 1% on text; source code, where level 6 leaves out the
			// encoder level that would reach zlib's size (gzipLadder), ends
			// about 1% above it.
			if name != "binary" && (ratio < 0.99 || ratio > 1.015) {
				t.Errorf("%s: %d bytes against pigz -6's %d (%.4fx): want within -1%%..+1.5%%", name, len(outs[0]), len(ref), ratio)
			}
			if name == "binary" && ratio > 1.03 {
				// No level of the encoder reaches zlib's size on machine code
				// (README, compression levels); it must stay close.
				t.Errorf("binary: %.4fx pigz -6's size: want at most 1.03x", ratio)
			}
		})
	}
}
