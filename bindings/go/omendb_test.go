package omendb

import (
	"fmt"
	"math"
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

const dim = 16

func randVecs(r *rand.Rand, n, d int) []float32 {
	v := make([]float32, n*d)
	for i := range v {
		v[i] = float32(r.NormFloat64())
	}
	return v
}

func idsOf(n int, prefix string) []string {
	ids := make([]string, n)
	for i := range ids {
		ids[i] = fmt.Sprintf("%s-%d", prefix, i)
	}
	return ids
}

func create(t *testing.T, o Options) (*Store, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "store")
	if o.Dim == 0 {
		o.Dim = dim
	}
	o.Create = true
	s, err := Open(path, o)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s, path
}

func eqF(a, b []float32) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if math.Float32bits(a[i]) != math.Float32bits(b[i]) {
			return false
		}
	}
	return true
}

func wantStatus(t *testing.T, err error, status int) {
	t.Helper()
	e, ok := err.(*Error)
	if !ok {
		t.Fatalf("want *Error with %s, got %T %v", StatusName(status), err, err)
	}
	if e.Status != status {
		t.Fatalf("want %s, got %v", StatusName(status), e)
	}
	if e.Name != StatusName(status) {
		t.Fatalf("Name %q, want %q", e.Name, StatusName(status))
	}
	if e.Message == "" {
		t.Fatalf("empty Message in %v", e)
	}
}

func TestVersionAndStatusNames(t *testing.T) {
	if Version() == "" {
		t.Fatal("empty version")
	}
	cases := []struct {
		status int
		name   string
	}{
		{OK, "OMEN_OK"}, {ErrInvalidArgument, "OMEN_ERR_INVALID_ARGUMENT"},
		{ErrDimension, "OMEN_ERR_DIMENSION"}, {ErrNotFound, "OMEN_ERR_NOT_FOUND"},
		{ErrIO, "OMEN_ERR_IO"}, {ErrCorrupt, "OMEN_ERR_CORRUPT"}, {ErrLocked, "OMEN_ERR_LOCKED"},
		{ErrVersion, "OMEN_ERR_VERSION"}, {ErrReadOnly, "OMEN_ERR_READ_ONLY"},
		{ErrNotTrained, "OMEN_ERR_NOT_TRAINED"}, {ErrBufferTooSmall, "OMEN_ERR_BUFFER_TOO_SMALL"},
		{ErrInternal, "OMEN_ERR_INTERNAL"}, {12, "OMEN_UNKNOWN"}, {-1, "OMEN_UNKNOWN"},
	}
	for _, c := range cases {
		if got := StatusName(c.status); got != c.name {
			t.Errorf("StatusName(%d) = %q, want %q", c.status, got, c.name)
		}
	}
}

func TestRoundTrip(t *testing.T) {
	r := rand.New(rand.NewSource(1))
	cases := []struct {
		name string
		ids  []string
	}{
		{"ascii", idsOf(100, "id")},
		{"binary", []string{"\x00\xff\xfe", "\u00e9\u4e2d", strings.Repeat("x", MaxIDLen)}},
		{"single", []string{"one"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s, _ := create(t, Options{})
			v := randVecs(r, len(c.ids), dim)
			if err := s.Put(c.ids, v); err != nil {
				t.Fatal(err)
			}
			for i, id := range c.ids {
				got, err := s.Get(id)
				if err != nil {
					t.Fatalf("Get(%q): %v", id, err)
				}
				if !eqF(got, v[i*dim:(i+1)*dim]) {
					t.Fatalf("Get(%q) not bit-exact", id)
				}
			}
			st, _ := s.Stats()
			if st.LiveVectors != uint64(len(c.ids)) {
				t.Fatalf("LiveVectors %d", st.LiveVectors)
			}
		})
	}
}

func TestPutBytesAndUpsert(t *testing.T) {
	s, _ := create(t, Options{Dim: 2})
	if err := s.PutBytes([][]byte{[]byte("k"), []byte("o"), []byte("k")}, []float32{1, 1, 2, 2, 3, 3}); err != nil {
		t.Fatal(err)
	}
	got, _ := s.Get("k")
	if !eqF(got, []float32{3, 3}) {
		t.Fatalf("last occurrence must win, got %v", got)
	}
	if err := s.Put([]string{"k"}, []float32{7, 7}); err != nil {
		t.Fatal(err)
	}
	got, _ = s.Get("k")
	if !eqF(got, []float32{7, 7}) {
		t.Fatalf("upsert, got %v", got)
	}
}

