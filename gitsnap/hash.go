package gitsnap

// Object names are computed with crypto/sha1 rather than go-git's hasher
// (sha1cd, which also detects SHA-1 collision attacks): the names are the
// same for every object, and on this project's 2-core benchmark machine
// sha1cd took ~15% of a snapshot's CPU. The objects hashed here are the
// sources' own files and the repository's own objects being verified,
// not objects an attacker chose for a collision.

import (
	"crypto/sha1"
	"hash"
	"strconv"

	"github.com/go-git/go-git/v5/plumbing"
)

// newHasher starts the name of an object of type t and size bytes: SHA-1
// over "<type> <size>\x00" and the content written to it.
func newHasher(t plumbing.ObjectType, size int64) hash.Hash {
	h := sha1.New()
	h.Write([]byte(t.String()))
	h.Write([]byte{' '})
	h.Write(strconv.AppendInt(nil, size, 10))
	h.Write([]byte{0})
	return h
}

// sum is the object name a hasher from newHasher holds.
func sum(h hash.Hash) (out plumbing.Hash) {
	copy(out[:], h.Sum(nil))
	return out
}

// computeHash names an object of type t with content data.
func computeHash(t plumbing.ObjectType, data []byte) plumbing.Hash {
	h := newHasher(t, int64(len(data)))
	h.Write(data)
	return sum(h)
}
