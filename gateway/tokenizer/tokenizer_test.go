package tokenizer_test

import (
	"math/rand/v2"
	"strings"
	"testing"

	tiktoken "github.com/pkoukk/tiktoken-go"
	loader "github.com/pkoukk/tiktoken-go-loader"

	"github.com/signals-sorcery/sas/gateway/tokenizer"
)

// reference is tiktoken-go: OpenAI's regular expression on a backtracking
// engine and tiktoken's merge loop, with the same embedded ranks. Every
// count of this package must equal its count.
func reference(t testing.TB) *tiktoken.Tiktoken {
	t.Helper()
	tiktoken.SetBpeLoader(loader.NewOfflineLoader())
	enc, err := tiktoken.GetEncoding("o200k_base")
	if err != nil {
		t.Fatal(err)
	}
	return enc
}

var corpus = []string{
	"", "a", "hello world", "Hello, World! It's a test; we'll see—don't you think?",
	"The QUICK brown fox JUMPED over the lazy dog's back 12345 times.",
	"日本語のテキストと English mixed 中文 한국어 العربية русский текст Ελληνικά",
	"emoji 😀🎵🎹 and ZWJ 👩‍👩‍👧‍👦 flags 🇫🇷",
	"   leading spaces\n\n\ttabs\r\n  trailing   ",
	"code: func main() { fmt.Println(\"x\") }\n// comment\n/* block */ a/b/c\n\n",
	"numbers 1 12 123 1234 12345 3.14159 ١٢٣٤ ⅷ",
	"áccénts ÀÉÎÕÜ nai\u0308ve cafe\u0301 \u0301\u0301A",
	"ALLCAPS'S THEY'RE We'LL I'M you'D x'Ve",
	"<|endoftext|> special <|endofprompt|>",
	"\u00a0nbsp\u2003em\u3000ideographic \u0085nel",
	`{"type":"object","properties":{"name":{"type":"string"}}}`,
	// Pieces longer than the quadratic merge takes: the heap merges them.
	strings.Repeat("a", 5000), strings.Repeat(" \n", 3000), strings.Repeat("ab", 2000) + "!!!",
	strings.Repeat("😀", 300), strings.Repeat("  ", 100) + "x", strings.Repeat("1", 100),
	strings.Repeat("=", 150) + "\n" + strings.Repeat("-", 65),
}

func TestMatchesReference(t *testing.T) {
	ref, enc := reference(t), tokenizer.O200k()
	for _, s := range corpus {
		if want, got := len(ref.EncodeOrdinary(s)), enc.Count(s); got != want {
			t.Errorf("Count(%.40q) = %d, want %d", s, got, want)
		}
	}
}

// TestRandomMixes compares strings drawn from every character class the
// split depends on: upper, lower, title, modifier and other letters, marks,
// numbers, each kind of whitespace, apostrophes, punctuation, symbols.
func TestRandomMixes(t *testing.T) {
	ref, enc := reference(t), tokenizer.O200k()
	palette := []rune("aZsStTrReEvVmMlLdD'’ \t\r\n\v\f\u00a0\u2003\u3000\u0085.,!?/-_()[]{}\"#$%&*+<=>@\\^`|~" +
		"ǅǈǲʰʱˆ々ー中日本語한국あア" + "\u0300\u0301\u0308\u0903\u20dd" + "0123456789٣४Ⅻ½²" + "éÉßñÑøØıİſK" + "😀🎵€£©™")
	rng := rand.New(rand.NewPCG(1, 2))
	for range 20000 {
		var b strings.Builder
		for range 1 + rng.IntN(40) {
			b.WriteRune(palette[rng.IntN(len(palette))])
		}
		s := b.String()
		if want, got := len(ref.EncodeOrdinary(s)), enc.Count(s); got != want {
			t.Fatalf("Count(%q) = %d, want %d", s, got, want)
		}
	}
}

func FuzzMatchesReference(f *testing.F) {
	for _, s := range corpus {
		if len(s) < 200 {
			f.Add(s)
		}
	}
	ref, enc := reference(f), tokenizer.O200k()
	f.Fuzz(func(t *testing.T, s string) {
		if len(s) > 600 {
			return // the reference is quadratic on some inputs
		}
		// Invalid UTF-8 too: both read it as U+FFFD.
		if want, got := len(ref.EncodeOrdinary(s)), enc.Count(s); got != want {
			t.Errorf("Count(%q) = %d, want %d", s, got, want)
		}
		if want, got := enc.Count(s), enc.Bound(s, -1); got != want {
			t.Errorf("Bound(%q, -1) = %d, want Count's %d", s, got, want)
		}
	})
}

