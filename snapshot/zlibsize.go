package snapshot

import (
	"container/heap"
	"encoding/binary"
	"math/bits"
	"slices"
)

// zlibSize estimates, without writing it, the size in bytes of the deflate
// stream zlib (and so gzip and pigz) writes at level (1-9) for src primed with
// dict (deflateSetDictionary, as pigz primes each block with the previous
// one's last 32 KiB) and ended by a sync flush. It follows zlib's deflate.c
// (deflate_fast for levels 1-3, deflate_slow with lazy matching for 4-9, its
// configuration table, 3-byte hash chains, the 4 KiB limit on 3-byte
// matches) and trees.c's choice of stored, fixed or dynamic block every
// 16383 symbols, with optimal Huffman code lengths where zlib uses its own
// heuristic: within a few tenths of a percent of zlib's real output.
//
// No library computes this and cgo is ruled out (static, pure-Go binary), so
// it is written here; gzipCodec runs it on a small sample of every block to
// learn what size the user's level means for that data (see gzipCodec).
func zlibSize(dict, src []byte, level int) int {
	var e zlibEstimator
	return e.size(dict, src, level)
}

// zlibConfig is a row of zlib's configuration_table.
type zlibConfig struct{ good, lazy, nice, chain int }

var zlibConfigs = [10]zlibConfig{
	{}, {4, 4, 8, 4}, {4, 5, 16, 8}, {4, 6, 32, 32},
	{4, 4, 16, 16}, {8, 16, 32, 32}, {8, 16, 128, 128}, {8, 32, 128, 256}, {32, 128, 258, 1024}, {32, 258, 258, 4096},
}

const (
	zMinMatch  = 3
	zMaxMatch  = 258
	zWSize     = 32 << 10
	zMaxDist   = zWSize - (zMaxMatch + zMinMatch + 1)
	zTooFar    = 4096
	zHashBits  = 15 // memLevel 8
	zHashShift = (zHashBits + zMinMatch - 1) / zMinMatch
	zSymsBlock = 16384 - 1 // lit_bufsize - 1 symbols per block
)

// zlibEstimator holds the estimator's tables, reusable across calls.
type zlibEstimator struct {
	head []int32 // hash -> most recent position + 1 (0: none)
	prev []int32 // position -> previous position with the same hash + 1
	// symbol frequencies of the block being built
	lit  [286]int
	dist [30]int
	syms int
	raw  int // input bytes of the block (for a stored block's size)
	bits int // total output bits so far
}