func TestGetBatchAndDelete(t *testing.T) {
	s, _ := create(t, Options{Dim: 2})
	if err := s.Put([]string{"a", "b", "c"}, []float32{1, 2, 3, 4, 5, 6}); err != nil {
		t.Fatal(err)
	}
	out, found, err := s.GetBatch([]string{"c", "zz", "a"})
	if err != nil {
		t.Fatal(err)
	}
	if !eqF(out, []float32{5, 6, 0, 0, 1, 2}) || fmt.Sprint(found) != "[true false true]" {
		t.Fatalf("GetBatch %v %v", out, found)
	}
	n, err := s.Delete([]string{"a", "zz", "b"})
	if err != nil || n != 2 {
		t.Fatalf("Delete = %d, %v", n, err)
	}
	if _, err := s.Get("a"); !IsStatus(err, ErrNotFound) {
		t.Fatalf("Get deleted: %v", err)
	}
	if n, err := s.Delete(nil); n != 0 || err != nil {
		t.Fatalf("empty Delete = %d, %v", n, err)
	}
	if err := s.Put(nil, nil); err != nil {
		t.Fatalf("empty Put: %v", err)
	}
}

func TestErrors(t *testing.T) {
	nan := float32(math.NaN())
	inf := float32(math.Inf(1))
	cases := []struct {
		name   string
		run    func(s *Store, path string) error
		status int
	}{
		{"missing id", func(s *Store, _ string) error { _, err := s.Get("nope"); return err }, ErrNotFound},
		{"nan", func(s *Store, _ string) error { return s.Put([]string{"a"}, []float32{1, nan}) }, ErrInvalidArgument},
		{"inf", func(s *Store, _ string) error { return s.Put([]string{"a"}, []float32{inf, 1}) }, ErrInvalidArgument},
		{"nan query", func(s *Store, _ string) error { _, err := s.Search([]float32{nan, 0}, 1, nil); return err }, ErrInvalidArgument},
		{"empty id", func(s *Store, _ string) error { return s.Put([]string{""}, []float32{1, 1}) }, ErrInvalidArgument},
		{"long id", func(s *Store, _ string) error {
			return s.Put([]string{strings.Repeat("y", MaxIDLen+1)}, []float32{1, 1})
		}, ErrInvalidArgument},
		{"buffer too small", func(s *Store, _ string) error { return s.GetInto("x", make([]float32, 1)) }, ErrBufferTooSmall},
		{"wrong vector length", func(s *Store, _ string) error { return s.Put([]string{"a"}, []float32{1, 2, 3}) }, ErrDimension},
		{"reopen other dim", func(s *Store, path string) error {
			s.Close()
			_, err := Open(path, Options{Dim: 3})
			return err
		}, ErrDimension},
		{"open missing", func(_ *Store, path string) error {
			_, err := Open(path+"-absent", Options{})
			return err
		}, ErrNotFound},
		{"create without parent", func(_ *Store, path string) error {
			_, err := Open(filepath.Join(path+"-absent", "child"), Options{Create: true, Dim: 2})
			return err
		}, ErrNotFound},
		{"bad metric", func(_ *Store, path string) error {
			_, err := Open(path+"-m", Options{Create: true, Dim: 2, Metric: 77})
			return err
		}, ErrInvalidArgument},
		{"pq_m does not divide dim", func(_ *Store, path string) error {
			_, err := Open(path+"-pq", Options{Create: true, Dim: 10, PQM: 3})
			return err
		}, ErrInvalidArgument},
		{"read only", func(s *Store, path string) error {
			s.Close()
			r, err := Open(path, Options{ReadOnly: true})
			if err != nil {
				return err
			}
			defer r.Close()
			return r.Put([]string{"b"}, []float32{1, 1})
		}, ErrReadOnly},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s, path := create(t, Options{Dim: 2})
			s.Put([]string{"x"}, []float32{0.5, 0.5})
			err := c.run(s, path)
			wantStatus(t, err, c.status)
			if !IsStatus(err, c.status) {
				t.Fatal("IsStatus")
			}
		})
	}
}

func TestBatchIsAllOrNothing(t *testing.T) {
	s, _ := create(t, Options{Dim: 2})
	err := s.Put([]string{"a", "b"}, []float32{1, 1, float32(math.NaN()), 1})
	wantStatus(t, err, ErrInvalidArgument)
	if _, err := s.Get("a"); !IsStatus(err, ErrNotFound) {
		t.Fatalf("first row of a failed batch was applied: %v", err)
	}
}

func TestClosedStore(t *testing.T) {
	s, _ := create(t, Options{})
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if _, err := s.Get("a"); err == nil {
		t.Fatal("Get on closed store")
	}
}

