package snapshot

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"slices"
	"sync"

	"github.com/klauspost/compress/flate"
	"github.com/klauspost/compress/zstd"
)

// blockWriter is a parallel compressor whose memory does not grow with the
// core count or the data size: the input is cut into blocks of a fixed size
// that a fixed number of workers compress independently (a codec may prime a
// block with the tail of the previous one) and that one goroutine writes in
// order. Every buffer is allocated up front and recycled, so a long run makes
// no garbage. Write and Close must be called from one goroutine; Close must be
// called, even after an error, to stop the goroutines.
type blockWriter struct {
	w         io.Writer
	codec     blockCodec
	blockSize int

	free  chan *block // recycled blocks
	work  chan *block // to the workers
	order chan *block // to the writer goroutine, in stream order

	cur     *block // block being filled by Write
	tail    []byte // last codec.dictSize bytes of the previous block
	seq     int    // blocks dispatched
	started bool
	closed  bool

	workers sync.WaitGroup
	written chan struct{} // closed when the writer goroutine is done
	mu      sync.Mutex
	err     error // first error of a worker, of the codec or of w
}

// block is one unit of parallel compression.
type block struct {
	seq  int
	in   []byte // input
	dict []byte // tail of the previous block's input (codecs with a dictSize)
	out  []byte // compressed
	last bool
	done chan error
}

// blockCodec adapts a compression format to blockWriter.
type blockCodec struct {
	header   []byte // written before the first block
	dictSize int    // bytes of the previous block handed to the next one as block.dict
	// newWorker returns the compress function of one worker goroutine
	// (its state is the worker's own): it sets b.out from b.in.
	newWorker func() func(b *block) error
	// written, when set, sees every block's input in stream order once its
	// output is written.
	written func(b *block)
	// trailer, when set, is written after the last block.
	trailer func() []byte
}

// newBlockWriter starts workers goroutines compressing blockSize-byte blocks
// with codec, and the goroutine writing them to w.
func newBlockWriter(w io.Writer, codec blockCodec, workers, blockSize int) *blockWriter {
	// One block filling, one per worker, one being written.
	blocks := workers + 2
	z := &blockWriter{w: w, codec: codec, blockSize: blockSize,
		free: make(chan *block, blocks), work: make(chan *block, blocks), order: make(chan *block, blocks),
		tail: make([]byte, 0, codec.dictSize), written: make(chan struct{})}
	for range blocks {
		// out fits a stored (incompressible) block without growing.
		z.free <- &block{in: make([]byte, 0, blockSize), dict: make([]byte, 0, codec.dictSize),
			out: make([]byte, 0, blockSize+blockSize/64+1024), done: make(chan error, 1)}
	}
	for range workers {
		z.workers.Add(1)
		go func() {
			defer z.workers.Done()
			compress := codec.newWorker()
			for b := range z.work {
				b.done <- compress(b)
			}
		}()
	}
	go z.writer()
	return z
}

// writer writes compressed blocks in order.
func (z *blockWriter) writer() {
	defer close(z.written)
	for b := range z.order {
		err := <-b.done
		if z.failed() == nil {
			if err == nil {
				_, err = z.w.Write(b.out)
			}
			if err != nil {
				z.fail(err)
			} else if z.codec.written != nil {
				z.codec.written(b)
			}
		}
		z.free <- b
	}
}

func (z *blockWriter) fail(err error) {
	z.mu.Lock()
	if z.err == nil {
		z.err = err
	}
	z.mu.Unlock()
}

func (z *blockWriter) failed() error {
	z.mu.Lock()
	defer z.mu.Unlock()
	return z.err
}

func (z *blockWriter) dispatch(last bool) {
	b := z.cur
	z.cur = nil
	b.seq, b.last = z.seq, last
	z.seq++
	if z.codec.dictSize > 0 {
		b.dict = append(b.dict[:0], z.tail...)
		t := min(z.codec.dictSize, len(b.in))
		z.tail = append(z.tail[:0], b.in[len(b.in)-t:]...)
	}
	b.out = b.out[:0]
	z.order <- b
	z.work <- b
}

func (z *blockWriter) header() error {
	if z.started {
		return nil
	}
	z.started = true
	if len(z.codec.header) > 0 {
		if _, err := z.w.Write(z.codec.header); err != nil {
			z.fail(err)
			return err
		}
	}
	return nil
}

