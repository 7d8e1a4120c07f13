// Command example is the README's program: it creates a store in the
// directory given as its argument, puts, searches, lists and closes it,
// and prints "ok: omendb <version> ...". scripts/hosts/go.sh copies it
// into a module outside the repository and builds it against the
// installed library.
//
// Usage: go run ./example /tmp/vectors
package main

import (
	"fmt"
	"os"

	"omendb.dev/omendb"
)

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: example STORE_DIR")
		os.Exit(2)
	}
	if err := run(os.Args[1]); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

func run(dir string) error {
	s, err := omendb.Open(dir, omendb.Options{Create: true, Dim: 3, Metric: omendb.L2})
	if err != nil {
		return err
	}
	defer s.Close()
	if err := s.Put([]string{"a", "b", "c"}, []float32{1, 0, 0, 0, 1, 0, 0.9, 0.1, 0}); err != nil {
		return err
	}
	hits, err := s.Search([]float32{1, 0, 0}, 2, nil)
	if err != nil {
		return err
	}
	near, err := s.SearchByID("a", 1, nil, true) // the nearest other than "a"
	if err != nil {
		return err
	}
	within, total, err := s.RangeSearch([]float32{1, 0, 0}, 0.5, 10, nil)
	if err != nil {
		return err
	}
	c, err := s.Cursor()
	if err != nil {
		return err
	}
	defer c.Close()
	var listed []string
	for {
		ids, _, err := c.Next(2, true)
		if err != nil {
			return err
		}
		if len(ids) == 0 {
			break
		}
		listed = append(listed, ids...)
	}
	if hits[0].ID != "a" || near[0].ID != "c" || total != 2 || len(within) != 2 || len(listed) != 3 {
		return fmt.Errorf("unexpected results: %v %v %v %d %v", hits, near, within, total, listed)
	}
	fmt.Printf("ok: omendb %s; nearest %s, nearest to a: %s, within 0.5: %d, listed %v\n",
		omendb.Version(), hits[0].ID, near[0].ID, total, listed)
	_, err = s.Checkpoint()
	return err
}