func brute(data []float32, q []float32, k int, m Metric) ([]int, []float64) {
	n := len(data) / len(q)
	d := make([]float64, n)
	qn := 0.0
	for j := range q {
		qn += float64(q[j]) * float64(q[j])
	}
	for i := 0; i < n; i++ {
		row := data[i*len(q) : (i+1)*len(q)]
		var l2, ip, rn float64
		for j := range q {
			a, b := float64(row[j]), float64(q[j])
			l2 += (a - b) * (a - b)
			ip += a * b
			rn += a * a
		}
		switch m {
		case L2:
			d[i] = l2
		case IP:
			d[i] = -ip
		case Cosine:
			d[i] = 1 - ip/(math.Sqrt(rn)*math.Sqrt(qn))
		}
	}
	idx := make([]int, n)
	for i := range idx {
		idx[i] = i
	}
	sort.SliceStable(idx, func(a, b int) bool { return d[idx[a]] < d[idx[b]] })
	idx = idx[:k]
	out := make([]float64, k)
	for i, j := range idx {
		out[i] = d[j]
	}
	return idx, out
}

func TestSearchMatchesBruteForce(t *testing.T) {
	r := rand.New(rand.NewSource(2))
	for _, m := range []Metric{L2, IP, Cosine} {
		for _, exact := range []bool{false, true} {
			t.Run(fmt.Sprintf("%v/exact=%v", m, exact), func(t *testing.T) {
				s, _ := create(t, Options{Metric: m})
				n, k := 400, 10
				data := randVecs(r, n, dim)
				ids := idsOf(n, "v")
				if err := s.Put(ids, data); err != nil {
					t.Fatal(err)
				}
				for rep := 0; rep < 5; rep++ {
					q := randVecs(r, 1, dim)
					hits, err := s.Search(q, k, &SearchParams{Exact: exact})
					if err != nil {
						t.Fatal(err)
					}
					want, wd := brute(data, q, k, m)
					if len(hits) != k {
						t.Fatalf("%d hits", len(hits))
					}
					for i, h := range hits {
						if h.ID != ids[want[i]] {
							t.Fatalf("hit %d = %s, want %s", i, h.ID, ids[want[i]])
						}
						if math.Abs(float64(h.Distance)-wd[i]) > 1e-4*(1+math.Abs(wd[i])) {
							t.Fatalf("distance %d = %g, want %g", i, h.Distance, wd[i])
						}
					}
				}
			})
		}
	}
}

func TestSearchBatch(t *testing.T) {
	r := rand.New(rand.NewSource(3))
	s, _ := create(t, Options{})
	data := randVecs(r, 200, dim)
	s.Put(idsOf(200, "v"), data)
	qs := randVecs(r, 6, dim)
	batch, err := s.SearchBatch(qs, 5, &SearchParams{Threads: 2})
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 6; i++ {
		one, _ := s.Search(qs[i*dim:(i+1)*dim], 5, nil)
		if fmt.Sprint(one) != fmt.Sprint(batch[i]) {
			t.Fatalf("query %d: batch %v single %v", i, batch[i], one)
		}
	}
	// k larger than the store
	small, _ := create(t, Options{Dim: 2})
	small.Put([]string{"a", "b"}, []float32{0, 0, 1, 1})
	res, err := small.SearchBatch([]float32{0, 0, 1, 1, 2, 2}, 10, nil)
	if err != nil || len(res) != 3 || len(res[0]) != 2 || res[2][0].ID != "b" {
		t.Fatalf("SearchBatch k>n: %v %v", res, err)
	}
	if id, err := small.KeyID(res[0][0].Key); err != nil || id != "a" {
		t.Fatalf("KeyID = %q %v", id, err)
	}
}

