package tokenizer

import (
	"math/rand/v2"
	"testing"
)

// plainMerge is byte-pair merging as tiktoken writes it, with nothing
// clever: repeatedly merge the adjacent pair of lowest rank, the leftmost
// on a tie, until no pair has a rank.
func (e *Encoding) plainMerge(piece string) int {
	bounds := make([]int, 0, len(piece)+1)
	for i := range len(piece) + 1 {
		bounds = append(bounds, i)
	}
	for {
		best, at := noRank, -1
		for i := 0; i+2 < len(bounds); i++ {
			if r := e.rank(piece[bounds[i]:bounds[i+2]]); r < best {
				best, at = r, i
			}
		}
		if at < 0 {
			return len(bounds) - 1
		}
		bounds = append(bounds[:at+1], bounds[at+2:]...)
	}
}

// TestHeapMergeIsPlainMerge: the O(n log n) heap merge that long pieces
// take gives the plain merge's count on random pieces over 64 bytes drawn
// from small alphabets (many merges, many ties) and from scripts without
// punctuation.
func TestHeapMergeIsPlainMerge(t *testing.T) {
	e := O200k()
	alphabets := [][]rune{[]rune("ab"), []rune("a"), []rune("=-"), []rune(" \t"), []rune("xyz01"),
		[]rune("的一是不了人我在有"), []rune("のにはをアイウ日本"), []rune("กขคงะาำิ่้")}
	rng := rand.New(rand.NewPCG(7, 8))
	for i := range 400 {
		alphabet := alphabets[i%len(alphabets)]
		b := make([]rune, 0, 600)
		for len(string(b)) <= smallPiece || rng.IntN(600) > len(b) {
			b = append(b, alphabet[rng.IntN(len(alphabet))])
		}
		piece := string(b)
		if got, want := e.mergeHeap(piece), e.plainMerge(piece); got != want {
			t.Fatalf("mergeHeap(%q) = %d, the plain merge %d", piece, got, want)
		}
	}
}