// Write implements io.Writer; errors of earlier blocks show up in later calls and in Close.
func (z *blockWriter) Write(p []byte) (int, error) {
	if z.closed {
		return 0, errors.New("write after close")
	}
	if err := z.failed(); err != nil {
		return 0, err
	}
	if err := z.header(); err != nil {
		return 0, err
	}
	n := len(p)
	if z.cur != nil && len(p) > 0 {
		if free := z.cur.in[len(z.cur.in):z.blockSize]; len(p) <= len(free) && &p[0] == &free[0] {
			// p was read into space(): it is in place already.
			z.cur.in = z.cur.in[:len(z.cur.in)+len(p)]
			if len(z.cur.in) == z.blockSize {
				z.dispatch(false)
			}
			return n, nil
		}
	}
	for len(p) > 0 {
		if z.cur == nil {
			z.cur = <-z.free
			z.cur.in = z.cur.in[:0]
		}
		c := copy(z.cur.in[len(z.cur.in):z.blockSize], p)
		z.cur.in = z.cur.in[:len(z.cur.in)+c]
		p = p[c:]
		if len(z.cur.in) == z.blockSize {
			z.dispatch(false)
		}
	}
	return n, nil
}

// space returns the free part of the block being filled (never empty). A
// caller may read data into a prefix of it and pass that prefix to Write,
// which then takes it without a copy; any other use of it is undefined.
func (z *blockWriter) space() []byte {
	if z.cur == nil {
		z.cur = <-z.free
		z.cur.in = z.cur.in[:0]
	}
	return z.cur.in[len(z.cur.in):z.blockSize]
}

// Close compresses what is left, waits until every block is written, writes
// the trailer and stops the goroutines.
func (z *blockWriter) Close() error {
	if z.closed {
		return z.failed()
	}
	z.closed = true
	z.header() // a failure is recorded; the goroutines are stopped all the same
	if z.cur == nil {
		z.cur = <-z.free
		z.cur.in = z.cur.in[:0]
	}
	z.dispatch(true)
	close(z.work)
	close(z.order)
	z.workers.Wait()
	<-z.written
	if err := z.failed(); err != nil {
		return err
	}
	if z.codec.trailer != nil {
		if _, err := z.w.Write(z.codec.trailer()); err != nil {
			return err
		}
	}
	return nil
}

// The effort of a gzip block is chosen by what its data needs, so that gzip
// level N means the size users know from gzip and pigz -N: klauspost's
// encoder levels are faster than zlib's but compress some data harder and
// some less hard than zlib's level of the same number (on the benchmark's
// datasets its level 6 ranges from 5% smaller than zlib's -6 on a Redis
// dump to 6% larger on a SQLite database), so no fixed level, nor a fixed
// map of levels, gives zlib's size everywhere. Every block's worker first
// compresses a sample of the block: zlibSize says what zlib -N would make of
// it, and the cheapest encoder level of gzipLadder(N) whose sample is no
// larger (within gzipSlack) compresses the block; when none is, the
// cheapest one within 1% of the smallest sample does. The choice depends on
// the block's bytes only, so an archive is the same on every run and machine.
const (
	gzipSampleSize = 16 << 10 // a sample costs ~1/6 of a level-6 block; 64 KiB samples choose no better overall
	// A sample may come out up to 1/gzipSlack larger than zlib's: half of
	// the 1% a level may differ from zlib's size, which lets text take the
	// cheaper level 6 for about half of its blocks where it would otherwise
	// need level 7, twice as slow, everywhere.
	gzipSlack = 200
)

// gzipLadder returns the klauspost/compress/flate levels a gzip level (1-9)
// chooses from, cheapest first; each one used costs a worker ~1.1 MiB of
// encoder state. For level 6 they are what the benchmark's datasets choose:
// 1 (data the fastest level compresses as well as zlib: a Redis dump,
// already-compressed files), 6 and the lazy-matching 7. Level 8, which
// reaches zlib's size on source code and PostgreSQL's tables where 7 stays
// about 1% above it, is left out: it costs 1.6 times level 7 and another
// 1.1 MiB per worker for that last percent.
func gzipLadder(level int) []int {
	switch {
	case level <= 3:
		return []int{1, 2, 4}
	case level <= 5:
		return []int{1, 4, 6, 7}
	case level == 6:
		return []int{1, 6, 7}
	case level == 7:
		return []int{1, 6, 7, 8}
	}
	return []int{1, 6, 8, 9}
}