func (e *zlibEstimator) size(dict, src []byte, level int) int {
	if len(src) == 0 {
		return 5
	}
	cfg := zlibConfigs[max(1, min(level, 9))]
	if len(dict) > zWSize {
		dict = dict[len(dict)-zWSize:]
	}
	win := src
	if len(dict) > 0 {
		win = append(append(make([]byte, 0, len(dict)+len(src)), dict...), src...)
	}
	if e.head == nil {
		e.head = make([]int32, 1<<zHashBits)
	} else {
		clear(e.head)
	}
	e.prev = slices.Grow(e.prev[:0], len(win))[:len(win)]
	e.bits, e.syms, e.raw = 0, 0, 0
	clear(e.lit[:])
	clear(e.dist[:])

	n := len(win)
	hashAt := func(p int) uint32 { // the hash of win[p:p+3], rolled as zlib does
		return ((uint32(win[p])<<zHashShift^uint32(win[p+1]))<<zHashShift ^ uint32(win[p+2])) & (1<<zHashBits - 1)
	}
	insert := func(p int) int { // inserts p, returns the previous head (-1: none)
		if p+zMinMatch > n {
			return -1
		}
		h := hashAt(p)
		hh := int(e.head[h]) - 1
		e.prev[p] = e.head[h]
		e.head[h] = int32(p + 1)
		return hh
	}
	for p := 0; p+zMinMatch <= len(dict); p++ { // deflateSetDictionary
		insert(p)
	}

	// longest returns the longest match at pos among the chain from cur
	// (zlib's longest_match), with the length to beat prevLen.
	longest := func(pos, cur, prevLen int) (int, int) {
		chain := cfg.chain
		if prevLen >= cfg.good {
			chain >>= 2
		}
		nice := min(cfg.nice, n-pos)
		best, bestAt := prevLen, 0
		limit := max(pos-zMaxDist, 0)
		maxLen := min(zMaxMatch, n-pos)
		for {
			if best < maxLen && win[cur+best] == win[pos+best] && win[cur+best-1] == win[pos+best-1] &&
				win[cur] == win[pos] && win[cur+1] == win[pos+1] {
				l := 2 + matchLen(win[cur+2:cur+maxLen], win[pos+2:pos+maxLen])
				if l > best {
					best, bestAt = l, cur
					if l >= nice {
						break
					}
				}
			}
			chain--
			next := int(e.prev[cur]) - 1
			if chain == 0 || next <= limit {
				break
			}
			cur = next
		}
		return best, bestAt
	}

	pos := len(dict)
	if level <= 3 { // deflate_fast
		for pos < n {
			hh := insert(pos)
			ml := 0
			at := 0
			if hh >= 0 && pos-hh <= zMaxDist {
				ml, at = longest(pos, hh, zMinMatch-1)
			}
			if ml >= zMinMatch {
				e.match(ml, pos-at, ml)
				if ml <= cfg.lazy && pos+ml <= n-zMinMatch { // max_insert_length
					for i := 1; i < ml; i++ {
						insert(pos + i)
					}
				}
				pos += ml
			} else {
				e.literal(win[pos])
				pos++
			}
		}
		return e.finish()
	}

	// deflate_slow
	prevLen, prevAt := zMinMatch-1, 0
	avail := false
	for pos < n {
		hh := insert(pos)
		ml, at := zMinMatch-1, 0
		if hh >= 0 && prevLen < cfg.lazy && pos-hh <= zMaxDist {
			ml, at = longest(pos, hh, prevLen)
			if ml == zMinMatch && pos-at > zTooFar {
				ml = zMinMatch - 1
			}
			if ml <= prevLen {
				ml = zMinMatch - 1 // longest found nothing better than prevLen
			}
		}
		if prevLen >= zMinMatch && ml <= prevLen {
			e.match(prevLen, pos-1-prevAt, prevLen)
			// insert the strings of the match not inserted yet
			end := pos - 1 + prevLen
			for p := pos + 1; p < end; p++ {
				insert(p)
			}
			avail = false
			pos = end
			prevLen = zMinMatch - 1
			continue
		}
		if avail {
			e.literal(win[pos-1])
		}
		avail = true
		prevLen, prevAt = ml, at
		pos++
	}
	if avail {
		e.literal(win[pos-1])
	}
	return e.finish()
}

// matchLen returns the length of the common prefix of a and b (len(a) <= len(b)).
func matchLen(a, b []byte) int {
	n := 0
	for len(a) >= 8 {
		if x := binary.LittleEndian.Uint64(a) ^ binary.LittleEndian.Uint64(b); x != 0 {
			return n + bits.TrailingZeros64(x)>>3
		}
		a, b, n = a[8:], b[8:], n+8
	}
	for i := range a {
		if a[i] != b[i] {
			return n + i
		}
	}
	return n + len(a)
}

// literal and match count one symbol of the block being built, ending the
// block when it holds zSymsBlock symbols.
func (e *zlibEstimator) literal(b byte) {
	e.lit[b]++
	e.raw++
	e.symbol()
}

func (e *zlibEstimator) match(length, dist, raw int) {
	e.lit[257+lengthCode(length)]++
	e.dist[distCode(dist)]++
	e.raw += raw
	e.symbol()
}

func (e *zlibEstimator) symbol() {
	e.syms++
	if e.syms == zSymsBlock {
		e.flushBlock()
	}
}

// finish ends the last block and the sync flush (an empty stored block) and
// returns the whole size in bytes.
func (e *zlibEstimator) finish() int {
	if e.syms > 0 {
		e.flushBlock()
	}
	e.bits += 3 // empty stored block header, then byte alignment and LEN/NLEN
	e.bits = (e.bits+7)/8*8 + 32
	return e.bits / 8
}

