package chaos

import (
	"reflect"
	"slices"
	"testing"
	"time"
)

func TestScheduleIsDeterministic(t *testing.T) {
	c := Counts{Kills: 50, Stalls: 20, Partitions: 10, Restarts: 5}
	a := Schedule(3, c, 12, 2*time.Second, 2*time.Minute)
	b := Schedule(3, c, 12, 2*time.Second, 2*time.Minute)
	if !reflect.DeepEqual(a, b) {
		t.Fatal("the same seed gave two schedules")
	}
	if other := Schedule(4, c, 12, 2*time.Second, 2*time.Minute); reflect.DeepEqual(a, other) {
		t.Fatal("two seeds gave the same schedule")
	}
}

func TestScheduleHoldsWhatWasAsked(t *testing.T) {
	c := Counts{Kills: 50, Stalls: 20, Partitions: 10, Restarts: 5}
	warmup, span := 2*time.Second, 2*time.Minute
	faults := Schedule(11, c, 12, warmup, span)
	got := map[Kind]int{}
	modes := map[Mode]int{}
	for _, f := range faults {
		got[f.Kind]++
		if f.At < warmup || f.At >= span {
			t.Errorf("%v: outside [%v, %v)", f, warmup, span)
		}
		if f.Kind != Restart && (f.Agent < 0 || f.Agent >= 12) {
			t.Errorf("%v: no such agent", f)
		}
		if f.For <= 0 {
			t.Errorf("%v: no duration", f)
		}
		if f.Kind == Partition {
			modes[f.Mode]++
		}
	}
	want := map[Kind]int{Kill: 50, Stall: 20, Partition: 10, Restart: 5}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("kinds = %v, want %v", got, want)
	}
	if modes[Refuse] == 0 || modes[Blackhole] == 0 {
		t.Errorf("partition modes = %v, want both", modes)
	}
	if !slices.IsSortedFunc(faults, func(a, b Fault) int { return int(a.At - b.At) }) {
		t.Error("faults are not in time order")
	}
}

func TestPercentile(t *testing.T) {
	s := func(xs ...int) []time.Duration {
		out := make([]time.Duration, len(xs))
		for i, x := range xs {
			out[i] = time.Duration(x) * time.Second
		}
		return out
	}
	tests := []struct {
		xs   []time.Duration
		p    float64
		want time.Duration
	}{
		{nil, 50, 0},
		{s(7), 99, 7 * time.Second},
		{s(4, 1, 3, 2), 50, 2 * time.Second},
		{s(4, 1, 3, 2), 99, 4 * time.Second},
		{s(1, 2, 3, 4, 5, 6, 7, 8, 9, 10), 90, 9 * time.Second},
		{s(1, 2, 3, 4, 5, 6, 7, 8, 9, 10), 0, 1 * time.Second},
	}
	for _, tt := range tests {
		if got := Percentile(tt.xs, tt.p); got != tt.want {
			t.Errorf("Percentile(%v, %v) = %v, want %v", tt.xs, tt.p, got, tt.want)
		}
	}
}
