// Command omendb-bench measures the per-call overhead of OmenDB through cgo:
// N calls of omen_get on a present ID and N/1000 calls of a 1,000-vector
// put_batch of 768-dim vectors, median of 5 runs.
//
// Usage: go run ./cmd/omendb-bench [-n N]
package main

/*
#cgo pkg-config: omendb
#include "omendb.h"
*/
import "C"

import (
	"flag"
	"fmt"
	"math/rand"
	"os"
	"path/filepath"
	"sort"
	"time"

	"omendb.dev/omendb"
)

const (
	dim   = 768
	batch = 1000
	runs  = 5
)

func median(xs []float64) float64 {
	sort.Float64s(xs)
	return xs[len(xs)/2]
}

func perCall(calls int, f func()) float64 {
	var per []float64
	for r := 0; r < runs; r++ {
		t0 := time.Now()
		f()
		per = append(per, float64(time.Since(t0).Nanoseconds())/float64(calls))
	}
	return median(per)
}

func must(err error) {
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

func main() {
	n := flag.Int("n", 100000, "get calls (put calls = n/1000)")
	flag.Parse()
	tmp, err := os.MkdirTemp("", "omendb-bench-go-")
	must(err)
	defer os.RemoveAll(tmp)
	r := rand.New(rand.NewSource(0))

	s, err := omendb.Open(filepath.Join(tmp, "get"), omendb.Options{Create: true, Dim: dim})
	must(err)
	v := make([]float32, dim)
	for i := range v {
		v[i] = float32(r.NormFloat64())
	}
	must(s.Put([]string{"present"}, v))
	out := make([]float32, dim)
	nsGetInto := perCall(*n, func() {
		for i := 0; i < *n; i++ {
			if err := s.GetInto("present", out); err != nil {
				panic(err)
			}
		}
	})
	nsGet := perCall(*n, func() {
		for i := 0; i < *n; i++ {
			if _, err := s.Get("present"); err != nil {
				panic(err)
			}
		}
	})
	nsNoop := perCall(*n, func() {
		for i := 0; i < *n; i++ {
			C.omen_version() // a bare cgo call: the floor of any call
		}
	})
	must(s.Close())

	calls := *n / 1000
	if calls < 1 {
		calls = 1
	}
	vecs := make([]float32, batch*dim)
	for i := range vecs {
		vecs[i] = float32(r.NormFloat64())
	}
	ids := make([][]string, calls)
	for b := range ids {
		ids[b] = make([]string, batch)
		for i := range ids[b] {
			ids[b][i] = fmt.Sprintf("b%d-%d", b, i)
		}
	}
	var per []float64
	for run := 0; run < runs; run++ {
		path := filepath.Join(tmp, fmt.Sprintf("put%d", run))
		ps, err := omendb.Open(path, omendb.Options{Create: true, Dim: dim})
		must(err)
		t0 := time.Now()
		for b := 0; b < calls; b++ {
			must(ps.Put(ids[b], vecs))
		}
		per = append(per, float64(time.Since(t0).Nanoseconds())/float64(calls))
		must(ps.Close())
		os.RemoveAll(path)
	}
	nsPut := median(per)

	fmt.Printf("host=go version=%s N=%d runs=%d (median)\n", omendb.Version(), *n, runs)
	fmt.Printf("  get, Store.GetInto (no alloc)        : %8.0f ns/call\n", nsGetInto)
	fmt.Printf("  get, Store.Get (allocates result)    : %8.0f ns/call\n", nsGet)
	fmt.Printf("  omen_version (bare cgo call)         : %8.0f ns/call\n", nsNoop)
	fmt.Printf("  put_batch 1000x768, Store.Put        : %8.0f ns/call = %.0f vectors/s\n", nsPut, batch*1e9/nsPut)
}
