package core

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// Resources is what a task asks of one node, or what a node offers.
type Resources struct {
	MilliCPUs   int64    `json:"milli_cpus"`
	MemoryBytes int64    `json:"memory_bytes"`
	GPUs        int      `json:"gpus"`
	GPUModels   []string `json:"gpu_models,omitempty"` // acceptable models when asking; empty means any
}

// GPU is one accelerator of a node.
type GPU struct {
	Model       string `json:"model"`
	MemoryBytes int64  `json:"memory_bytes,omitempty"`
}

// NormalizeGPUModel folds the ways people write a GPU model into one name:
// "NVIDIA GeForce RTX 3090" and "rtx3090" both become "rtx3090".
func NormalizeGPUModel(s string) string {
	s = strings.ToLower(s)
	for _, p := range []string{"nvidia", "geforce", "tesla", "-", " ", "_"} {
		s = strings.ReplaceAll(s, p, "")
	}
	return s
}

// ParseGPUs reads a GPU declaration such as "2xrtx3090" or "1xa100,1xrtx4090".
func ParseGPUs(s string) ([]GPU, error) {
	var gpus []GPU
	if strings.TrimSpace(s) == "" {
		return nil, nil
	}
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		n, model := 1, part
		if i := strings.Index(part, "x"); i > 0 {
			if v, err := strconv.Atoi(part[:i]); err == nil {
				n, model = v, part[i+1:]
			}
		}
		model = NormalizeGPUModel(model)
		if n < 1 || n > 1024 || model == "" {
			return nil, fmt.Errorf("core: bad GPU declaration %q: want COUNTxMODEL, for example 2xrtx3090", part)
		}
		for range n {
			gpus = append(gpus, GPU{Model: model})
		}
	}
	return gpus, nil
}

// ErrSize is returned by ParseBytes for text that is not a size.
var ErrSize = errors.New("core: not a size")

var sizeUnits = map[string]int64{
	"": 1, "b": 1,
	"k": 1000, "kb": 1000, "m": 1000 * 1000, "mb": 1000 * 1000, "g": 1000 * 1000 * 1000, "gb": 1000 * 1000 * 1000,
	"t": 1000 * 1000 * 1000 * 1000, "tb": 1000 * 1000 * 1000 * 1000,
	"ki": 1 << 10, "kib": 1 << 10, "mi": 1 << 20, "mib": 1 << 20, "gi": 1 << 30, "gib": 1 << 30, "ti": 1 << 40, "tib": 1 << 40,
}

// ParseBytes reads a size such as "32GiB", "512MB" or "1024".
func ParseBytes(s string) (int64, error) {
	t := strings.TrimSpace(s)
	i := 0
	for i < len(t) && (t[i] >= '0' && t[i] <= '9' || t[i] == '.') {
		i++
	}
	num, unit := t[:i], strings.ToLower(strings.TrimSpace(t[i:]))
	mult, ok := sizeUnits[unit]
	if num == "" || !ok {
		return 0, fmt.Errorf("%w: %q (write it like 512MiB, 32GiB or 2GB)", ErrSize, s)
	}
	v, err := strconv.ParseFloat(num, 64)
	if err != nil || v < 0 || v*float64(mult) > 1<<62 {
		return 0, fmt.Errorf("%w: %q (write it like 512MiB, 32GiB or 2GB)", ErrSize, s)
	}
	return int64(v * float64(mult)), nil
}

// FormatBytes writes a size in binary units, for people.
func FormatBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%dB", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f%ciB", float64(n)/float64(div), "KMGTPE"[exp])
}
