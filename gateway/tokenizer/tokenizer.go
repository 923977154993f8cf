// Package tokenizer counts tokens as OpenAI's models do, with the o200k_base
// encoding of the gpt-4o family (also gpt-4.1, the o-series and gpt-5): the
// pre-tokenizer of split.go, then byte-pair encoding with the encoding's
// ranks. It only counts; nothing here decodes.
//
// The ranks come from github.com/pkoukk/tiktoken-go-loader, which embeds
// OpenAI's published rank files, so nothing is downloaded at run time.
package tokenizer

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"math"
	"strconv"
	"sync"
	"unicode/utf8"

	"github.com/pkoukk/tiktoken-go-loader/assets"
)

// Encoding is a loaded BPE encoding. It is immutable and safe for
// concurrent use.
type Encoding struct {
	name  string
	ranks map[string]uint32
	// maxToken is the longest token's length in bytes: a piece of n bytes
	// is at least n/maxToken tokens.
	maxToken int
}

// Name is the encoding's name, e.g. o200k_base.
func (e *Encoding) Name() string { return e.name }

// O200k returns the o200k_base encoding, loaded once per process (about
// 0.2 s and 15 MB: 200,000 ranks).
var O200k = sync.OnceValue(func() *Encoding {
	e, err := load("o200k_base")
	if err != nil {
		// The file is embedded in the binary: failing to read it is a
		// build defect, not a runtime condition.
		panic(err)
	}
	return e
})

func load(name string) (*Encoding, error) {
	raw, err := assets.Assets.ReadFile(name + ".tiktoken")
	if err != nil {
		return nil, fmt.Errorf("tokenizer: %s: %w", name, err)
	}
	n := bytes.Count(raw, []byte{'\n'}) + 1
	// Every token's bytes in one string, so the map's keys share one
	// allocation.
	all := make([]byte, 0, len(raw)*3/4)
	type span struct{ from, to, rank int }
	spans := make([]span, 0, n)
	for line := range bytes.SplitSeq(raw, []byte{'\n'}) {
		if len(line) == 0 {
			continue
		}
		tok, rank, ok := bytes.Cut(line, []byte{' '})
		r, err := strconv.Atoi(string(rank))
		if !ok || err != nil || r < 0 {
			return nil, fmt.Errorf("tokenizer: %s: malformed line %q", name, line)
		}
		from := len(all)
		if all, err = base64.StdEncoding.AppendDecode(all, tok); err != nil {
			return nil, fmt.Errorf("tokenizer: %s: %w", name, err)
		}
		spans = append(spans, span{from, len(all), r})
	}
	if len(spans) == 0 {
		return nil, errors.New("tokenizer: " + name + ": no ranks")
	}
	s := string(all)
	e := &Encoding{name: name, ranks: make(map[string]uint32, len(spans))}
	for _, sp := range spans {
		e.ranks[s[sp.from:sp.to]] = uint32(sp.rank)
		e.maxToken = max(e.maxToken, sp.to-sp.from)
	}
	return e, nil
}

// Count returns the number of tokens of s, encoded as ordinary text (a
// special token's text, such as <|endoftext|>, counts as the text it is,
// as in the API's messages). Invalid UTF-8 counts as U+FFFD, one for each
// invalid byte, as the reference tokenizer reads it.
//
// Splitting is linear in len(s); each piece is merged in O(n log n), so the
// worst case (a megabyte of one repeated character, a single piece) takes
// a second or two where a backtracking regexp takes minutes: use Bound on
// input that may be hostile.
func (e *Encoding) Count(s string) int {
	work := math.MaxInt
	return e.BoundWithin(s, -1, &work)
}

// Bound is BoundWithin with a merge budget of its own, MergeBudget(limit).
func (e *Encoding) Bound(s string, limit int) int {
	work := MergeBudget(limit)
	return e.BoundWithin(s, limit, &work)
}

// LongPiece is the length above which a piece costs merging work worth
// budgeting; shorter pieces (all of ordinary prose and code) are always
// merged.
const LongPiece = 256

