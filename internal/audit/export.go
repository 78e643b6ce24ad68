package audit

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
)

// Record is one line of an export: an entry or a checkpoint.
type Record struct {
	Entry      *Entry      `json:"entry,omitempty"`
	Checkpoint *Checkpoint `json:"checkpoint,omitempty"`
}

// WriteExport writes a log as JSON lines, entries then checkpoints.
func WriteExport(w io.Writer, entries []Entry, checkpoints []Checkpoint) error {
	enc := json.NewEncoder(w)
	for i := range entries {
		if err := enc.Encode(Record{Entry: &entries[i]}); err != nil {
			return err
		}
	}
	for i := range checkpoints {
		if err := enc.Encode(Record{Checkpoint: &checkpoints[i]}); err != nil {
			return err
		}
	}
	return nil
}

// maxLine bounds one line of an export.
const maxLine = 1 << 20

// ReadExport reads what WriteExport wrote. A line that is not one record
// is an error naming the line.
func ReadExport(r io.Reader) ([]Entry, []Checkpoint, error) {
	var (
		entries     []Entry
		checkpoints []Checkpoint
	)
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), maxLine)
	for line := 1; sc.Scan(); line++ {
		if len(sc.Bytes()) == 0 {
			continue
		}
		var rec Record
		if err := json.Unmarshal(sc.Bytes(), &rec); err != nil {
			return nil, nil, fmt.Errorf("audit export line %d: %v", line, err)
		}
		switch {
		case rec.Entry != nil && rec.Checkpoint == nil:
			entries = append(entries, *rec.Entry)
		case rec.Checkpoint != nil && rec.Entry == nil:
			checkpoints = append(checkpoints, *rec.Checkpoint)
		default:
			return nil, nil, fmt.Errorf("audit export line %d: want one entry or one checkpoint", line)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, nil, fmt.Errorf("audit export: %w", err)
	}
	return entries, checkpoints, nil
}
