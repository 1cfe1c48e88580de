package snapshot

import (
	"bytes"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"

	"github.com/klauspost/compress/zstd"
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