// flushBlock adds the size of the cheapest of a stored, fixed or dynamic
// block for the counted symbols (trees.c's _tr_flush_block).
func (e *zlibEstimator) flushBlock() {
	e.lit[256]++ // end of block
	var litLen [286]uint8
	var distLen [30]uint8
	huffmanLengths(e.lit[:], litLen[:], 15)
	huffmanLengths(e.dist[:], distLen[:], 15)
	extra := 0
	dyn, fixed := 0, 0
	for c, f := range e.lit {
		if f == 0 {
			continue
		}
		if c >= 257 {
			extra += f * lengthExtra[c-257]
		}
		dyn += f * int(litLen[c])
		fl := 8
		switch {
		case c >= 144 && c < 256:
			fl = 9
		case c >= 256 && c < 280:
			fl = 7
		}
		fixed += f * fl
	}
	for c, f := range e.dist {
		if f == 0 {
			continue
		}
		extra += f * distExtra[c]
		dyn += f * int(distLen[c])
		fixed += f * 5
	}
	dyn += extra + treeHeaderBits(litLen[:], distLen[:])
	fixed += extra
	stored := (e.raw + 4) * 8
	best := min(dyn, fixed) + 3
	if stored+3 <= best || e.raw == 0 {
		// byte alignment of a stored block is a few bits at most
		best = stored + 3 + 4
	}
	e.bits += best
	clear(e.lit[:])
	clear(e.dist[:])
	e.syms, e.raw = 0, 0
}

// treeHeaderBits is the size of a dynamic block's header: HLIT, HDIST, HCLEN,
// the code length code lengths and the run-length coded code lengths
// (trees.c's build_bl_tree, send_all_trees).
func treeHeaderBits(litLen, distLen []uint8) int {
	nlit := 286
	for nlit > 257 && litLen[nlit-1] == 0 {
		nlit--
	}
	ndist := 30
	for ndist > 1 && distLen[ndist-1] == 0 {
		ndist--
	}
	var blFreq [19]int
	extra := 0
	scan := func(lens []uint8) { // scan_tree
		prevlen := -1
		nextlen := int(lens[0])
		count := 0
		maxCount, minCount := 7, 4
		if nextlen == 0 {
			maxCount, minCount = 138, 3
		}
		for i := 0; i < len(lens); i++ {
			cur := nextlen
			if i+1 < len(lens) {
				nextlen = int(lens[i+1])
			} else {
				nextlen = -1
			}
			count++
			if count < maxCount && cur == nextlen {
				continue
			}
			switch {
			case count < minCount:
				blFreq[cur] += count
			case cur != 0:
				if cur != prevlen {
					blFreq[cur]++
				}
				blFreq[16]++
				extra += 2
			case count <= 10:
				blFreq[17]++
				extra += 3
			default:
				blFreq[18]++
				extra += 7
			}
			count = 0
			prevlen = cur
			switch {
			case nextlen == 0:
				maxCount, minCount = 138, 3
			case cur == nextlen:
				maxCount, minCount = 6, 3
			default:
				maxCount, minCount = 7, 4
			}
		}
	}
	scan(litLen[:nlit])
	scan(distLen[:ndist])
	var blLen [19]uint8
	huffmanLengths(blFreq[:], blLen[:], 7)
	order := [19]int{16, 17, 18, 0, 8, 7, 9, 6, 10, 5, 11, 4, 12, 3, 13, 2, 14, 1, 15}
	nbl := 19
	for nbl > 4 && blLen[order[nbl-1]] == 0 {
		nbl--
	}
	bits := 5 + 5 + 4 + 3*nbl + extra
	for c, f := range blFreq {
		bits += f * int(blLen[c])
	}
	return bits
}