// QueryThreads shares each query's work among threads (here an exact scan
// of 5 MB, split from 2 MiB a thread) and finds the same hits.
func TestQueryThreads(t *testing.T) {
	const qd, n = 128, 10000
	r := rand.New(rand.NewSource(5))
	s, _ := create(t, Options{Dim: qd})
	if err := s.Put(idsOf(n, "v"), randVecs(r, n, qd)); err != nil {
		t.Fatal(err)
	}
	qs := randVecs(r, 3, qd)
	alone, err := s.SearchBatch(qs, 10, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, share := range []uint32{2, 3, 1024} {
		p := &SearchParams{QueryThreads: share}
		batch, err := s.SearchBatch(qs, 10, p)
		if err != nil || fmt.Sprint(batch) != fmt.Sprint(alone) {
			t.Fatalf("QueryThreads %d: batch %v, alone %v (%v)", share, batch, alone, err)
		}
		for i := range alone {
			one, err := s.Search(qs[i*qd:(i+1)*qd], 10, p)
			if err != nil || fmt.Sprint(one) != fmt.Sprint(alone[i]) {
				t.Fatalf("QueryThreads %d, query %d: %v, alone %v (%v)", share, i, one, alone[i], err)
			}
		}
	}
	_, err = s.Search(qs[:qd], 10, &SearchParams{QueryThreads: 1025})
	wantStatus(t, err, ErrInvalidArgument)
}

func TestPersistence(t *testing.T) {
	r := rand.New(rand.NewSource(4))
	s, path := create(t, Options{})
	st, _ := s.Stats()
	if st.CheckpointSeq != 1 {
		t.Fatalf("creation is checkpoint 1, got %d", st.CheckpointSeq)
	}
	data := randVecs(r, 50, dim)
	s.Put(idsOf(50, "p"), data)
	seq, err := s.Checkpoint()
	if err != nil || seq <= 1 {
		t.Fatalf("Checkpoint = %d %v", seq, err)
	}
	s.Delete([]string{"p-3"})
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s2, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	if s2.Dim() != dim {
		t.Fatalf("Dim %d", s2.Dim())
	}
	st, _ = s2.Stats()
	if st.LiveVectors != 49 || st.CheckpointSeq <= seq {
		t.Fatalf("after reopen: %+v (seq was %d)", st, seq)
	}
	got, _ := s2.Get("p-10")
	if !eqF(got, data[10*dim:11*dim]) {
		t.Fatal("vector changed across reopen")
	}
}

func TestContains(t *testing.T) {
	s, _ := create(t, Options{})
	defer s.Close()
	if err := s.Put([]string{"a", "b"}, make([]float32, 2*dim)); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Delete([]string{"a"}); err != nil {
		t.Fatal(err)
	}
	for id, want := range map[string]bool{"a": false, "b": true, "zz": false} {
		if got, err := s.Contains(id); err != nil || got != want {
			t.Fatalf("Contains(%q) = %v, %v; want %v", id, got, err, want)
		}
	}
	for _, bad := range []string{"", strings.Repeat("x", 1025)} {
		_, err := s.Contains(bad)
		wantStatus(t, err, ErrInvalidArgument)
	}
}

func TestCloseDiscard(t *testing.T) {
	s, path := create(t, Options{})
	if err := s.Put([]string{"a", "b", "c"}, make([]float32, 3*dim)); err != nil {
		t.Fatal(err)
	}
	seq, err := s.Checkpoint()
	if err != nil {
		t.Fatal(err)
	}
	s.Put([]string{"d"}, make([]float32, dim))
	s.Delete([]string{"b"})
	if err := s.CloseDiscard(); err != nil {
		t.Fatal(err)
	}
	if err := s.CloseDiscard(); err != nil {
		t.Fatalf("second CloseDiscard: %v", err)
	}
	// The writer lock is free at once.
	s, err = Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	st, _ := s.Stats()
	hasB, _ := s.Contains("b")
	hasD, _ := s.Contains("d")
	if st.CheckpointSeq != seq || st.LiveVectors != 3 || !hasB || hasD {
		t.Fatalf("after discard: %+v, b %v, d %v (want seq %d, 3 live, b, no d)", st, hasB, hasD, seq)
	}
	s.Delete([]string{"a", "b", "c"})
	if err := s.CloseDiscard(); err != nil {
		t.Fatal(err)
	}
	r, err := Open(path, Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	st, _ = r.Stats()
	if st.LiveVectors != 3 {
		t.Fatalf("discarded deletes were kept: %+v", st)
	}
	if err := r.CloseDiscard(); err != nil {
		t.Fatal(err)
	}
}

func TestSyncWrites(t *testing.T) {
	s, _ := create(t, Options{SyncWrites: true, Dim: 2})
	a, _ := s.Stats()
	s.Put([]string{"a"}, []float32{1, 2})
	b, _ := s.Stats()
	if b.CheckpointSeq <= a.CheckpointSeq {
		t.Fatalf("SyncWrites put did not checkpoint: %d -> %d", a.CheckpointSeq, b.CheckpointSeq)
	}
}

// vectorsVMFlags gives the VmFlags of this process's mappings of the
// store's vectors file (/proc/self/smaps).
func vectorsVMFlags(t *testing.T, path string) []string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(path, "vectors.*"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no vectors file in %s: %v", path, err)
	}
	sort.Strings(files)
	smaps, err := os.ReadFile("/proc/self/smaps")
	if err != nil {
		t.Fatal(err)
	}
	var flags []string
	ours := false
	for _, line := range strings.Split(string(smaps), "\n") {
		fields := strings.Fields(line)
		if strings.HasPrefix(line, "VmFlags:") {
			if ours {
				flags = append(flags, strings.Join(fields[1:], " "))
			}
		} else if len(fields) > 0 && strings.Contains(fields[0], "-") && !strings.HasSuffix(fields[0], ":") {
			ours = strings.HasSuffix(line, files[len(files)-1])
		}
	}
	return flags
}

func TestHugePagesMapsTheVectorsForHugePages(t *testing.T) {
	_, statErr := os.Stat("/sys/kernel/mm/transparent_hugepage/enabled")
	thp := statErr == nil
	s, path := create(t, Options{HugePages: true, Dim: 2})
	if err := s.Put([]string{"a", "b"}, []float32{1, 2, 3, 4}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Checkpoint(); err != nil {
		t.Fatal(err)
	}
	flags := vectorsVMFlags(t, path)
	if len(flags) == 0 {
		t.Fatal("the vectors file is not mapped")
	}
	for _, f := range flags {
		if thp && !strings.Contains(" "+f+" ", " hg ") {
			t.Fatalf("HugePages: mapping flags %q (transparent huge pages: %v)", f, thp)
		}
	}
	v, err := s.Get("b")
	if err != nil || v[0] != 3 || v[1] != 4 {
		t.Fatalf("Get: %v %v", v, err)
	}
}

func TestCompactAndStats(t *testing.T) {
	r := rand.New(rand.NewSource(5))
	s, _ := create(t, Options{})
	data := randVecs(r, 100, dim)
	s.Put(idsOf(100, "c"), data)
	s.Delete(idsOf(30, "c"))
	st, _ := s.Stats()
	if st.LiveVectors != 70 || st.DeadSlots < 30 || !st.RawKept || st.PQTrained || st.Dim != dim {
		t.Fatalf("stats %+v", st)
	}
	if err := s.Compact(); err != nil {
		t.Fatal(err)
	}
	st, _ = s.Stats()
	if st.LiveVectors != 70 || st.DeadSlots != 0 {
		t.Fatalf("after compact %+v", st)
	}
	hits, _ := s.Search(data[50*dim:51*dim], 1, nil)
	if hits[0].ID != "c-50" {
		t.Fatalf("search after compact: %v", hits)
	}
}

func TestRecover(t *testing.T) {
	s, path := create(t, Options{Dim: 2})
	s.Put([]string{"a", "b"}, []float32{1, 2, 3, 4})
	seq, _ := s.Checkpoint()
	s.Close()
	s2, rep, err := Recover(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	if rep.CheckpointSeq < seq || rep.LiveVectors != 2 {
		t.Fatalf("report %+v", rep)
	}
}

// The finalizer closes a dropped store, releasing its write lock.
func TestFinalizerClosesStore(t *testing.T) {
	path := filepath.Join(t.TempDir(), "fin")
	func() {
		s, err := Open(path, Options{Create: true, Dim: 2})
		if err != nil {
			t.Fatal(err)
		}
		s.Put([]string{"a"}, []float32{1, 2})
	}()
	var s2 *Store
	var err error
	for i := 0; i < 50; i++ {
		runtime.GC()
		time.Sleep(10 * time.Millisecond)
		if s2, err = Open(path, Options{}); err == nil {
			break
		}
	}
	if err != nil {
		t.Fatalf("store still locked after GC: %v", err)
	}
	defer s2.Close()
	if _, err := s2.Get("a"); err != nil {
		t.Fatalf("finalizer close lost data: %v", err)
	}
}

// A second writer in another process gets OMEN_ERR_LOCKED at once.
func TestLockedByOtherProcess(t *testing.T) {
	if p := os.Getenv("OMENDB_LOCK_CHILD"); p != "" {
		_, err := Open(p, Options{})
		fmt.Printf("CHILD:%v\n", err)
		return
	}
	_, path := create(t, Options{})
	cmd := exec.Command(os.Args[0], "-test.run=^TestLockedByOtherProcess$")
	cmd.Env = append(os.Environ(), "OMENDB_LOCK_CHILD="+path)
	out, _ := cmd.CombinedOutput()
	if !strings.Contains(string(out), "CHILD:") || !strings.Contains(string(out), "OMEN_ERR_LOCKED") {
		t.Fatalf("child: %s", out)
	}
}

// bytesPerRun is the heap bytes allocated per call of f.
func bytesPerRun(runs int, f func()) float64 {
	f()
	runtime.GC()
	var a, b runtime.MemStats
	runtime.ReadMemStats(&a)
	for i := 0; i < runs; i++ {
		f()
	}
	runtime.ReadMemStats(&b)
	return float64(b.TotalAlloc-a.TotalAlloc) / float64(runs)
}

// Put/Get of pre-packed batches hand Go memory to C in place. A copy of the
// 64x16 vectors would allocate 4 KiB per call; the cgo call itself may
// allocate a word (Go 1.19 boxes a cgo argument), nothing more.
func TestZeroCopyNoAllocs(t *testing.T) {
	s, _ := create(t, Options{})
	r := rand.New(rand.NewSource(6))
	v := randVecs(r, 64, dim)
	b := PackStrings(idsOf(64, "z"))
	if err := s.PutPacked(&b, v); err != nil {
		t.Fatal(err)
	}
	if n := bytesPerRun(200, func() {
		if err := s.PutPacked(&b, v); err != nil {
			t.Fatal(err)
		}
	}); n > 64 {
		t.Fatalf("PutPacked allocates %.0f bytes per call: it copies", n)
	}
	out := make([]float32, dim)
	if n := bytesPerRun(200, func() {
		if err := s.GetInto("z-5", out); err != nil {
			t.Fatal(err)
		}
	}); n > 32 {
		t.Fatalf("GetInto allocates %.0f bytes per call", n)
	}
	if !eqF(out, v[5*dim:6*dim]) {
		t.Fatal("GetInto")
	}
}

func TestTrainPQProgress(t *testing.T) {
	r := rand.New(rand.NewSource(7))
	d := 32
	s, _ := create(t, Options{Dim: uint32(d), PQM: 8})
	data := randVecs(r, 2000, d)
	ids := idsOf(2000, "q")
	if err := s.Put(ids, data); err != nil {
		t.Fatal(err)
	}
	var calls [][2]uint64
	err := s.TrainPQ(func(done, total uint64) { calls = append(calls, [2]uint64{done, total}) })
	if err != nil {
		t.Fatal(err)
	}
	if len(calls) == 0 {
		t.Fatal("no progress calls")
	}
	last := calls[len(calls)-1]
	if last[0] != last[1] {
		t.Fatalf("last call %v: done != total", last)
	}
	for i := 1; i < len(calls); i++ {
		if calls[i][1] != calls[0][1] || calls[i][0] < calls[i-1][0] {
			t.Fatalf("progress not monotone / total changed: %v", calls)
		}
	}
	st, _ := s.Stats()
	if !st.PQTrained || st.PQM != 8 || st.PQBits != 8 || st.DropRaw {
		t.Fatalf("stats after training %+v", st)
	}
	hits, err := s.Search(data[123*d:124*d], 10, &SearchParams{Rerank: 50})
	if err != nil || hits[0].ID != "q-123" {
		t.Fatalf("PQ search with rerank: %v %v", hits, err)
	}
	// nil progress and a panicking callback
	if err := s.TrainPQ(nil); err != nil {
		t.Fatalf("TrainPQ(nil): %v", err)
	}
	func() {
		defer func() {
			if r := recover(); r != "stop" {
				t.Fatalf("panic in callback not re-raised: %v", r)
			}
		}()
		s.TrainPQ(func(done, total uint64) { panic("stop") })
	}()
}

// Readers run concurrently with each other and with a writer; each failed
// call reports its own omen_last_error (per OS thread) even while other
// goroutines fail differently on other threads.
func TestConcurrentReadersAndErrors(t *testing.T) {
	r := rand.New(rand.NewSource(8))
	s, _ := create(t, Options{})
	data := randVecs(r, 1000, dim)
	ids := idsOf(1000, "c")
	if err := s.Put(ids, data); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for g := 0; g < 6; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			rr := rand.New(rand.NewSource(int64(g)))
			for i := 0; i < 300; i++ {
				j := rr.Intn(1000)
				v, err := s.Get(ids[j])
				if err != nil || !eqF(v, data[j*dim:(j+1)*dim]) {
					errs <- fmt.Errorf("Get %s: %v", ids[j], err)
					return
				}
				if g%2 == 0 {
					_, err = s.Get("missing")
					if e, ok := err.(*Error); !ok || e.Status != ErrNotFound || e.Message == "" {
						errs <- fmt.Errorf("missing: %#v", err)
						return
					}
				} else {
					err = s.GetInto(ids[j], make([]float32, 1))
					if e, ok := err.(*Error); !ok || e.Status != ErrBufferTooSmall || e.Message == "" {
						errs <- fmt.Errorf("small buffer: %#v", err)
						return
					}
				}
				hits, err := s.Search(data[j*dim:(j+1)*dim], 1, nil)
				if err != nil || hits[0].ID != ids[j] {
					errs <- fmt.Errorf("Search: %v %v", hits, err)
					return
				}
			}
		}(g)
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		for b := 0; b < 20; b++ {
			if err := s.Put(idsOf(50, fmt.Sprintf("w%d-", b)), data[:50*dim]); err != nil {
				errs <- err
				return
			}
		}
	}()
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if st, _ := s.Stats(); st.LiveVectors != 2000 {
		t.Fatalf("live %d", st.LiveVectors)
	}
}

// bruteAllowed is the k nearest (L2) of the rows whose ID keep allows, as IDs.
func bruteAllowed(data, q []float32, ids []string, k int, keep func(string) bool) []string {
	type cand struct {
		d  float64
		id string
	}
	var cs []cand
	for i, id := range ids {
		if !keep(id) {
			continue
		}
		var d float64
		for j := 0; j < dim; j++ {
			x := float64(data[i*dim+j]) - float64(q[j])
			d += x * x
		}
		cs = append(cs, cand{d, id})
	}
	sort.SliceStable(cs, func(a, b int) bool { return cs[a].d < cs[b].d })
	var out []string
	for i := 0; i < k && i < len(cs); i++ {
		out = append(out, cs[i].id)
	}
	return out
}

func hitIDs(hits []Hit) []string {
	out := []string{}
	for _, h := range hits {
		out = append(out, h.ID)
	}
	return out
}

func vNum(id string) int {
	var n int
	fmt.Sscanf(id, "v-%d", &n)
	return n
}

func TestSearchFilters(t *testing.T) {
	r := rand.New(rand.NewSource(11))
	s, _ := create(t, Options{})
	n := 400
	data := randVecs(r, n, dim)
	ids := idsOf(n, "v")
	if err := s.Put(ids, data); err != nil {
		t.Fatal(err)
	}
	var listed []string
	for i := 0; i < n; i += 10 {
		listed = append(listed, ids[i])
	}
	inList := func(id string) bool { return vNum(id)%10 == 0 }
	third := func(id string) bool { return vNum(id)%3 == 0 }
	var calls []string
	pred := func(id []byte) bool {
		calls = append(calls, string(id))
		return third(string(id))
	}
	cases := []struct {
		name  string
		p     SearchParams
		keep  func(string) bool
		calls int // predicate calls per search
	}{
		{"ids", SearchParams{FilterIDs: append(listed, "absent")}, inList, 0},
		{"ids/exact", SearchParams{FilterIDs: listed, Exact: true}, inList, 0},
		{"predicate", SearchParams{Filter: pred}, third, n},
		{"both", SearchParams{FilterIDs: listed, Filter: pred}, func(id string) bool { return inList(id) && third(id) }, len(listed)},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			for rep := 0; rep < 3; rep++ {
				q := randVecs(r, 1, dim)
				calls = nil
				hits, err := s.Search(q, 8, &c.p)
				if err != nil {
					t.Fatal(err)
				}
				want := bruteAllowed(data, q, ids, 8, c.keep)
				if fmt.Sprint(hitIDs(hits)) != fmt.Sprint(want) {
					t.Fatalf("hits %v, want %v", hitIDs(hits), want)
				}
				if len(calls) != c.calls {
					t.Fatalf("predicate called %d times, want %d (once per candidate)", len(calls), c.calls)
				}
			}
			// Batch: the same as one search per query; the predicate runs
			// once for the whole batch.
			qs := randVecs(r, 5, dim)
			calls = nil
			p := c.p
			p.Threads = 2
			batch, err := s.SearchBatch(qs, 6, &p)
			if err != nil {
				t.Fatal(err)
			}
			if len(calls) != c.calls {
				t.Fatalf("batch: predicate called %d times, want %d", len(calls), c.calls)
			}
			for i := 0; i < 5; i++ {
				want := bruteAllowed(data, qs[i*dim:(i+1)*dim], ids, 6, c.keep)
				if fmt.Sprint(hitIDs(batch[i])) != fmt.Sprint(want) {
					t.Fatalf("batch query %d: %v, want %v", i, hitIDs(batch[i]), want)
				}
			}
		})
	}
	// nil FilterIDs is no list; an empty one allows nothing.
	if hits, err := s.Search(data[:dim], 5, &SearchParams{FilterIDs: nil}); err != nil || len(hits) != 5 {
		t.Fatalf("nil FilterIDs: %v %v", hits, err)
	}
	if hits, err := s.Search(data[:dim], 5, &SearchParams{FilterIDs: []string{}}); err != nil || len(hits) != 0 {
		t.Fatalf("empty FilterIDs: %v %v", hits, err)
	}
	batch, err := s.SearchBatch(data[:2*dim], 5, &SearchParams{FilterIDs: []string{}})
	if err != nil || len(batch) != 2 || len(batch[0]) != 0 || len(batch[1]) != 0 {
		t.Fatalf("empty FilterIDs, batch: %v %v", batch, err)
	}
	// The predicate may call back into the store (no lock is held).
	hits, err := s.Search(data[:dim], 3, &SearchParams{Filter: func(id []byte) bool {
		v, err := s.Get(string(id))
		return err == nil && v[0] > 0
	}})
	if err != nil || len(hits) != 3 {
		t.Fatalf("re-entrant predicate: %v %v", hits, err)
	}
	for _, h := range hits {
		if v, _ := s.Get(h.ID); v[0] <= 0 {
			t.Fatalf("hit %s not allowed by the predicate", h.ID)
		}
	}
}

