package omendb

import (
	"fmt"
	"math/rand"
	"strings"
	"sync"
	"testing"
)

// drain reads a cursor to its end in pages of `page`.
func drain(t *testing.T, c *Cursor, page int, withVectors bool) ([]string, []float32) {
	t.Helper()
	var ids []string
	var vecs []float32
	for {
		got, v, err := c.Next(page, withVectors)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) == 0 {
			return ids, vecs
		}
		if len(got) > page || (withVectors && len(v) != len(got)*dim) {
			t.Fatalf("page of %d IDs, %d floats for max %d", len(got), len(v), page)
		}
		ids = append(ids, got...)
		vecs = append(vecs, v...)
	}
}

func TestCursorSnapshot(t *testing.T) {
	r := rand.New(rand.NewSource(11))
	s, _ := create(t, Options{})
	data := randVecs(r, 300, dim)
	ids := idsOf(300, "v")
	ids[7] = strings.Repeat("L", 200) // longer than the first try's room
	if err := s.Put(ids, data); err != nil {
		t.Fatal(err)
	}
	c, err := s.Cursor()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	// After the moment: a new batch, a delete, a compaction.
	if err := s.Put(idsOf(50, "late"), randVecs(r, 50, dim)); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Delete(ids[:10]); err != nil {
		t.Fatal(err)
	}
	if err := s.Compact(); err != nil {
		t.Fatal(err)
	}
	got, vecs := drain(t, c, 7, true)
	if strings.Join(got, ",") != strings.Join(ids, ",") {
		t.Fatalf("the cursor listed %d IDs, not the %d of its moment in slot order", len(got), len(ids))
	}
	if !eqF(vecs, data) {
		t.Fatal("the cursor's vectors differ from those put")
	}
	if _, _, err := c.Next(0, false); !IsStatus(err, ErrInvalidArgument) {
		t.Fatalf("max 0: %v", err)
	}
	c2, err := s.Cursor()
	if err != nil {
		t.Fatal(err)
	}
	now, _ := drain(t, c2, 1000, false)
	if len(now) != 340 {
		t.Fatalf("a new cursor lists %d IDs, want 340", len(now))
	}
	c2.Close()
	c2.Close() // a no-op
	if _, _, err := c2.Next(5, false); !IsStatus(err, ErrInvalidArgument) {
		t.Fatalf("Next after Close: %v", err)
	}
	// The store closes first: the cursor refuses, Close still frees it.
	c3, err := s.Cursor()
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	_, _, err = c3.Next(5, true)
	wantStatus(t, err, ErrInvalidArgument)
	c3.Close()
}