// huffmanLengths sets lens to the code lengths of a Huffman code for freq,
// no longer than limit bits (a length-limited code by moving the deepest
// leaves up, as zlib's gen_bitlen does). A lone used symbol gets length 1.
func huffmanLengths(freq []int, lens []uint8, limit int) {
	clear(lens)
	h := &nodeHeap{}
	type node struct{ left, right, sym int }
	nodes := make([]node, 0, 2*len(freq))
	for s, f := range freq {
		if f > 0 {
			nodes = append(nodes, node{-1, -1, s})
			*h = append(*h, heapItem{f, 0, len(nodes) - 1})
		}
	}
	switch len(*h) {
	case 0:
		return
	case 1:
		lens[nodes[0].sym] = 1
		return
	}
	heap.Init(h)
	for h.Len() > 1 {
		a := heap.Pop(h).(heapItem)
		b := heap.Pop(h).(heapItem)
		nodes = append(nodes, node{a.node, b.node, -1})
		heap.Push(h, heapItem{a.freq + b.freq, max(a.depth, b.depth) + 1, len(nodes) - 1})
	}
	var walk func(i, d int)
	walk = func(i, d int) {
		if nodes[i].sym >= 0 {
			lens[nodes[i].sym] = uint8(min(d, 63))
			return
		}
		walk(nodes[i].left, d+1)
		walk(nodes[i].right, d+1)
	}
	walk((*h)[0].node, 0)
	if slices.Max(lens) <= uint8(limit) {
		return
	}
	// Too deep (rare: skewed counts): every longer code becomes limit bits
	// long, then the least frequent shorter codes are lengthened until the
	// lengths form a code again (Kraft sum within 2^limit). zlib's
	// gen_bitlen moves leaves differently; the size differs by a few bits.
	kraft := 0
	for s, l := range lens {
		if l > 0 {
			l = min(l, uint8(limit))
			lens[s] = l
			kraft += 1 << (limit - int(l))
		}
	}
	// Lengthen codes of the least frequent symbols below limit until the sum fits.
	syms := make([]int, 0, len(freq))
	for s, l := range lens {
		if l > 0 {
			syms = append(syms, s)
		}
	}
	slices.SortFunc(syms, func(a, b int) int { return freq[a] - freq[b] })
	for kraft > 1<<limit {
		for _, s := range syms {
			if kraft <= 1<<limit {
				break
			}
			if l := int(lens[s]); l < limit {
				kraft -= 1 << (limit - l - 1)
				lens[s]++
			}
		}
	}
}

type heapItem struct{ freq, depth, node int }
type nodeHeap []heapItem

func (h nodeHeap) Len() int { return len(h) }
func (h nodeHeap) Less(i, j int) bool {
	if h[i].freq != h[j].freq {
		return h[i].freq < h[j].freq
	}
	return h[i].depth < h[j].depth
}
func (h nodeHeap) Swap(i, j int) { h[i], h[j] = h[j], h[i] }
func (h *nodeHeap) Push(x any)   { *h = append(*h, x.(heapItem)) }
func (h *nodeHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}

// lengthCode returns the deflate length code (0-28) of a match length 3-258.
func lengthCode(l int) int {
	for c := 28; c >= 0; c-- {
		if l >= lengthBase[c] {
			return c
		}
	}
	return 0
}

// distCode returns the deflate distance code (0-29) of a distance 1-32768.
func distCode(d int) int {
	for c := 29; c >= 0; c-- {
		if d >= distBase[c] {
			return c
		}
	}
	return 0
}

var (
	lengthBase  = [29]int{3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 15, 17, 19, 23, 27, 31, 35, 43, 51, 59, 67, 83, 99, 115, 131, 163, 195, 227, 258}
	lengthExtra = [29]int{0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5, 0}
	distBase    = [30]int{1, 2, 3, 4, 5, 7, 9, 13, 17, 25, 33, 49, 65, 97, 129, 193, 257, 385, 513, 769, 1025, 1537, 2049, 3073, 4097, 6145, 8193, 12289, 16385, 24577}
	distExtra   = [30]int{0, 0, 0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7, 8, 8, 9, 9, 10, 10, 11, 11, 12, 12, 13, 13}
)