func TestSearchFilterPanicIsReraised(t *testing.T) {
	r := rand.New(rand.NewSource(12))
	s, _ := create(t, Options{})
	data := randVecs(r, 100, dim)
	s.Put(idsOf(100, "v"), data)
	for _, batch := range []bool{false, true} {
		calls := 0
		func() {
			defer func() {
				if r := recover(); r != "boom" {
					t.Fatalf("batch=%v: panic in the predicate not re-raised: %v", batch, r)
				}
			}()
			p := &SearchParams{Filter: func(id []byte) bool {
				calls++
				if calls == 5 {
					panic("boom")
				}
				return true
			}}
			if batch {
				s.SearchBatch(data[:3*dim], 4, p)
			} else {
				s.Search(data[:dim], 4, p)
			}
		}()
		if calls != 5 {
			t.Fatalf("batch=%v: predicate called %d times; after its panic it must not be called again", batch, calls)
		}
	}
	// The store and this goroutine's thread are fine afterwards.
	if hits, err := s.Search(data[:dim], 1, nil); err != nil || hits[0].ID != "v-0" {
		t.Fatalf("after the panic: %v %v", hits, err)
	}
}

// Hits come with their IDs from one call: IDs longer than the first
// buffer guess are fetched again with the reported size, and every ID is
// the one KeyID gives for the hit's key.
func TestSearchLongIDs(t *testing.T) {
	r := rand.New(rand.NewSource(21))
	s, _ := create(t, Options{})
	ids := make([]string, 8)
	for i := range ids {
		ids[i] = strings.Repeat(fmt.Sprintf("%04d", i), 250)
	}
	data := randVecs(r, 8, dim)
	if err := s.Put(ids, data); err != nil {
		t.Fatal(err)
	}
	hits, err := s.Search(data[3*dim:4*dim], 5, nil)
	if err != nil || len(hits) != 5 || hits[0].ID != ids[3] {
		t.Fatalf("Search: %d hits, %v", len(hits), err)
	}
	batch, err := s.SearchBatch(data[:3*dim], 4, &SearchParams{FilterIDs: ids[:6]})
	if err != nil || len(batch) != 3 {
		t.Fatalf("SearchBatch: %v", err)
	}
	for i, row := range append(batch, hits) {
		if len(row) == 0 {
			t.Fatalf("row %d is empty", i)
		}
		for _, hit := range row {
			if id, err := s.KeyID(hit.Key); err != nil || id != hit.ID {
				t.Fatalf("row %d: hit ID %.8q..., KeyID %.8q... %v", i, hit.ID, id, err)
			}
		}
	}
	if batch[1][0].ID != ids[1] {
		t.Fatalf("batch query 1: nearest %.8q...", batch[1][0].ID)
	}
	// Short rows: an allow-list of 2 with k = 4.
	short, err := s.SearchBatch(data[:2*dim], 4, &SearchParams{FilterIDs: ids[6:]})
	if err != nil || len(short[0]) != 2 || len(short[1]) != 2 {
		t.Fatalf("short rows: %v", err)
	}
}

