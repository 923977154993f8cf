package tokenizer

// mergeHeap gives the same result as mergeSmall in O(n log n): the parts
// are a linked list, and the candidate merges wait in a heap ordered by
// (rank, start), which is tiktoken's order (lowest rank, then leftmost).
// A candidate is stale once either of its parts has changed; stale ones are
// dropped when they come up.
func (e *Encoding) mergeHeap(piece string) int {
	n := len(piece)
	// Part i starts at byte i while alive; end[i] is where it ends (-1 once
	// merged into the part before it) and prev[i] the start of the part
	// before it (-1: none).
	end := make([]int32, n)
	prev := make([]int32, n)
	alive := n
	q := mergeQueue(make([]candidate, 0, n))
	for i := range n {
		end[i] = int32(i + 1)
		prev[i] = int32(i - 1)
		if i+2 <= n {
			if r := e.rank(piece[i : i+2]); r != noRank {
				q = append(q, candidate{rank: r, left: int32(i), right: int32(i + 1), rightEnd: int32(i + 2)})
			}
		}
	}
	q.init()
	for len(q) > 0 {
		c := q.pop()
		l, r := c.left, c.right
		if end[l] != r || end[r] != c.rightEnd {
			continue // stale
		}
		end[l], end[r] = end[r], -1
		if int(end[l]) < n {
			prev[end[l]] = l
		}
		alive--
		if p := prev[l]; p >= 0 {
			if rk := e.rank(piece[p:end[l]]); rk != noRank {
				q.push(candidate{rank: rk, left: p, right: l, rightEnd: end[l]})
			}
		}
		if nx := end[l]; int(nx) < n {
			if rk := e.rank(piece[l:end[nx]]); rk != noRank {
				q.push(candidate{rank: rk, left: l, right: nx, rightEnd: end[nx]})
			}
		}
	}
	return alive
}

// candidate is a possible merge of the part starting at left with the one
// starting at right, which ended at rightEnd when it was queued.
type candidate struct {
	rank                  uint32
	left, right, rightEnd int32
}

func (c candidate) before(d candidate) bool {
	return c.rank < d.rank || (c.rank == d.rank && c.left < d.left)
}

// mergeQueue is a binary min-heap of candidates (container/heap would box
// every element in an interface: one allocation per push).
type mergeQueue []candidate

func (q mergeQueue) init() {
	for i := len(q)/2 - 1; i >= 0; i-- {
		q.down(i)
	}
}

func (q *mergeQueue) push(c candidate) {
	*q = append(*q, c)
	h := *q
	for i := len(h) - 1; i > 0; {
		parent := (i - 1) / 2
		if !h[i].before(h[parent]) {
			break
		}
		h[i], h[parent] = h[parent], h[i]
		i = parent
	}
}

func (q *mergeQueue) pop() candidate {
	h := *q
	top := h[0]
	last := len(h) - 1
	h[0] = h[last]
	*q = h[:last]
	q.down(0)
	return top
}

func (q mergeQueue) down(i int) {
	for {
		small, l, r := i, 2*i+1, 2*i+2
		if l < len(q) && q[l].before(q[small]) {
			small = l
		}
		if r < len(q) && q[r].before(q[small]) {
			small = r
		}
		if small == i {
			return
		}
		q[i], q[small] = q[small], q[i]
		i = small
	}
}
