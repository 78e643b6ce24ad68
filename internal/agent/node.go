package agent

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"time"

	"lode.dev/lode/internal/core"
)

// detectMemory reads the machine's memory from /proc/meminfo.
func detectMemory() (int64, error) {
	f, err := os.Open("/proc/meminfo")
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) >= 2 && fields[0] == "MemTotal:" {
			kb, err := strconv.ParseInt(fields[1], 10, 64)
			if err != nil {
				return 0, fmt.Errorf("/proc/meminfo: %w", err)
			}
			return kb * 1024, nil
		}
	}
	return 0, fmt.Errorf("/proc/meminfo has no MemTotal")
}

// DetectGPUs asks nvidia-smi for the machine's GPUs. No nvidia-smi means no
// GPUs; a failing one is an error, so a broken driver is not mistaken for a
// machine without GPUs.
func DetectGPUs(ctx context.Context) ([]core.GPU, error) {
	path, err := exec.LookPath("nvidia-smi")
	if err != nil {
		return nil, nil
	}
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, path, "--query-gpu=name,memory.total", "--format=csv,noheader,nounits").Output()
	if err != nil {
		return nil, fmt.Errorf("nvidia-smi failed: %w (declare GPUs with --gpus, e.g. --gpus 2xrtx3090)", err)
	}
	return parseNvidiaSMI(string(out))
}

// parseNvidiaSMI reads `nvidia-smi --query-gpu=name,memory.total
// --format=csv,noheader,nounits`: one "NAME, MiB" line per GPU.
func parseNvidiaSMI(out string) ([]core.GPU, error) {
	var gpus []core.GPU
	for i, line := range strings.Split(strings.TrimSpace(out), "\n") {
		line = strings.TrimSpace(line)
		if line == "" {
			continue
		}
		name, mem, ok := strings.Cut(line, ",")
		if !ok {
			return nil, fmt.Errorf("nvidia-smi line %d: %q: want NAME, MEMORY_MIB", i+1, line)
		}
		mib, err := strconv.ParseInt(strings.TrimSpace(mem), 10, 64)
		if err != nil || mib < 0 {
			return nil, fmt.Errorf("nvidia-smi line %d: bad memory %q", i+1, strings.TrimSpace(mem))
		}
		gpus = append(gpus, core.GPU{Model: core.NormalizeGPUModel(name), MemoryBytes: mib << 20})
	}
	return gpus, nil
}

// advertiseAddr guesses the address other nodes reach this one at: the
// local address of a route towards the server.
func advertiseAddr(serverURL string) string {
	host := serverURL
	if i := strings.Index(host, "://"); i >= 0 {
		host = host[i+3:]
	}
	host, _, _ = strings.Cut(host, "/")
	if _, _, err := net.SplitHostPort(host); err != nil {
		host = net.JoinHostPort(host, "80")
	}
	c, err := net.Dial("udp", host) // no packet is sent
	if err != nil {
		return "127.0.0.1"
	}
	defer c.Close()
	return c.LocalAddr().(*net.UDPAddr).IP.String()
}

func defaultCPUs() int64 { return int64(runtime.NumCPU()) * 1000 }
