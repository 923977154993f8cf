package tokenizer_test

import (
	"math/rand/v2"
	"strings"
	"testing"
	"unicode/utf8"

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
		s = strings.ToValidUTF8(s, "\uFFFD") // what decoding JSON gives
		if !utf8.ValidString(s) {
			t.Fatal("invalid UTF-8")
		}
		if want, got := len(ref.EncodeOrdinary(s)), enc.Count(s); got != want {
			t.Errorf("Count(%q) = %d, want %d", s, got, want)
		}
	})
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
	// Long pieces: never below the exact count, and cheap.
	for _, s := range []string{strings.Repeat(" ", 1000) + "x", strings.Repeat("a", 5000), strings.Repeat("ab", 300)} {
		if got, exact := enc.Bound(s, -1), enc.Count(s); got < exact {
			t.Errorf("Bound(%.20q…) = %d, below the exact %d", s, got, exact)
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
// pieces just under LongPiece (the most merging Bound does).
func BenchmarkBound(b *testing.B) {
	enc := tokenizer.O200k()
	text := strings.Repeat(strings.Repeat("a", tokenizer.LongPiece-1)+" ", (1<<20)/tokenizer.LongPiece) // " aaa…" pieces of LongPiece bytes
	b.SetBytes(int64(len(text)))
	for b.Loop() {
		enc.Bound(text, -1)
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