// The IDs are read under the view the search ran on: compactions (which
// invalidate keys) racing with searches never leave a hit without its ID.
func TestSearchIDsDuringCompaction(t *testing.T) {
	r := rand.New(rand.NewSource(22))
	s, _ := create(t, Options{})
	data := randVecs(r, 300, dim)
	ids := idsOf(300, "v")
	s.Put(ids, data)
	qs := randVecs(r, 4, dim)
	done := make(chan error, 1)
	var stop atomic.Bool
	go func() {
		done <- func() error {
			for round := 0; round < 30 && !stop.Load(); round++ {
				part := ids[round*5 : round*5+5]
				if _, err := s.Delete(part); err != nil {
					return err
				}
				if err := s.Put(part, data[round*5*dim:(round*5+5)*dim]); err != nil {
					return err
				}
				if err := s.Compact(); err != nil {
					return err
				}
			}
			return nil
		}()
	}()
	for searches := 0; ; searches++ {
		select {
		case err := <-done:
			if err != nil {
				t.Fatal(err)
			}
			if searches == 0 {
				t.Fatal("no search ran")
			}
			return
		default:
		}
		batch, err := s.SearchBatch(qs, 10, nil)
		if err != nil {
			stop.Store(true)
			<-done // the writer stops before the store is closed
			t.Fatalf("search %d: %v", searches, err)
		}
		for _, row := range batch {
			if len(row) != 10 || !strings.HasPrefix(row[0].ID, "v") {
				stop.Store(true)
				<-done
				t.Fatalf("search %d: %v", searches, row)
			}
		}
	}
}
