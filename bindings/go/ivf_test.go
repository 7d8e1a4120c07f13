package omendb

import (
	"fmt"
	"math"
	"math/rand"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const ivfN = 4000

// clustered returns n vectors around centres (each value +-0.1): the shape
// IVF is for.
func clustered(r *rand.Rand, centres []float32, n int) []float32 {
	v := make([]float32, 0, n*dim)
	nc := len(centres) / dim
	for i := 0; i < n; i++ {
		c := r.Intn(nc)
		for j := 0; j < dim; j++ {
			v = append(v, centres[c*dim+j]+0.2*(r.Float32()-0.5))
		}
	}
	return v
}

func centres(r *rand.Rand) []float32 {
	c := make([]float32, 40*dim)
	for i := range c {
		c[i] = 2*r.Float32() - 1
	}
	return c
}

// ivfStore creates a trained IVF store (PQ 4-bit) of ivfN clustered
// vectors and returns it with 200 queries from the same clusters.
func ivfStore(t *testing.T, lists uint32) (*Store, string, []float32) {
	t.Helper()
	r := rand.New(rand.NewSource(19))
	cs := centres(r)
	s, path := create(t, Options{PQM: 8, PQBits: 4, IVF: true, IVFLists: lists})
	if st, err := s.Stats(); err != nil || st.IVFLists != 0 || st.IVFStages != 0 || st.IVFListCodeBytes != 0 {
		t.Fatalf("before training: IVFLists %d, IVFStages %d, IVFListCodeBytes %d, %v", st.IVFLists, st.IVFStages, st.IVFListCodeBytes, err)
	}
	if err := s.Put(idsOf(ivfN, "v"), clustered(r, cs, ivfN)); err != nil {
		t.Fatal(err)
	}
	if err := s.TrainPQ(nil); err != nil {
		t.Fatal(err)
	}
	// One stage (4-byte codes, 4,000 vectors): the lists hold whole PQ8x4 codes.
	if st, err := s.Stats(); err != nil || st.IVFStages != 1 || st.IVFListCodeBytes != 4 {
		t.Fatalf("after training: IVFStages %d, IVFListCodeBytes %d, %v", st.IVFStages, st.IVFListCodeBytes, err)
	}
	return s, path, clustered(r, cs, 200)
}

// recall is the share of exact's IDs that found holds, row by row.
func recall(found, exact [][]Hit) float64 {
	hit, all := 0, 0
	for i := range exact {
		in := map[string]bool{}
		for _, h := range found[i] {
			in[h.ID] = true
		}
		for _, h := range exact[i] {
			all++
			if in[h.ID] {
				hit++
			}
		}
	}
	return float64(hit) / float64(all)
}

func TestIVFSearchMeetsTheTargetAndNProbeChangesIt(t *testing.T) {
	s, _, queries := ivfStore(t, 0)
	st, err := s.Stats()
	if err != nil || st.IVFLists != 62 { // about sqrt(n) (round(sqrt(4000)) = 63), at most n/64
		t.Fatalf("IVFLists %d (want %d), %v", st.IVFLists, ivfN/64, err)
	}
	exact, err := s.SearchBatch(queries, 10, &SearchParams{Exact: true})
	if err != nil {
		t.Fatal(err)
	}
	search := func(p *SearchParams) [][]Hit {
		found, err := s.SearchBatch(queries, 10, p)
		if err != nil {
			t.Fatal(err)
		}
		return found
	}
	def := recall(search(nil), exact)
	if def < 0.9 {
		t.Fatalf("default recall@10 %.3f", def)
	}
	if one := recall(search(&SearchParams{NProbe: 1}), exact); one >= def {
		t.Fatalf("NProbe 1 gives %.3f, the default %.3f", one, def)
	}
	low, high := recall(search(&SearchParams{TargetRecall: 0.5}), exact), recall(search(&SearchParams{TargetRecall: 0.99}), exact)
	if low >= high || high < 0.95 {
		t.Fatalf("target 0.5 gives %.3f, 0.99 %.3f", low, high)
	}
	if all := recall(search(&SearchParams{NProbe: math.MaxUint32, Rerank: 1000}), exact); all != 1 {
		t.Fatalf("every list and a deep re-rank give %.3f", all)
	}
	// Search and SearchByID pass the same parameters as SearchBatch.
	for _, p := range []*SearchParams{nil, {NProbe: 1}, {TargetRecall: 0.5}} {
		batch := search(p)
		for i := 0; i < 20; i++ {
			q := queries[i*dim : (i+1)*dim]
			one, err := s.Search(q, 10, p)
			if err != nil || fmt.Sprint(one) != fmt.Sprint(batch[i]) {
				t.Fatalf("%+v: Search %v (%v), SearchBatch %v", p, one, err, batch[i])
			}
		}
		for i := 0; i < ivfN; i += 200 {
			id := fmt.Sprintf("v-%d", i)
			v, err := s.Get(id)
			if err != nil {
				t.Fatal(err)
			}
			byID, err1 := s.SearchByID(id, 10, p, false)
			byVec, err2 := s.Search(v, 10, p)
			if err1 != nil || err2 != nil || fmt.Sprint(byID) != fmt.Sprint(byVec) {
				t.Fatalf("%+v: SearchByID %v (%v), Search %v (%v)", p, byID, err1, byVec, err2)
			}
		}
	}
}

func TestIVFSurvivesReopen(t *testing.T) {
	s, path, queries := ivfStore(t, 0)
	before, err := s.SearchBatch(queries, 10, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	again, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer again.Close()
	if st, err := again.Stats(); err != nil || st.IVFLists != 62 { // round(sqrt(4000)) = 63, at most 4000 / 64
		t.Fatalf("reopened: IVFLists %d, %v", st.IVFLists, err)
	}
	after, err := again.SearchBatch(queries, 10, nil)
	if err != nil || fmt.Sprint(after) != fmt.Sprint(before) {
		t.Fatalf("reopening changed the results (%v)", err)
	}
}

// A bit of the codebooks file flipped: the store opens without its index
// (searches exact), IndexDamage and Stats say so, RebuildIndex restores it.
func TestDamagedIndexIsReportedAndRebuilt(t *testing.T) {
	s, path, queries := ivfStore(t, 0)
	if err := s.IndexDamage(); err != nil {
		t.Fatalf("intact index reported damaged: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	matches, _ := filepath.Glob(filepath.Join(path, "codebooks.*"))
	if len(matches) != 1 {
		t.Fatalf("codebooks files: %v", matches)
	}
	bytes, err := os.ReadFile(matches[0])
	if err != nil {
		t.Fatal(err)
	}
	bytes[4096+40] ^= 0x10
	if err := os.WriteFile(matches[0], bytes, 0o644); err != nil {
		t.Fatal(err)
	}
	d, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	damage := d.IndexDamage()
	wantStatus(t, damage, ErrCorrupt)
	if e := damage.(*Error); !strings.Contains(e.Message, filepath.Base(matches[0])) {
		t.Fatalf("the report names no file: %v", e)
	}
	if st, err := d.Stats(); err != nil || st.IndexStatus != ErrCorrupt || st.PQTrained {
		t.Fatalf("stats while damaged: %+v, %v", st, err)
	}
	exact, err := d.SearchBatch(queries[:20*dim], 10, &SearchParams{Exact: true})
	if err != nil {
		t.Fatal(err)
	}
	if got, err := d.SearchBatch(queries[:20*dim], 10, &SearchParams{NProbe: 1}); err != nil || fmt.Sprint(got) != fmt.Sprint(exact) {
		t.Fatalf("searches are not exact while the index is damaged (%v)", err)
	}
	wantStatus(t, d.Compact(), ErrCorrupt)
	calls := 0
	if err := d.RebuildIndex(func(done, total uint64) { calls++ }); err != nil || calls == 0 {
		t.Fatalf("rebuild: %v after %d progress calls", err, calls)
	}
	if err := d.IndexDamage(); err != nil {
		t.Fatalf("after the rebuild: %v", err)
	}
	if st, err := d.Stats(); err != nil || st.IndexStatus != 0 || st.IVFLists == 0 {
		t.Fatalf("stats after the rebuild: %+v, %v", st, err)
	}
}

func TestIVFListsAskedFor(t *testing.T) {
	s, _, _ := ivfStore(t, 20)
	if st, err := s.Stats(); err != nil || st.IVFLists != 20 {
		t.Fatalf("IVFLists %d, %v", st.IVFLists, err)
	}
	// Without IVF no index is built.
	flat, _ := create(t, Options{PQM: 8, PQBits: 4})
	r := rand.New(rand.NewSource(3))
	if err := flat.Put(idsOf(ivfN, "v"), clustered(r, centres(r), ivfN)); err != nil {
		t.Fatal(err)
	}
	if err := flat.TrainPQ(nil); err != nil {
		t.Fatal(err)
	}
	if st, err := flat.Stats(); err != nil || st.IVFLists != 0 || !st.PQTrained {
		t.Fatalf("a store without IVF: %+v, %v", st, err)
	}
}

func TestIVFRefusals(t *testing.T) {
	s, _, queries := ivfStore(t, 0)
	q := queries[:dim]
	for _, bad := range []float32{1.5, -0.5, float32(math.NaN()), float32(math.Inf(1))} {
		p := &SearchParams{TargetRecall: bad}
		_, err := s.Search(q, 10, p)
		wantStatus(t, err, ErrInvalidArgument)
		_, err = s.SearchBatch(queries, 10, p)
		wantStatus(t, err, ErrInvalidArgument)
		_, err = s.SearchByID("v-0", 10, p, false)
		wantStatus(t, err, ErrInvalidArgument)
	}
	dir := t.TempDir()
	for name, o := range map[string]Options{
		"no PQ":             {Create: true, Dim: dim, IVF: true},
		"IVFLists, not IVF": {Create: true, Dim: dim, PQM: 8, IVFLists: 10},
	} {
		path := filepath.Join(dir, name)
		_, err := Open(path, o)
		wantStatus(t, err, ErrInvalidArgument)
		if _, statErr := os.Stat(path); !os.IsNotExist(statErr) {
			t.Fatalf("%s: a refused open left %s (%v)", name, path, statErr)
		}
	}
	_, err := Open(filepath.Join(dir, "x"), Options{Create: true, Dim: dim, PQM: 8, IVFLists: 10})
	if e, ok := err.(*Error); !ok || e.Op != "omen_open" || e.Message != "IVFLists is 10 but IVF is false: set IVF to build the index" {
		t.Fatalf("IVFLists without IVF: %v", err)
	}
}

// ExplainSearch says what Search does (the plan's NProbe and Rerank given
// explicitly find the same), and Calibration lists the points the targets
// choose from.
func TestExplainSearchAndCalibration(t *testing.T) {
	s, _, queries := ivfStore(t, 0)
	points, err := s.Calibration()
	if err != nil || len(points) < 2 {
		t.Fatalf("calibration %v, %v", points, err)
	}
	for i := 1; i < len(points); i++ {
		if points[i].Recall <= points[i-1].Recall || points[i].Cost < points[i-1].Cost {
			t.Fatalf("point %d: %+v after %+v", i, points[i], points[i-1])
		}
	}
	for _, target := range []float32{0.5, 0.9, 0.99} {
		plan, err := s.ExplainSearch(10, &SearchParams{TargetRecall: target})
		if err != nil {
			t.Fatal(err)
		}
		want := points[len(points)-1]
		for _, p := range points {
			if p.Recall >= target {
				want = p
				break
			}
		}
		if plan != (SearchPlan{Method: SearchIVF, NProbe: want.NProbe, Rerank: 10 * want.RerankPerK, CalibratedRecall: want.Recall}) {
			t.Fatalf("target %v: plan %+v, point %+v", target, plan, want)
		}
		a, err := s.SearchBatch(queries[:30*dim], 10, &SearchParams{TargetRecall: target})
		if err != nil {
			t.Fatal(err)
		}
		b, err := s.SearchBatch(queries[:30*dim], 10, &SearchParams{NProbe: plan.NProbe, Rerank: plan.Rerank})
		if err != nil {
			t.Fatal(err)
		}
		if fmt.Sprint(a) != fmt.Sprint(b) {
			t.Fatalf("target %v: the plan's setting searched otherwise", target)
		}
	}
	if plan, err := s.ExplainSearch(5, &SearchParams{NProbe: 2, Rerank: 3}); err != nil || plan != (SearchPlan{Method: SearchIVF, NProbe: 2, Rerank: 5}) {
		t.Fatalf("explicit: %+v, %v", plan, err)
	}
	if plan, err := s.ExplainSearch(10, &SearchParams{Exact: true}); err != nil || plan.Method != SearchExact {
		t.Fatalf("exact: %+v, %v", plan, err)
	}
	// A filter: half the store probes more lists; two IDs are searched exactly.
	plain, err := s.ExplainSearch(10, &SearchParams{TargetRecall: 0.9})
	if err != nil {
		t.Fatal(err)
	}
	half, err := s.ExplainSearch(10, &SearchParams{TargetRecall: 0.9, Filter: func(id []byte) bool { return id[len(id)-1]%2 == 0 }})
	if err != nil || half.Method != SearchIVF || half.NProbe <= plain.NProbe {
		t.Fatalf("half the store: %+v (unfiltered %+v), %v", half, plain, err)
	}
	if few, err := s.ExplainSearch(10, &SearchParams{FilterIDs: []string{"v1", "v2"}}); err != nil || few.Method != SearchExact {
		t.Fatalf("two IDs: %+v, %v", few, err)
	}
	_, err = s.ExplainSearch(10, &SearchParams{TargetRecall: 1.5})
	wantStatus(t, err, ErrInvalidArgument)
	_, err = s.ExplainSearch(-1, nil)
	wantStatus(t, err, ErrInvalidArgument)
}

// Calibrate measures the targets on the host's queries (here halfway
// between stored vectors of different clusters, like none of them): the
// calibration in use changes to what it returns, Stats says so, it is
// committed by the call (a read-only reopen after a discarding close finds
// it), and training measures on stored vectors again.
func TestCalibrateOnHostQueries(t *testing.T) {
	s, path, _ := ivfStore(t, 0)
	if st, err := s.Stats(); err != nil || st.CalibrationQueries != 0 {
		t.Fatalf("after training: CalibrationQueries %d, %v", st.CalibrationQueries, err)
	}
	trained, err := s.Calibration()
	if err != nil || len(trained) == 0 {
		t.Fatalf("training's calibration %v, %v", trained, err)
	}
	const nq = 300
	ids := make([]string, 0, 2*nq)
	for i := 0; i < nq; i++ {
		ids = append(ids, fmt.Sprintf("v-%d", i), fmt.Sprintf("v-%d", (i*37+1000)%ivfN))
	}
	pairs, found, err := s.GetBatch(ids)
	if err != nil {
		t.Fatal(err)
	}
	queries := make([]float32, nq*dim)
	for i := 0; i < nq; i++ {
		if !found[2*i] || !found[2*i+1] {
			t.Fatalf("pair %d not stored", i)
		}
		for d := 0; d < dim; d++ {
			queries[i*dim+d] = (pairs[2*i*dim+d] + pairs[(2*i+1)*dim+d]) / 2
		}
	}
	points, err := s.Calibrate(queries, nil)
	if err != nil || len(points) == 0 {
		t.Fatalf("Calibrate: %v, %v", points, err)
	}
	for i := 1; i < len(points); i++ {
		if points[i].Recall <= points[i-1].Recall || points[i].Cost < points[i-1].Cost {
			t.Fatalf("point %d: %+v after %+v", i, points[i], points[i-1])
		}
	}
	if fmt.Sprint(points) == fmt.Sprint(trained) {
		t.Fatalf("the calibration did not change: %v", points)
	}
	inUse := func(s *Store, what string) {
		t.Helper()
		st, err := s.Stats()
		if err != nil || st.CalibrationQueries != nq {
			t.Fatalf("%s: CalibrationQueries %d (want %d), %v", what, st.CalibrationQueries, nq, err)
		}
		got, err := s.Calibration()
		if err != nil || fmt.Sprint(got) != fmt.Sprint(points) {
			t.Fatalf("%s: Calibration %v, Calibrate returned %v (%v)", what, got, points, err)
		}
	}
	inUse(s, "after Calibrate")
	// Searches by target choose from the new points.
	plan, err := s.ExplainSearch(10, &SearchParams{TargetRecall: 0.9})
	if err != nil {
		t.Fatal(err)
	}
	want := points[len(points)-1]
	for _, p := range points {
		if p.Recall >= 0.9 {
			want = p
			break
		}
	}
	if plan.NProbe != want.NProbe || plan.CalibratedRecall != want.Recall {
		t.Fatalf("target 0.9: plan %+v, point %+v", plan, want)
	}

	// Refused, and the calibration in use stays.
	_, err = s.Calibrate(queries[:len(queries)-1], nil)
	wantStatus(t, err, ErrDimension)
	for _, empty := range [][]float32{nil, {}} {
		_, err = s.Calibrate(empty, nil)
		wantStatus(t, err, ErrInvalidArgument)
	}
	bad := append([]float32(nil), queries...)
	bad[3*dim+2] = float32(math.NaN())
	_, err = s.Calibrate(bad, nil)
	wantStatus(t, err, ErrInvalidArgument)
	inUse(s, "after the refusals")

	// Committed by the call: a close that commits nothing keeps it.
	if err := s.CloseDiscard(); err != nil {
		t.Fatal(err)
	}
	ro, err := Open(path, Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	inUse(ro, "reopened")
	_, err = ro.Calibrate(queries, nil)
	wantStatus(t, err, ErrReadOnly)
	if err := ro.Close(); err != nil {
		t.Fatal(err)
	}

	// Training measures on the store's own vectors again.
	w, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	if err := w.TrainPQ(nil); err != nil {
		t.Fatal(err)
	}
	if st, err := w.Stats(); err != nil || st.CalibrationQueries != 0 {
		t.Fatalf("after training again: CalibrationQueries %d, %v", st.CalibrationQueries, err)
	}
}

// Calibrate's progress: total is 3 x nq on every call, done never
// decreases, the last call has done == total; from the callback a search
// works and a write is refused (the calibration holds the writer). nil
// calibrates without one; a panic in it is re-raised after the C call.
func TestCalibrateProgress(t *testing.T) {
	s, _, queries := ivfStore(t, 0)
	nq := len(queries) / dim
	var calls [][2]uint64
	var putErr, searchErr error
	var hits []Hit
	points, err := s.Calibrate(queries, func(done, total uint64) {
		if len(calls) == 0 {
			putErr = s.Put([]string{"from-progress"}, queries[:dim])
			hits, searchErr = s.Search(queries[:dim], 10, nil)
		}
		calls = append(calls, [2]uint64{done, total})
	})
	if err != nil || len(points) == 0 {
		t.Fatalf("Calibrate: %v, %v", points, err)
	}
	if len(calls) == 0 {
		t.Fatal("no progress calls")
	}
	for i, c := range calls {
		if c[1] != uint64(3*nq) {
			t.Fatalf("call %d %v: total != 3 x %d queries", i, c, nq)
		}
		if i > 0 && c[0] < calls[i-1][0] {
			t.Fatalf("done decreased at call %d: %v", i, calls)
		}
	}
	if last := calls[len(calls)-1]; last[0] != last[1] {
		t.Fatalf("last call %v: done != total", last)
	}
	wantStatus(t, putErr, ErrInvalidArgument)
	if in, err := s.Contains("from-progress"); err != nil || in {
		t.Fatalf("the refused put is stored: %v, %v", in, err)
	}
	if searchErr != nil || len(hits) != 10 {
		t.Fatalf("search from the callback: %v, %v", hits, searchErr)
	}
	if st, err := s.Stats(); err != nil || st.CalibrationQueries != uint32(nq) {
		t.Fatalf("CalibrationQueries %d (want %d), %v", st.CalibrationQueries, nq, err)
	}
	// nil progress and a panicking callback
	if _, err := s.Calibrate(queries[:50*dim], nil); err != nil {
		t.Fatalf("Calibrate(nil): %v", err)
	}
	func() {
		defer func() {
			if r := recover(); r != "stop" {
				t.Fatalf("panic in callback not re-raised: %v", r)
			}
		}()
		s.Calibrate(queries[:50*dim], func(done, total uint64) { panic("stop") })
	}()
}

// Only a trained IVF index can be calibrated.
func TestCalibrateRefusesStoresWithoutIVF(t *testing.T) {
	r := rand.New(rand.NewSource(5))
	data := clustered(r, centres(r), ivfN)
	queries := data[:50*dim]
	flat, _ := create(t, Options{PQM: 8, PQBits: 4})
	if err := flat.Put(idsOf(ivfN, "v"), data); err != nil {
		t.Fatal(err)
	}
	if err := flat.TrainPQ(nil); err != nil {
		t.Fatal(err)
	}
	_, err := flat.Calibrate(queries, nil)
	wantStatus(t, err, ErrInvalidArgument)
	if e := err.(*Error); e.Op != "omen_calibrate" || !strings.Contains(e.Message, "without an IVF index") {
		t.Fatalf("a store without IVF: %v", e)
	}
	untrained, _ := create(t, Options{PQM: 8, PQBits: 4, IVF: true})
	if err := untrained.Put(idsOf(ivfN, "v"), data); err != nil {
		t.Fatal(err)
	}
	_, err = untrained.Calibrate(queries, nil)
	wantStatus(t, err, ErrInvalidArgument)
	if st, err := untrained.Stats(); err != nil || st.CalibrationQueries != 0 {
		t.Fatalf("untrained: CalibrationQueries %d, %v", st.CalibrationQueries, err)
	}
}