// MergeBudget is the bytes of long pieces that counting up to limit may
// merge exactly: 16 bytes a token of the limit — more than any natural
// text has (English about 4.5, Chinese or Japanese about 2-3) — and at
// most 256 KiB (about a tenth of a second of CPU), whatever the limit.
// limit < 0: no limit, the most.
func MergeBudget(limit int) int {
	const most = 256 << 10
	if limit < 0 || limit > most/16 {
		return most
	}
	return 16 * limit
}

// BoundWithin counts the tokens of s for budgets, with CPU bounded: when
// limit ≥ 0 it stops as soon as the count is known to exceed limit,
// returning some number above it. Long pieces — text without punctuation
// (Chinese, Japanese, Thai), separator lines, deep indentation — are merged
// exactly while *work (bytes of long pieces, shared by every call that
// counts one request) lasts; a long piece beyond it counts as its length in
// bytes (no token is shorter than a byte), an upper bound. A piece longer
// than maxToken × (what remains of limit) bytes cannot fit in what
// remains: it is not merged, and its length ends the count, above limit.
// So the count is exact as long as it is at most limit and its long pieces
// fit in the budget.
func (e *Encoding) BoundWithin(s string, limit int, work *int) int {
	s = validUTF8(s)
	n := 0
	p := splitter{s}
	for i := 0; i < len(s); {
		end := p.next(i)
		piece := s[i:end]
		switch {
		case len(piece) <= LongPiece:
			n += e.pieceTokens(piece)
		case limit >= 0 && (len(piece)+e.maxToken-1)/e.maxToken > limit-n:
			return n + len(piece)
		case len(piece) <= *work:
			*work -= len(piece)
			n += e.pieceTokens(piece)
		default:
			n += len(piece)
		}
		if limit >= 0 && n > limit {
			return n
		}
		i = end
	}
	return n
}

// validUTF8 replaces each byte of s that is not part of valid UTF-8 with
// U+FFFD, as converting s to runes does (the reference tokenizer's
// reading); valid s is returned as it is, without copying.
func validUTF8(s string) string {
	if utf8.ValidString(s) {
		return s
	}
	b := make([]byte, 0, len(s)+8)
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = utf8.AppendRune(b, utf8.RuneError)
		} else {
			b = append(b, s[i:i+size]...)
		}
		i += size
	}
	return string(b)
}

// pieceTokens is the number of tokens that byte-pair encoding gives piece.
func (e *Encoding) pieceTokens(piece string) int {
	if len(piece) == 1 {
		return 1 // every byte is a token
	}
	if _, ok := e.ranks[piece]; ok {
		return 1
	}
	if len(piece) <= smallPiece {
		return e.mergeSmall(piece)
	}
	return e.mergeHeap(piece)
}

const noRank = ^uint32(0)

func (e *Encoding) rank(s string) uint32 {
	if r, ok := e.ranks[s]; ok {
		return r
	}
	return noRank
}

// smallPiece is the longest piece merged by the quadratic scan that
// tiktoken itself uses (fast for the short pieces of ordinary text);
// longer ones take the heap, whose cost is O(n log n).
const smallPiece = 64

// mergeSmall is tiktoken's _byte_pair_merge: repeatedly merge the adjacent
// pair of lowest rank (the leftmost on a tie) until no pair has a rank.
func (e *Encoding) mergeSmall(piece string) int {
	type part struct {
		start int
		rank  uint32 // rank of this part merged with the next
	}
	var buf [smallPiece + 1]part
	parts := buf[:0]
	for i := range len(piece) - 1 {
		parts = append(parts, part{i, e.rank(piece[i : i+2])})
	}
	parts = append(parts, part{len(piece) - 1, noRank}, part{len(piece), noRank})
	// rankAt is the rank of parts[i] merged with parts[i+1].
	rankAt := func(i int) uint32 {
		if i+2 < len(parts) {
			return e.rank(piece[parts[i].start:parts[i+2].start])
		}
		return noRank
	}
	for {
		best, at := noRank, -1
		for i := range len(parts) - 1 {
			if parts[i].rank < best {
				best, at = parts[i].rank, i
			}
		}
		if at < 0 {
			break
		}
		parts = append(parts[:at+1], parts[at+2:]...)
		parts[at].rank = rankAt(at)
		if at > 0 {
			parts[at-1].rank = rankAt(at - 1)
		}
	}
	return len(parts) - 1
}