// Batches of a writer goroutine are in a cursor whole or not at all (and
// the race detector watches the cursor beside the writer).
func TestCursorBesideAWriter(t *testing.T) {
	const batch = 25
	s, _ := create(t, Options{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for round := 0; round < 60; round++ {
			if err := s.Put(idsOf(batch, fmt.Sprintf("r%d", round)), make([]float32, batch*dim)); err != nil {
				t.Error(err)
				return
			}
			if round >= 2 {
				if _, err := s.Delete(idsOf(batch, fmt.Sprintf("r%d", round-2))); err != nil {
					t.Error(err)
					return
				}
			}
		}
	}()
	for i := 0; i < 20; i++ {
		c, err := s.Cursor()
		if err != nil {
			t.Fatal(err)
		}
		got, _ := drain(t, c, 9, false)
		c.Close()
		counts := map[string]int{}
		for _, id := range got {
			counts[id[:strings.IndexByte(id, '-')]]++
		}
		for round, n := range counts {
			if n != batch {
				t.Fatalf("%s: %d of the batch's %d IDs in one cursor", round, n, batch)
			}
		}
	}
	wg.Wait()
}

func TestCursorOfACompressedStore(t *testing.T) {
	r := rand.New(rand.NewSource(12))
	s, _ := create(t, Options{DropRaw: true, PQM: 4})
	if err := s.Put(idsOf(300, "z"), randVecs(r, 300, dim)); err != nil {
		t.Fatal(err)
	}
	if err := s.TrainPQ(nil); err != nil {
		t.Fatal(err)
	}
	c, err := s.Cursor()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_, _, err = c.Next(10, true)
	wantStatus(t, err, ErrInvalidArgument)
	if got, _ := drain(t, c, 64, false); len(got) != 300 {
		t.Fatalf("%d IDs", len(got))
	}
	// Search by ID works there (the query is the reconstruction); range search does not.
	hits, err := s.SearchByID("z-5", 3, nil, true)
	if err != nil || len(hits) != 3 {
		t.Fatalf("SearchByID: %v %v", hits, err)
	}
	_, _, err = s.RangeSearch(make([]float32, dim), 1, 10, nil)
	wantStatus(t, err, ErrInvalidArgument)
}

func TestSearchByID(t *testing.T) {
	r := rand.New(rand.NewSource(13))
	s, _ := create(t, Options{})
	data := randVecs(r, 400, dim)
	ids := idsOf(400, "v")
	if err := s.Put(ids, data); err != nil {
		t.Fatal(err)
	}
	q := data[42*dim : 43*dim]
	plain, err := s.Search(q, 11, &SearchParams{Exact: true})
	if err != nil {
		t.Fatal(err)
	}
	self, err := s.SearchByID("v-42", 10, &SearchParams{Exact: true}, false)
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(self) != fmt.Sprint(plain[:10]) {
		t.Fatalf("SearchByID %v, Search %v", self, plain[:10])
	}
	others, err := s.SearchByID("v-42", 10, &SearchParams{Exact: true}, true)
	if err != nil {
		t.Fatal(err)
	}
	var want []Hit
	for _, h := range plain {
		if h.ID != "v-42" {
			want = append(want, h)
		}
	}
	if fmt.Sprint(others) != fmt.Sprint(want[:10]) {
		t.Fatalf("excluding self: %v, want %v", others, want[:10])
	}
	_, err = s.SearchByID("nope", 3, nil, false)
	wantStatus(t, err, ErrNotFound)
	// The filter applies.
	only, err := s.SearchByID("v-42", 10, &SearchParams{FilterIDs: []string{"v-1", "v-42"}}, true)
	if err != nil || len(only) != 1 || only[0].ID != "v-1" {
		t.Fatalf("filtered: %v %v", only, err)
	}
}

func TestRangeSearch(t *testing.T) {
	r := rand.New(rand.NewSource(14))
	s, _ := create(t, Options{PQM: 4})
	n := 500
	data := randVecs(r, n, dim)
	ids := idsOf(n, "v")
	if err := s.Put(ids, data); err != nil {
		t.Fatal(err)
	}
	if err := s.TrainPQ(nil); err != nil {
		t.Fatal(err)
	}
	q := randVecs(r, 1, dim)
	order, dist := brute(data, q, n, L2)
	radius := float32((dist[49] + dist[50]) / 2) // the 50 nearest, no tie at the edge
	hits, total, err := s.RangeSearch(q, radius, 1000, nil)
	if err != nil {
		t.Fatal(err)
	}
	if total != 50 || len(hits) != 50 {
		t.Fatalf("%d hits of %d, want 50: exact even in a trained store", len(hits), total)
	}
	for i, h := range hits {
		if h.ID != ids[order[i]] {
			t.Fatalf("hit %d = %s, want %s", i, h.ID, ids[order[i]])
		}
	}
	capped, total, err := s.RangeSearch(q, radius, 5, &SearchParams{Threads: 2})
	if err != nil || total != 50 || fmt.Sprint(capped) != fmt.Sprint(hits[:5]) {
		t.Fatalf("capped: %v of %d, %v", capped, total, err)
	}
	_, total, err = s.RangeSearch(q, radius, 0, nil)
	if err != nil || total != 50 {
		t.Fatalf("count only: %d, %v", total, err)
	}
	_, _, err = s.RangeSearch(q[:3], radius, 5, nil)
	wantStatus(t, err, ErrDimension)
}