// TestInvalidUTF8 is counted as the reference reads it: each invalid byte
// a U+FFFD (counting bytes instead undercounts: "\x9ci" is 2 tokens, not 1).
func TestInvalidUTF8(t *testing.T) {
	ref, enc := reference(t), tokenizer.O200k()
	cases := []string{"\x9ci", "a\xffb\xfe\xfd", "\xe6\x97", "\xe6\x97\xa5\xe6", "ok \xc3\x28 no", "\xed\xa0\x80 surrogate", strings.Repeat("\x80", 300)}
	rng := rand.New(rand.NewPCG(3, 4))
	for range 2000 {
		b := make([]byte, 1+rng.IntN(30))
		for i := range b {
			b[i] = "ab \x80\xbf\xc3\xe6\x97\xf0\x9f\xff"[rng.IntN(11)]
		}
		cases = append(cases, string(b))
	}
	for _, s := range cases {
		if want, got := len(ref.EncodeOrdinary(s)), enc.Count(s); got != want {
			t.Fatalf("Count(%q) = %d, want %d", s, got, want)
		}
	}
}

// runs are texts that split into long pieces: Chinese, Japanese and Thai
// without punctuation, separator lines, deep indentation.
func runs(chars int) map[string]string {
	rng := rand.New(rand.NewPCG(uint64(chars), 5))
	from := func(alphabet []rune) string {
		var b strings.Builder
		for range chars {
			b.WriteRune(alphabet[rng.IntN(len(alphabet))])
		}
		return b.String()
	}
	// Common characters, so that the model's multi-character tokens occur.
	han := []rune("的一是不了人我在有他这中大来上国个到说们为子和你地出道也时年得就那要下以生会自着去之过家学对可她里后小么心多天而能好都然没日于起还发成事只作当想看文无开手十用主行方又如前所本见经头面公同三已老从动两长")
	kana := []rune("のにはをたがでてとしれさあいうえおかきくけこすせそつなるまもやよらりろわんアイウエオカキクケコサシスセソタチツテトナニヌネノ日本語東京音楽")
	thai := []rune("กขคงจฉชซญดตถทธนบปผพฟภมยรลวศษสหอฮะาำิีึืุูเแโใไ่้๊๋็์")
	return map[string]string{
		"chinese":  from(han),
		"japanese": from(kana),
		"thai":     from(thai),
		"equals":   strings.Repeat("=", chars),
		"dashes":   strings.Repeat("-", chars) + "\n",
		"box":      strings.Repeat("─", chars),
		"indent":   strings.Repeat(" ", chars) + "return x",
		"tabs":     strings.Repeat("\t", chars) + "}",
	}
}

// TestLongPiecesExact: text that splits into pieces of hundreds or
// thousands of bytes is counted exactly within a plan's limit (the old
// byte-length bound reserved 4-75 times too much for it), and equals the
// reference. 30,000 characters are compared with the exact heap merge
// (the reference's quadratic merge takes minutes on them).
func TestLongPiecesExact(t *testing.T) {
	ref, enc := reference(t), tokenizer.O200k()
	for _, chars := range []int{1000, 3000, 10000, 30000} {
		for name, s := range runs(chars) {
			want := enc.Count(s)
			if chars <= 3000 {
				want = len(ref.EncodeOrdinary(s))
			}
			// pro's max_input_tokens (100,000), and free's (8,000) when it fits.
			for _, limit := range []int{100000, 8000} {
				if got := enc.Bound(s, limit); got != want && want <= limit {
					t.Errorf("%s, %d characters: Bound(limit %d) = %d, want %d", name, chars, limit, got, want)
				} else if want > limit && got <= limit {
					t.Errorf("%s, %d characters: Bound(limit %d) = %d, under the limit; the count is %d", name, chars, limit, got, want)
				}
			}
		}
	}
}