// gzipCodec writes one standard gzip member (RFC 1952) whose deflate stream
// is the blocks' deflate output, each ended by a sync flush (the last one
// final) and primed with the previous block's last 32 KiB, the whole deflate
// window, so matches reach across blocks as in a serial stream.
func gzipCodec(level int) (blockCodec, error) {
	if level < 1 || level > 9 {
		return blockCodec{}, fmt.Errorf("gzip level %d: want 1-9", level)
	}
	ladder := gzipLadder(level)
	var crc, size uint32
	return blockCodec{
		// Magic, deflate, no flags, no mtime, no extra flags, OS unknown.
		header:   []byte{0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 255},
		dictSize: 32 << 10,
		newWorker: func() func(*block) error {
			var fw [10]*flate.Writer // one per level used, reused
			var est zlibEstimator
			writer := func(l int, w io.Writer, dict []byte) (*flate.Writer, error) {
				f := fw[l]
				if f == nil {
					var err error
					if f, err = flate.NewWriterDict(w, l, dict); err != nil {
						return nil, err
					}
					fw[l] = f
				} else {
					f.ResetDict(w, dict)
				}
				return f, nil
			}
			// choose returns the level for b (see gzipLadder).
			choose := func(b *block) (int, error) {
				if len(b.in) <= gzipSampleSize {
					return ladder[len(ladder)-1], nil // too small to matter
				}
				at := (len(b.in) - gzipSampleSize) / 2
				sample := b.in[at : at+gzipSampleSize]
				want := est.size(nil, sample, level)
				sizes := make([]int, 0, 8) // on the stack
				for _, l := range ladder {
					var n countWriter
					f, err := writer(l, &n, nil)
					if err != nil {
						return 0, err
					}
					if _, err := f.Write(sample); err != nil {
						return 0, err
					}
					if err := f.Flush(); err != nil {
						return 0, err
					}
					if int(n) <= want+want/gzipSlack {
						return l, nil
					}
					sizes = append(sizes, int(n))
				}
				// No level reaches zlib's size: the cheapest within 1% of
				// the smallest (a level 1.5 times slower for 0.6% less is
				// not worth it when the target is missed anyway).
				smallest := slices.Min(sizes)
				for i, n := range sizes {
					if n <= smallest+smallest/100 {
						return ladder[i], nil
					}
				}
				return ladder[len(ladder)-1], nil
			}
			return func(b *block) error {
				l, err := choose(b)
				if err != nil {
					return err
				}
				f, err := writer(l, (*appender)(&b.out), b.dict)
				if err != nil {
					return err
				}
				if _, err := f.Write(b.in); err != nil {
					return err
				}
				if b.last {
					return f.Close()
				}
				// Ends the block on a byte boundary, so blocks concatenate.
				return f.Flush()
			}
		},
		written: func(b *block) {
			crc = crc32.Update(crc, crc32.IEEETable, b.in)
			size += uint32(len(b.in)) // ISIZE is the size mod 2^32
		},
		trailer: func() []byte {
			return binary.LittleEndian.AppendUint32(binary.LittleEndian.AppendUint32(nil, crc), size)
		},
	}, nil
}

// zstdCodec writes every block as a zstd frame of its own (with its content
// checksum); a sequence of frames is a valid zstd stream for every decoder.
// Frames do not share history: blockSize is also the match window.
func zstdCodec(level, workers, blockSize int) (blockCodec, error) {
	enc, err := zstd.NewWriter(nil,
		zstd.WithEncoderLevel(zstd.EncoderLevelFromZstd(level)),
		zstd.WithEncoderConcurrency(workers),
		zstd.WithWindowSize(blockSize),
		zstd.WithEncoderCRC(true),
		zstd.WithZeroFrames(true))
	if err != nil {
		return blockCodec{}, err
	}
	return blockCodec{newWorker: func() func(*block) error {
		return func(b *block) error {
			if len(b.in) == 0 && b.seq > 0 {
				return nil // an empty last block; the first one makes an empty frame
			}
			b.out = enc.EncodeAll(b.in, b.out)
			return nil
		}
	}}, nil
}

// countWriter is an io.Writer counting what it is given.
type countWriter int

func (c *countWriter) Write(p []byte) (int, error) {
	*c += countWriter(len(p))
	return len(p), nil
}

// appender is an io.Writer appending to a byte slice.
type appender []byte

func (a *appender) Write(p []byte) (int, error) {
	*a = append(*a, p...)
	return len(p), nil
}
