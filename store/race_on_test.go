//go:build race

package store_test

// raceEnabled: the race detector multiplies RSS (shadow memory), so only the heap bound is checked.
const raceEnabled = true