// TestBoundWork: the merging work of long pieces is bounded by the budget
// and by what can still fit in the limit; past either, a piece counts as
// its bytes — above the exact count, never below.
func TestBoundWork(t *testing.T) {
	enc := tokenizer.O200k()
	piece := strings.Repeat("=", 10000) // one piece of 10,000 bytes: 157 tokens
	exact := enc.Count(piece)
	work := 1 << 20
	if got := enc.BoundWithin(piece, 1000, &work); got != exact || work != 1<<20-len(piece) {
		t.Errorf("a piece that fits: %d tokens (want %d), work left %d (want %d)", got, exact, work, 1<<20-len(piece))
	}
	// 10,000 bytes are at least 79 tokens (the longest token is 128 bytes):
	// over a limit of 50 without merging.
	work = 1 << 20
	if got := enc.BoundWithin(piece, 50, &work); got <= 50 || work != 1<<20 {
		t.Errorf("a piece that cannot fit: %d (want above 50), work spent %d (want none)", got, 1<<20-work)
	}
	// Past the budget: its bytes, no work.
	work = len(piece) - 1
	if got := enc.BoundWithin(piece, -1, &work); got != len(piece) || work != len(piece)-1 {
		t.Errorf("a piece past the budget: %d (want its %d bytes), work spent %d", got, len(piece), len(piece)-1-work)
	}
	// The budget is shared by every call: the second piece is past it.
	work = 15000
	if a, b := enc.BoundWithin(piece, -1, &work), enc.BoundWithin(piece, -1, &work); a != exact || b != len(piece) {
		t.Errorf("two calls on one budget: %d then %d, want %d then %d", a, b, exact, len(piece))
	}
	for limit, want := range map[int]int{-1: 256 << 10, 0: 0, 8000: 128000, 100000: 256 << 10} {
		if got := tokenizer.MergeBudget(limit); got != want {
			t.Errorf("MergeBudget(%d) = %d, want %d", limit, got, want)
		}
	}
}

func TestBound(t *testing.T) {
	enc := tokenizer.O200k()
	text := strings.Repeat("The quick brown fox jumps over the lazy dog. ", 100) // 1000 tokens
	n := enc.Count(text)
	if got := enc.Bound(text, -1); got != n {
		t.Errorf("Bound(ordinary text) = %d, want Count's %d", got, n)
	}
	if got := enc.Bound(text, n); got != n {
		t.Errorf("Bound(limit = count) = %d, want %d", got, n)
	}
	if got := enc.Bound(text, n-1); got <= n-1 {
		t.Errorf("Bound(limit = count-1) = %d, want above the limit", got)
	}
	// Long pieces within the budget: exact.
	for _, s := range []string{strings.Repeat(" ", 1000) + "x", strings.Repeat("a", 5000), strings.Repeat("ab", 300)} {
		if got, exact := enc.Bound(s, -1), enc.Count(s); got != exact {
			t.Errorf("Bound(%.20q…) = %d, want the exact %d", s, got, exact)
		}
	}
}

// BenchmarkReference is tiktoken-go (regexp2 and its merge loop) on the
// English text of BenchmarkCount: the baseline for this package's speed.
func BenchmarkReference(b *testing.B) {
	ref := reference(b)
	text := strings.Repeat("The quick brown fox jumps over the lazy dog, and then it writes a song about signals and sorcery in C minor. ", 100)
	b.SetBytes(int64(len(text)))
	for b.Loop() {
		ref.EncodeOrdinary(text)
	}
}

// BenchmarkBound is what a hostile prompt costs the estimate: a megabyte in
// pieces just under LongPiece (merged whatever the budget), and a megabyte
// in one piece against free's and pro's limits (refused without merging,
// or merged up to the budget).
func BenchmarkBound(b *testing.B) {
	enc := tokenizer.O200k()
	for _, bc := range []struct {
		name  string
		text  string
		limit int
	}{
		{"1MiB-short-pieces", strings.Repeat(strings.Repeat("a", tokenizer.LongPiece-1)+" ", (1<<20)/tokenizer.LongPiece), -1},
		{"1MB-one-piece-limit-8000", strings.Repeat("=", 1000000), 8000},
		{"1MB-one-piece-limit-100000", strings.Repeat("=", 1000000), 100000},
		{"budget-in-pieces-limit-100000", strings.Repeat(strings.Repeat("=", 4000)+"x", 250), 100000},
	} {
		b.Run(bc.name, func(b *testing.B) {
			b.SetBytes(int64(len(bc.text)))
			for b.Loop() {
				enc.Bound(bc.text, bc.limit)
			}
		})
	}
}

// BenchmarkCount is the cost per byte of ordinary text and of the worst
// inputs (a megabyte in one piece).
func BenchmarkCount(b *testing.B) {
	enc := tokenizer.O200k()
	for _, bc := range []struct{ name, text string }{
		{"english", strings.Repeat("The quick brown fox jumps over the lazy dog, and then it writes a song about signals and sorcery in C minor. ", 100)},
		{"multilingual", strings.Repeat("日本語のテキストと English mixed 中文 한국어 العربية русский текст Ελληνικά 😀 ", 100)},
		{"json", strings.Repeat(`{"type":"object","properties":{"tempo":{"type":"integer","description":"beats per minute"}}},`, 100)},
		{"1MiB-one-piece", strings.Repeat(" ", 1<<20) + "x"},
	} {
		b.Run(bc.name, func(b *testing.B) {
			b.SetBytes(int64(len(bc.text)))
			for b.Loop() {
				enc.Count(bc.text)
			}
		})
	}
}
