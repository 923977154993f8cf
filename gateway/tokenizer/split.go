package tokenizer

import (
	"unicode"
	"unicode/utf8"
)

// The o200k_base pre-tokenizer, written out as code. OpenAI splits text with
// this regular expression before byte-pair encoding each piece:
//
//	A1 [^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?
//	A2 [^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?
//	A3 \p{N}{1,3}
//	A4  ?[^\s\p{L}\p{N}]+[\r\n/]*
//	A5 \s*[\r\n]+
//	A6 \s+(?!\S)
//	A7 \s+
//
// Go ports run it on a backtracking engine (regexp2), which is slow and, on
// long runs of whitespace, quadratic: 100 KB of " \n" took 11 s. Each
// alternative above is decided here by looking at maximal runs of one
// character class, so splitting is linear in the input. The tests compare
// every piece with the reference implementation (tiktoken-go on regexp2).

// class bits of a rune.
const (
	cUpper  = 1 << iota // Lu Lt Lm Lo M: the first class of A1 and A2
	cLower              // Ll Lm Lo M: the second class
	cLetter             // \p{L}
	cNumber             // \p{N}
	cSpace              // \s
	cCRLF               // \r or \n
)

var asciiClass [utf8.RuneSelf]uint8

func init() {
	for r := range rune(utf8.RuneSelf) {
		asciiClass[r] = classOf(r)
	}
}

func classOf(r rune) uint8 {
	var c uint8
	switch {
	case unicode.IsUpper(r) || unicode.IsTitle(r):
		c = cUpper | cLetter
	case unicode.IsLower(r):
		c = cLower | cLetter
	case unicode.In(r, unicode.Lm, unicode.Lo):
		c = cUpper | cLower | cLetter
	case unicode.IsMark(r):
		c = cUpper | cLower
	case unicode.IsNumber(r):
		c = cNumber
	case unicode.IsSpace(r):
		c = cSpace
		if r == '\r' || r == '\n' {
			c |= cCRLF
		}
	}
	return c
}

// prefix reports whether c is in [^\r\n\p{L}\p{N}], the optional first
// character of A1 and A2.
func prefix(c uint8) bool { return c&(cCRLF|cLetter|cNumber) == 0 }

// punct reports whether c is in [^\s\p{L}\p{N}], the body of A4.
func punct(c uint8) bool { return c&(cSpace|cLetter|cNumber) == 0 }

// splitter walks a string piece by piece.
type splitter struct{ s string }

// at returns the class and size of the rune at i (size 0 at the end).
func (p splitter) at(i int) (uint8, int) {
	if i >= len(p.s) {
		return 0, 0
	}
	if b := p.s[i]; b < utf8.RuneSelf {
		return asciiClass[b], 1
	}
	r, n := utf8.DecodeRuneInString(p.s[i:])
	return classOf(r), n
}

// run returns the end of the maximal run of runes from i whose class has
// one of the bits of want.
func (p splitter) run(i int, want uint8) int {
	for {
		c, n := p.at(i)
		if n == 0 || c&want == 0 {
			return i
		}
		i += n
	}
}

// next returns the end of the piece that starts at i (i < len(s)).
func (p splitter) next(i int) int {
	c, n := p.at(i)
	// A1, then A2, each first with the optional prefix character, as the
	// engine tries them.
	for _, alt := range [2]func(int) int{p.upperLower, p.upperOnly} {
		if prefix(c) {
			if e := alt(i + n); e > 0 {
				return e
			}
		}
		if e := alt(i); e > 0 {
			return e
		}
	}
	if c&cNumber != 0 { // A3
		e := i + n
		for range 2 {
			c2, n2 := p.at(e)
			if n2 == 0 || c2&cNumber == 0 {
				break
			}
			e += n2
		}
		return e
	}
	// A4: an optional space, then punctuation, then [\r\n/]*.
	j := i
	if p.s[i] == ' ' {
		if c2, n2 := p.at(i + 1); n2 > 0 && punct(c2) {
			j = i + 1
		}
	}
	if c2, n2 := p.at(j); n2 > 0 && punct(c2) {
		e := j
		for {
			c3, n3 := p.at(e)
			if n3 == 0 || !punct(c3) {
				break
			}
			e += n3
		}
		for e < len(p.s) && (p.s[e] == '\r' || p.s[e] == '\n' || p.s[e] == '/') {
			e++
		}
		return e
	}
	// Only whitespace is left: c has cSpace.
	end := p.run(i, cSpace)
	// A5: up to and including the last \r or \n of the run.
	for k := end - 1; k >= i; k-- {
		if p.s[k] == '\r' || p.s[k] == '\n' {
			return k + 1
		}
	}
	// A6: the run but its last character, when something follows and
	// that leaves at least one; else A7, the whole run.
	if end < len(p.s) {
		_, last := utf8.DecodeLastRuneInString(p.s[i:end])
		if end-last > i {
			return end - last
		}
	}
	return end
}

// upperLower matches A1's U*L+ and its contraction at j, and returns the
// match's end, or 0. U* gives characters back until L+ can start: the
// engine takes the first split that works, i.e. right after the U run, or
// else the last L-class character inside it; then L+ runs as far as it can.
func (p splitter) upperLower(j int) int {
	upperEnd := p.run(j, cUpper)
	if c, n := p.at(upperEnd); n > 0 && c&cLower != 0 {
		return p.contraction(p.run(upperEnd, cLower))
	}
	for k := upperEnd; k > j; {
		c, n := p.lastIn(j, k)
		k -= n
		if c&cLower != 0 {
			return p.contraction(p.run(k, cLower))
		}
	}
	return 0
}

// upperOnly matches A2's U+L* and its contraction at j, or returns 0. It
// runs only where A1 failed at j, so L* is empty.
func (p splitter) upperOnly(j int) int {
	if e := p.run(j, cUpper); e > j {
		return p.contraction(e)
	}
	return 0
}

// lastIn returns the class and size of the last rune of s[j:k].
func (p splitter) lastIn(j, k int) (uint8, int) {
	if b := p.s[k-1]; b < utf8.RuneSelf {
		return asciiClass[b], 1
	}
	r, n := utf8.DecodeLastRuneInString(p.s[j:k])
	return classOf(r), n
}

// contraction extends a match ending at e by (?i:'s|'t|'re|'ve|'m|'ll|'d).
func (p splitter) contraction(e int) int {
	if e+1 >= len(p.s) || p.s[e] != '\'' {
		return e
	}
	switch p.s[e+1] | 0x20 {
	case 's', 't', 'm', 'd':
		return e + 2
	case 'r', 'v':
		if e+2 < len(p.s) && p.s[e+2]|0x20 == 'e' {
			return e + 3
		}
	case 'l':
		if e+2 < len(p.s) && p.s[e+2]|0x20 == 'l' {
			return e + 3
		}
	}
	return e
}
