package spec

import (
	"fmt"
	"strconv"
	"strings"
)

// Error is one problem with a spec. Parse fills in where it is; Validate,
// which sees a decoded Job, leaves File, Line and Column empty.
type Error struct {
	File   string
	Line   int // 1-based; 0 when unknown
	Column int // 1-based; 0 when unknown (YAML syntax errors carry no column)
	// Field is the dotted path of the key at fault, with list indexes from
	// 0: "resources.gpus", "datasets[1].mount". Empty for problems with the
	// document as a whole.
	Field string
	Msg   string
	Hint  string // what to write instead; may be empty
}

// Error formats the problem as file:line:col: field: msg (hint), leaving
// out the parts that are unknown.
func (e *Error) Error() string {
	var b strings.Builder
	if e.File != "" || e.Line > 0 {
		b.WriteString(e.File)
		if e.Line > 0 {
			if e.File != "" {
				b.WriteByte(':')
			}
			b.WriteString(strconv.Itoa(e.Line))
			if e.Column > 0 {
				b.WriteByte(':')
				b.WriteString(strconv.Itoa(e.Column))
			}
		}
		b.WriteString(": ")
	}
	if e.Field != "" {
		b.WriteString(e.Field)
		b.WriteString(": ")
	}
	b.WriteString(e.Msg)
	if e.Hint != "" {
		fmt.Fprintf(&b, " (%s)", e.Hint)
	}
	return b.String()
}

// Errors is every problem Parse found in a spec, in the order they appear in
// the file. Parse returns it as *Errors; find it with errors.As.
type Errors []*Error

// Error writes one problem a line.
func (es *Errors) Error() string {
	lines := make([]string, len(*es))
	for i, e := range *es {
		lines[i] = e.Error()
	}
	return strings.Join(lines, "\n")
}

// Unwrap lets errors.As find a single *Error too.
func (es *Errors) Unwrap() []error {
	out := make([]error, len(*es))
	for i, e := range *es {
		out[i] = e
	}
	return out
}

// suggest returns the candidate closest to word when it is close enough to
// be a likely typo, or "".
func suggest(word string, candidates []string) string {
	w := strings.ToLower(word)
	// Rank by distance; on a tie, a candidate that starts like the word
	// wins ("cpu" is closer to "cpus" than to "gpu").
	rank := func(c string) int {
		r := editDistance(w, c) * 4
		if !strings.HasPrefix(c, w) {
			r += 2
		}
		if w == "" || c == "" || w[0] != c[0] {
			r++
		}
		return r
	}
	best, bestRank := "", -1
	for _, c := range candidates {
		if r := rank(c); bestRank < 0 || r < bestRank {
			best, bestRank = c, r
		}
	}
	bestDist := len(w) + 1
	if best != "" {
		bestDist = editDistance(w, best)
	}
	// One edit in four characters catches transpositions and slips without
	// suggesting "name" for "image".
	if bestDist <= max(1, len(w)/4) && bestDist < len(best) {
		return best
	}
	for _, c := range candidates {
		if len(w) >= 3 && strings.HasPrefix(c, w) {
			return c
		}
	}
	return ""
}

// editDistance is the optimal string alignment distance: insertions,
// deletions, substitutions and transpositions of adjacent bytes each cost 1.
func editDistance(a, b string) int {
	if len(a) > 64 || len(b) > 64 { // keys are short; do not spend time on garbage
		return max(len(a), len(b))
	}
	prev2 := make([]int, len(b)+1)
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
			if i > 1 && j > 1 && a[i-1] == b[j-2] && a[i-2] == b[j-1] {
				cur[j] = min(cur[j], prev2[j-2]+1)
			}
		}
		prev2, prev, cur = prev, cur, prev2
	}
	return prev[len(b)]
}
