package snapshot

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"snapvisor/internal/testutil"
)

// TestZlibSize_Pigz holds zlibSize to the size pigz (zlib) writes at every
// level, on text, source code, a binary, random bytes and zeros: pigz -LEVEL
// of one block is a 10-byte gzip header, zlib's deflate stream and an 8-byte
// trailer; zlibSize counts the stream ended by a sync flush where pigz ends
// it with an empty final block, a few bytes apart.
func TestZlibSize_Pigz(t *testing.T) {
	testutil.RequireTool(t, "pigz")
	rng := rand.New(rand.NewPCG(1, 2))
	random := make([]byte, 100<<10)
	for i := range random {
		random[i] = byte(rng.Uint32())
	}
	var logs bytes.Buffer
	for i := 0; logs.Len() < 120<<10; i++ {
		fmt.Fprintf(&logs, "2026-11-28T16:%02d:%02d.%03dZ level=info msg=\"request done\" path=/api/v1/items/%d status=%d ms=%d\n",
			i/60%60, i%60, rng.IntN(1000), rng.IntN(5000), []int{200, 200, 200, 404, 500}[rng.IntN(5)], rng.IntN(900))
	}
	source := readAll(t, "blockwriter.go", "create.go", "restore.go", "zlibsize.go")
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	binary := readAll(t, exe)[:200<<10]
	inputs := map[string][]byte{
		"logs": logs.Bytes(), "source": source, "binary": binary, "random": random,
		"zeros": make([]byte, 90<<10), "short": []byte("hello, hello, hello"),
	}
	for name, in := range inputs {
		for level := 1; level <= 9; level++ {
			t.Run(fmt.Sprintf("%s/%d", name, level), func(t *testing.T) {
				cmd := exec.Command("pigz", fmt.Sprintf("-%d", level), "-n", "-c", "-b", "1024")
				cmd.Stdin = bytes.NewReader(in)
				out, err := cmd.Output()
				if err != nil {
					t.Fatal(err)
				}
				want := len(out) - 18
				got := zlibSize(nil, in, level)
				if d := got - want; d < -8 || d > 8 {
					t.Errorf("zlibSize of %d bytes at level %d: %d, pigz's stream %d (%+d)", len(in), level, got, want, d)
				}
			})
		}
	}
}

func readAll(t *testing.T, names ...string) []byte {
	t.Helper()
	var b []byte
	for _, n := range names {
		d, err := os.ReadFile(filepath.Clean(n))
		if err != nil {
			t.Fatal(err)
		}
		b = append(b, d...)
	}
	return b
}

// TestHuffmanLengths_Limit: counts that would make a Huffman code deeper
// than the limit (Fibonacci counts) get lengths within it that still form a
// prefix code (Kraft sum at most 1), the more frequent symbols no longer.
func TestHuffmanLengths_Limit(t *testing.T) {
	freq := make([]int, 30)
	a, b := 1, 1
	for i := range freq {
		freq[i] = a
		a, b = b, a+b
	}
	for _, limit := range []int{7, 15} {
		lens := make([]uint8, len(freq))
		huffmanLengths(freq, lens, limit)
		kraft := 0.0
		for i, l := range lens {
			if l == 0 || int(l) > limit {
				t.Fatalf("limit %d: symbol %d has length %d", limit, i, l)
			}
			kraft += 1 / float64(uint64(1)<<l)
			if i > 0 && lens[i] > lens[i-1] {
				t.Errorf("limit %d: symbol %d (count %d) is longer than symbol %d (count %d)", limit, i, freq[i], i-1, freq[i-1])
			}
		}
		if kraft > 1 {
			t.Errorf("limit %d: lengths %v are no prefix code (Kraft sum %.4f)", limit, lens, kraft)
		}
	}
}
