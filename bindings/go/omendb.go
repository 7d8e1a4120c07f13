// Package omendb binds the OmenDB C ABI (omendb.h, libomendb.so)
// through cgo.
//
// The build finds the library with pkg-config (the omendb.pc that
// `make install` or `make install-lib` writes): install the library, and
// point PKG_CONFIG_PATH at <prefix>/lib/pkgconfig when the prefix is not a
// system one. At run time the loader must find libomendb.so too (a system
// library directory, LD_LIBRARY_PATH, or -ldflags=-r <libdir>). See
// README.md.
//
// Vectors are one flat row-major []float32 of n*dim values and are handed to
// the library in place (no copy). IDs are byte strings of 1 to 1024 bytes;
// a batch of IDs is packed once into one buffer plus n+1 uint64 offsets
// (see IDBatch, which can be packed once and reused).
//
// Every cgo call costs some tens of nanoseconds: prefer the batch calls.
//
// A *Store may be used by several goroutines at once, except that Close
// must not race with other calls on the same Store.
package omendb

/*
#cgo pkg-config: omendb
#include <stdlib.h>
#include "omendb.h"

// Exported from progress.go and filter.go.
extern void goOmenProgress(void *user, uint64_t done, uint64_t total);
extern int32_t goOmenFilter(void *user, uint8_t *id, size_t id_len);
*/
import "C"

import (
	"fmt"
	"runtime"
	"runtime/cgo"
	"unsafe"
)

// Status values of omen_status.
const (
	OK                 = 0
	ErrInvalidArgument = 1
	ErrDimension       = 2
	ErrNotFound        = 3
	ErrIO              = 4
	ErrCorrupt         = 5
	ErrLocked          = 6
	ErrVersion         = 7
	ErrReadOnly        = 8
	ErrNotTrained      = 9
	ErrBufferTooSmall  = 10
	ErrInternal        = 11
	MaxIDLen           = 1024
	openCreate         = 0x1
	openReadOnly       = 0x2
	openSyncWrites     = 0x4
	openDropRaw        = 0x8
	openHugePages      = 0x10
	openIVF            = 0x20
)

// Metric is the distance of a store.
type Metric uint32

const (
	L2     Metric = 0 // squared Euclidean
	IP     Metric = 1 // negative inner product
	Cosine Metric = 2
)

func (m Metric) String() string {
	switch m {
	case L2:
		return "l2"
	case IP:
		return "ip"
	case Cosine:
		return "cosine"
	}
	return fmt.Sprintf("Metric(%d)", uint32(m))
}

// Error is a failed call: the omen_status, its name and omen_last_error().
type Error struct {
	Status  int
	Name    string
	Message string
	Op      string // the C function (or wrapper check) that failed
}

func (e *Error) Error() string {
	return fmt.Sprintf("omendb: %s: %s (%d): %s", e.Op, e.Name, e.Status, e.Message)
}

// Is lets errors.Is(err, &omendb.Error{Status: omendb.ErrNotFound}) match on status.
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	return ok && t.Status == e.Status
}

// IsStatus reports whether err is an *Error with the given status.
func IsStatus(err error, status int) bool {
	e, ok := err.(*Error)
	return ok && e.Status == status
}

// StatusName is omen_status_name.
func StatusName(status int) string {
	return C.GoString(C.omen_status_name(C.int32_t(status)))
}

// Version is omen_version.
func Version() string { return C.GoString(C.omen_version()) }

// lastError builds the *Error of a failed call. It must run on the OS thread
// that made the call (omen_last_error is per thread): callers hold
// runtime.LockOSThread across both.
func lastError(st C.omen_status, op string) error {
	if st == C.OMEN_OK {
		return nil
	}
	return &Error{
		Status:  int(st),
		Name:    C.GoString(C.omen_status_name(C.int32_t(st))),
		Message: C.GoString(C.omen_last_error()),
		Op:      op,
	}
}

func wrapperError(status int, op, format string, args ...interface{}) error {
	return &Error{Status: status, Name: StatusName(status), Message: fmt.Sprintf(format, args...), Op: op}
}

// Options for Open and Recover. The zero value opens an existing store.
type Options struct {
	Create     bool
	ReadOnly   bool
	SyncWrites bool
	DropRaw    bool
	// HugePages keeps the vectors file in 2 MiB pages (OMEN_OPEN_HUGE_PAGES,
	// per open): padded puts, mappings advised for huge pages. Faster gets
	// and re-ranks for a store that memory holds; slower small puts.
	HugePages   bool
	Dim         uint32 // required to create; 0 = the store's own
	Metric      Metric
	PQM         uint32 // PQ sub-quantizers; 0 = no PQ
	PQBits      uint32 // 8 or 4; 0 = 8
	PQTrainSize uint32 // vectors that trigger automatic training; 0 = only TrainPQ
	Threads     uint32 // 0 = all cores
	// IVF builds an IVF index when PQ is trained (OMEN_OPEN_IVF; creation
	// only, needs PQM, not with DropRaw): searches then scan only the
	// lists nearest to the query (SearchParams.TargetRecall, NProbe).
	IVF bool
	// IVFLists, with IVF: the number of lists; 0 = chosen at training
	// (about sqrt(n), at most n/64). Without IVF it must be 0.
	IVFLists uint32
}

// check refuses what the C struct cannot say: lists without the index.
func (o *Options) check(op string) error {
	if o.IVFLists != 0 && !o.IVF {
		return wrapperError(ErrInvalidArgument, op, "IVFLists is %d but IVF is false: set IVF to build the index", o.IVFLists)
	}
	return nil
}

func (o *Options) c() C.omen_options {
	var co C.omen_options
	C.omen_options_default(&co)
	co.struct_size = C.uint32_t(unsafe.Sizeof(co))
	var f uint32
	if o.Create {
		f |= openCreate
	}
	if o.ReadOnly {
		f |= openReadOnly
	}
	if o.SyncWrites {
		f |= openSyncWrites
	}
	if o.DropRaw {
		f |= openDropRaw
	}
	if o.HugePages {
		f |= openHugePages
	}
	if o.IVF {
		f |= openIVF
	}
	co.flags = C.uint32_t(f)
	co.dim = C.uint32_t(o.Dim)
	co.metric = C.uint32_t(o.Metric)
	co.pq_m = C.uint32_t(o.PQM)
	co.pq_bits = C.uint32_t(o.PQBits)
	if o.PQBits == 0 {
		co.pq_bits = 8
	}
	co.pq_train_size = C.uint32_t(o.PQTrainSize)
	co.threads = C.uint32_t(o.Threads)
	co.ivf_lists = C.uint32_t(o.IVFLists)
	return co
}

// Store is an open store. Close it; a finalizer closes a forgotten one.
type Store struct {
	h    *C.omen_store
	dim  int
	path string
}

// RecoveryReport is omen_recovery.
type RecoveryReport struct {
	CheckpointSeq  uint64
	LiveVectors    uint64
	DiscardedBytes uint64
	VerifiedBytes  uint64
}

// Stats is omen_stats.
type Stats struct {
	Dim           uint32
	Metric        Metric
	PQM           uint32
	PQTrained     bool
	RawKept       bool
	LiveVectors   uint64
	DeadSlots     uint64
	CheckpointSeq uint64
	DiskBytes     uint64
	PayloadBytes  uint64
	HeapBytes     uint64
	PQBits        uint32 // 8 or 4; 0 when the store has no PQ
	PQTrainSize   uint32 // stored vectors that start training; 0 = only Train
	DropRaw       bool   // created with DropRaw
	// The status of the last automatic training if it failed (the put that
	// started it succeeded); 0 when none failed since one succeeded.
	AutoTrainStatus int
	// IVFLists is the number of lists of the trained IVF index; 0 without
	// one (or before training).
	IVFLists uint32
	// IndexStatus is ErrCorrupt while the search index open found damaged
	// is not rebuilt (IndexDamage says what); 0 otherwise.
	IndexStatus int
	// CalibrationQueries is how many host queries measured the IVF
	// calibration in use (Calibrate); 0 when training measured it on the
	// store's own vectors, or there is none.
	CalibrationQueries uint32
	// IVFStages is how the trained IVF index searches: 1 (its lists hold
	// whole codes), 2 (its lists hold each code's first IVFListCodeBytes;
	// stage two ranks the candidates by whole codes); 0 without one.
	IVFStages uint32
	// IVFListCodeBytes is the bytes of each code the IVF lists hold in
	// memory; 0 without an index.
	IVFListCodeBytes uint32
}

// Open opens (with opts.Create, creates) the store in directory path.
func Open(path string, opts Options) (*Store, error) {
	s, _, err := open(path, opts, false)
	return s, err
}

// Recover verifies every committed checksum, drops whatever lies past the
// last valid checkpoint, and opens the store.
func Recover(path string, opts Options) (*Store, RecoveryReport, error) {
	return open(path, opts, true)
}

func open(path string, opts Options, recover bool) (*Store, RecoveryReport, error) {
	var rep RecoveryReport
	op := "omen_open"
	if recover {
		op = "omen_recover"
	}
	if err := opts.check(op); err != nil {
		return nil, rep, err
	}
	cpath := C.CString(path)
	defer C.free(unsafe.Pointer(cpath))
	co := opts.c()
	var h *C.omen_store
	var st C.omen_status
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	if recover {
		var r C.omen_recovery
		r.struct_size = C.uint32_t(unsafe.Sizeof(r))
		st = C.omen_recover(cpath, &co, &h, &r)
		if st == C.OMEN_OK {
			rep = RecoveryReport{uint64(r.checkpoint_seq), uint64(r.live_vectors),
				uint64(r.discarded_bytes), uint64(r.verified_bytes)}
		}
	} else {
		st = C.omen_open(cpath, &co, &h)
	}
	if err := lastError(st, op); err != nil {
		return nil, rep, err
	}
	s := &Store{h: h, path: path}
	runtime.SetFinalizer(s, (*Store).finalize)
	stats, err := s.Stats()
	if err != nil {
		s.Close()
		return nil, rep, err
	}
	s.dim = int(stats.Dim)
	return s, rep, nil
}

func (s *Store) finalize() {
	if s.h != nil {
		C.omen_close(s.h)
		s.h = nil
	}
}

// Close checkpoints and frees the store. The Store is unusable afterwards,
// even when Close returns an error. Closing twice is a no-op.
func (s *Store) Close() error {
	return s.release(false)
}

// CloseDiscard frees the store without checkpointing: puts and deletes since
// the last checkpoint are dropped (reopening finds the store as of its last
// checkpoint), and the writer lock is released at once. Otherwise as Close.
func (s *Store) CloseDiscard() error {
	return s.release(true)
}

func (s *Store) release(discard bool) error {
	if s.h == nil {
		return nil
	}
	h := s.h
	s.h = nil
	runtime.SetFinalizer(s, nil)
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	if discard {
		return lastError(C.omen_close_discard(h), "omen_close_discard")
	}
	return lastError(C.omen_close(h), "omen_close")
}

// Dim is the dimension of the store.
func (s *Store) Dim() int { return s.dim }

// Path is the directory of the store.
func (s *Store) Path() string { return s.path }

func (s *Store) handle(op string) (*C.omen_store, error) {
	if s.h == nil {
		return nil, wrapperError(ErrInvalidArgument, op, "store is closed")
	}
	return s.h, nil
}

// ---------------------------------------------------------------- ID batches

// IDBatch is a packed batch of IDs: one byte buffer plus len+1 offsets,
// exactly as the C API reads them. Pack once, use for many calls.
type IDBatch struct {
	Buf     []byte
	Offsets []uint64
}

// Len is the number of IDs in the batch.
func (b *IDBatch) Len() int {
	if len(b.Offsets) == 0 {
		return 0
	}
	return len(b.Offsets) - 1
}

// PackStrings packs string IDs.
func PackStrings(ids []string) IDBatch { return pack(ids) }

// PackBytes packs byte-slice IDs.
func PackBytes(ids [][]byte) IDBatch { return pack(ids) }

func pack[T string | []byte](ids []T) IDBatch {
	total := 0
	for _, id := range ids {
		total += len(id)
	}
	b := IDBatch{Buf: make([]byte, 0, total), Offsets: make([]uint64, len(ids)+1)}
	for i, id := range ids {
		b.Buf = append(b.Buf, id...)
		b.Offsets[i+1] = uint64(len(b.Buf))
	}
	return b
}

func (b *IDBatch) ptrs() (*C.uint8_t, *C.uint64_t) {
	var ids *C.uint8_t
	var offs *C.uint64_t
	if len(b.Buf) > 0 {
		ids = (*C.uint8_t)(unsafe.Pointer(&b.Buf[0]))
	}
	if len(b.Offsets) > 0 {
		offs = (*C.uint64_t)(unsafe.Pointer(&b.Offsets[0]))
	}
	return ids, offs
}

func floatPtr(v []float32) *C.float {
	if len(v) == 0 {
		return nil
	}
	return (*C.float)(unsafe.Pointer(&v[0]))
}

// stringPtr is the address of a string's bytes without copying
// (unsafe.StringData is Go 1.20; this is the 1.19 spelling).
func stringPtr(s string) *C.uint8_t {
	if len(s) == 0 {
		return nil
	}
	return (*C.uint8_t)(*(*unsafe.Pointer)(unsafe.Pointer(&s)))
}

// ---------------------------------------------------------------- writes

// Put upserts len(ids) vectors; vectors holds len(ids)*Dim() floats,
// row-major, and is read in place.
func (s *Store) Put(ids []string, vectors []float32) error {
	b := PackStrings(ids)
	return s.PutPacked(&b, vectors)
}

// PutBytes is Put with byte-slice IDs.
func (s *Store) PutBytes(ids [][]byte, vectors []float32) error {
	b := PackBytes(ids)
	return s.PutPacked(&b, vectors)
}

// PutPacked is Put with an already packed batch: no allocation, no copy.
func (s *Store) PutPacked(ids *IDBatch, vectors []float32) error {
	h, err := s.handle("omen_put_batch")
	if err != nil {
		return err
	}
	n := ids.Len()
	if len(vectors) != n*s.dim {
		return wrapperError(ErrDimension, "omen_put_batch",
			"%d IDs need %d floats (dim %d), got %d", n, n*s.dim, s.dim, len(vectors))
	}
	idp, offp := ids.ptrs()
	vp := floatPtr(vectors)
	runtime.LockOSThread()
	st := C.omen_put_batch(h, C.size_t(n), idp, offp, vp)
	err = lastError(st, "omen_put_batch")
	runtime.UnlockOSThread()
	runtime.KeepAlive(s)
	runtime.KeepAlive(ids)
	runtime.KeepAlive(vectors)
	return err
}

// Delete deletes IDs and returns how many existed.
func (s *Store) Delete(ids []string) (int, error) {
	b := PackStrings(ids)
	return s.DeletePacked(&b)
}

// DeletePacked is Delete with an already packed batch.
func (s *Store) DeletePacked(ids *IDBatch) (int, error) {
	h, err := s.handle("omen_delete_batch")
	if err != nil {
		return 0, err
	}
	var out C.uint64_t
	idp, offp := ids.ptrs()
	runtime.LockOSThread()
	st := C.omen_delete_batch(h, C.size_t(ids.Len()), idp, offp, &out)
	err = lastError(st, "omen_delete_batch")
	runtime.UnlockOSThread()
	runtime.KeepAlive(s)
	runtime.KeepAlive(ids)
	return int(out), err
}

// Checkpoint makes everything written so far durable and returns its sequence number.
func (s *Store) Checkpoint() (uint64, error) {
	h, err := s.handle("omen_checkpoint")
	if err != nil {
		return 0, err
	}
	var seq C.uint64_t
	runtime.LockOSThread()
	err = lastError(C.omen_checkpoint(h, &seq), "omen_checkpoint")
	runtime.UnlockOSThread()
	runtime.KeepAlive(s)
	return uint64(seq), err
}

// Compact reclaims dead slots (and invalidates search keys).
func (s *Store) Compact() error {
	h, err := s.handle("omen_compact")
	if err != nil {
		return err
	}
	runtime.LockOSThread()
	err = lastError(C.omen_compact(h), "omen_compact")
	runtime.UnlockOSThread()
	runtime.KeepAlive(s)
	return err
}

// TrainPQ trains PQ codebooks and encodes every vector. progress (may be nil)
// is called on this goroutine with (done, total); a panic in it is re-raised
// after the C call returns.
func (s *Store) TrainPQ(progress func(done, total uint64)) error {
	return s.train("omen_train_pq", progress)
}

// RebuildIndex rebuilds the search index (PQ codebooks, IVF centroids and
// calibration, codes) from the raw vectors, as TrainPQ does, and removes the
// old or damaged index files: what a store whose index IndexDamage reports
// damaged needs. progress as for TrainPQ.
func (s *Store) RebuildIndex(progress func(done, total uint64)) error {
	return s.train("omen_rebuild_index", progress)
}

// IndexDamage is nil when the store's search index is intact (or it has
// none); else an *Error with Status ErrCorrupt saying which index file open
// found damaged and how. Such a store opened without its index: every vector
// is there, searches are exact, Compact is refused until RebuildIndex.
func (s *Store) IndexDamage() error {
	h, err := s.handle("omen_index_status")
	if err != nil {
		return err
	}
	runtime.LockOSThread()
	err = lastError(C.omen_index_status(h), "omen_index_status")
	runtime.UnlockOSThread()
	runtime.KeepAlive(s)
	return err
}

// train runs omen_train_pq or omen_rebuild_index (op) with progress.
func (s *Store) train(op string, progress func(done, total uint64)) error {
	h, err := s.handle(op)
	if err != nil {
		return err
	}
	return s.withProgress(op, progress, func(fn C.omen_progress_fn, user unsafe.Pointer) C.omen_status {
		if op == "omen_rebuild_index" {
			return C.omen_rebuild_index(h, fn, user)
		}
		return C.omen_train_pq(h, fn, user)
	})
}

// withProgress makes call, a C call (op) that takes an omen_progress_fn and
// its user pointer, with progress (nil: none) on this goroutine's OS thread,
// locked across the call and lastError; a panic in progress is re-raised
// after the C call returns.
func (s *Store) withProgress(op string, progress func(done, total uint64), call func(fn C.omen_progress_fn, user unsafe.Pointer) C.omen_status) error {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	if progress == nil {
		err := lastError(call(nil, nil), op)
		runtime.KeepAlive(s)
		return err
	}
	ps := &progressState{fn: progress}
	ch := cgo.NewHandle(ps)
	defer ch.Delete()
	st := call((C.omen_progress_fn)(C.goOmenProgress), unsafe.Pointer(&ch))
	err := lastError(st, op)
	runtime.KeepAlive(s)
	ps.rethrow()
	return err
}

// ---------------------------------------------------------------- reads

// Get returns the vector of id (ErrNotFound if absent).
func (s *Store) Get(id string) ([]float32, error) {
	out := make([]float32, s.dim)
	if err := s.GetInto(id, out); err != nil {
		return nil, err
	}
	return out, nil
}

// GetInto writes the vector of id into out (len(out) >= Dim()); no allocation.
func (s *Store) GetInto(id string, out []float32) error {
	h, err := s.handle("omen_get")
	if err != nil {
		return err
	}
	idp, op := stringPtr(id), floatPtr(out)
	runtime.LockOSThread()
	st := C.omen_get(h, idp, C.size_t(len(id)), op, C.size_t(len(out)))
	err = lastError(st, "omen_get")
	runtime.UnlockOSThread()
	runtime.KeepAlive(s)
	runtime.KeepAlive(id)
	runtime.KeepAlive(out)
	return err
}

// Contains reports whether the store holds id, without copying its vector.
func (s *Store) Contains(id string) (bool, error) {
	h, err := s.handle("omen_contains")
	if err != nil {
		return false, err
	}
	var found C.uint8_t
	runtime.LockOSThread()
	st := C.omen_contains(h, stringPtr(id), C.size_t(len(id)), &found)
	err = lastError(st, "omen_contains")
	runtime.UnlockOSThread()
	runtime.KeepAlive(s)
	runtime.KeepAlive(id)
	return found == 1, err
}

// GetBatch returns len(ids)*Dim() floats (missing rows zeroed) and a found flag per ID.
func (s *Store) GetBatch(ids []string) ([]float32, []bool, error) {
	b := PackStrings(ids)
	return s.GetBatchPacked(&b)
}

// GetBatchPacked is GetBatch with an already packed batch.
func (s *Store) GetBatchPacked(ids *IDBatch) ([]float32, []bool, error) {
	h, err := s.handle("omen_get_batch")
	if err != nil {
		return nil, nil, err
	}
	n := ids.Len()
	out := make([]float32, n*s.dim)
	found := make([]bool, n)
	if n == 0 {
		return out, found, nil
	}
	idp, offp := ids.ptrs()
	runtime.LockOSThread()
	// Go's bool is one byte holding 0 or 1, as found[] is in C.
	st := C.omen_get_batch(h, C.size_t(n), idp, offp, floatPtr(out),
		(*C.uint8_t)(unsafe.Pointer(&found[0])))
	err = lastError(st, "omen_get_batch")
	runtime.UnlockOSThread()
	runtime.KeepAlive(s)
	runtime.KeepAlive(ids)
	if err != nil {
		return nil, nil, err
	}
	return out, found, nil
}

// SearchParams are omen_search_params.
type SearchParams struct {
	Rerank  uint32 // re-rank this many PQ candidates exactly; 0 = none
	Exact   bool   // exact scan of raw vectors (no PQ)
	Threads uint32 // SearchBatch worker threads; 0 = store default
	// IVF stores: the lists scanned per query, all of them when larger,
	// with Rerank as given (0 re-ranks nothing); 0 = as many as
	// TargetRecall needs. Other stores ignore it.
	NProbe uint32
	// IVF stores: the recall@10 to aim at, in (0, 1], as measured at
	// training on the store's own vectors (or by Calibrate on the host's
	// queries); 0 = 0.95. It chooses the lists
	// scanned and (when Rerank is 0) the re-rank depth; ignored with
	// NProbe and by other stores. Outside [0, 1] (or NaN) every store
	// refuses it with ErrInvalidArgument.
	TargetRecall float32
	// QueryThreads > 1: up to that many threads (the calling one among
	// them) share each query's own work (the lists, codes or vectors it
	// reads and its re-rank), for latency on large stores; a query is
	// split only as far as it reads 2 MiB a thread, and its hits are the
	// same as on one thread. 0 or 1 = one; at most 1024.
	QueryThreads uint32
	// FilterIDs: only these IDs may be hits (IDs the store lacks are
	// ignored). nil = no list; a non-nil empty slice allows nothing. It is
	// copied into C memory for each call.
	FilterIDs []string
	// Filter: only IDs for which it returns true may be hits (with
	// FilterIDs too, both must allow). It runs on the searching goroutine,
	// once per candidate per call (per SearchBatch, not per query), with no
	// lock of the store held, so it may call the Store. id points into the
	// library and is valid only during the call: copy it to keep it. A
	// panic in it is re-raised once the search returns; the search keeps
	// nothing more after it.
	Filter func(id []byte) bool
}

// cParams builds the omen_search_params of one call. Its filter lives in C
// memory (cgo forbids passing C a Go pointer to memory holding Go
// pointers): the allow-list is copied there, and the cgo.Handle of the
// predicate too, as filter_user. Call free after the C call.
func (p *SearchParams) cParams() (C.omen_search_params, *searchFilter) {
	var cp C.omen_search_params
	cp.struct_size = C.uint32_t(unsafe.Sizeof(cp))
	if p == nil {
		return cp, nil
	}
	cp.rerank = C.uint32_t(p.Rerank)
	if p.Exact {
		cp.exact = 1
	}
	cp.threads = C.uint32_t(p.Threads)
	cp.nprobe = C.uint32_t(p.NProbe)
	cp.target_recall = C.float(p.TargetRecall)
	cp.query_threads = C.uint32_t(p.QueryThreads)
	if p.FilterIDs == nil && p.Filter == nil {
		return cp, nil
	}
	// One block: [handle uint64][offsets (n+1) x uint64][ID bytes].
	n, total := len(p.FilterIDs), 0
	for _, id := range p.FilterIDs {
		total += len(id)
	}
	head := 8
	if p.FilterIDs != nil {
		head += 8 * (n + 1)
	}
	f := &searchFilter{mem: C.malloc(C.size_t(head + total))}
	if p.FilterIDs != nil {
		offs := unsafe.Slice((*uint64)(unsafe.Add(f.mem, 8)), n+1)
		buf := unsafe.Slice((*byte)(unsafe.Add(f.mem, head)), total)
		offs[0] = 0
		at := 0
		for i, id := range p.FilterIDs {
			at += copy(buf[at:], id)
			offs[i+1] = uint64(at)
		}
		cp.filter_n = C.uint64_t(n)
		cp.filter_id_offsets = (*C.uint64_t)(unsafe.Add(f.mem, 8))
		if total > 0 {
			cp.filter_ids = (*C.uint8_t)(unsafe.Add(f.mem, head))
		}
	}
	if p.Filter != nil {
		f.state = &filterState{fn: p.Filter}
		f.handle = cgo.NewHandle(f.state)
		*(*cgo.Handle)(f.mem) = f.handle
		cp.filter_fn = (C.omen_filter_fn)(C.goOmenFilter)
		cp.filter_user = f.mem
	}
	return cp, f
}

// searchFilter owns the C memory and the handle of one call's filter.
type searchFilter struct {
	mem    unsafe.Pointer
	handle cgo.Handle
	state  *filterState
}

// done frees the filter and re-raises a panic of the predicate. nil-safe.
func (f *searchFilter) done() {
	if f == nil {
		return
	}
	if f.state != nil {
		f.handle.Delete()
	}
	C.free(f.mem)
	if f.state != nil {
		f.state.rethrow()
	}
}

// Hit is one search result.
type Hit struct {
	ID       string // the ID bytes (any bytes, not necessarily UTF-8)
	Key      uint64 // valid until Compact or Close
	Distance float32
}

// Search returns up to k hits nearest to query (Dim() floats), closest
// first, with their IDs, found in one call (omen_search_ids).
func (s *Store) Search(query []float32, k int, p *SearchParams) ([]Hit, error) {
	h, err := s.handle("omen_search_ids")
	if err != nil {
		return nil, err
	}
	if len(query) != s.dim {
		return nil, wrapperError(ErrDimension, "omen_search_ids", "query has %d floats, dim is %d", len(query), s.dim)
	}
	if k < 0 {
		return nil, wrapperError(ErrInvalidArgument, "omen_search_ids", "k is negative (%d)", k)
	}
	rows, err := s.search(h, -1, query, k, p)
	runtime.KeepAlive(query)
	if err != nil {
		return nil, err
	}
	return rows[0], nil
}

// SearchBatch runs len(queries)/Dim() searches in one call
// (omen_search_batch_ids), which also copies every hit's ID.
func (s *Store) SearchBatch(queries []float32, k int, p *SearchParams) ([][]Hit, error) {
	h, err := s.handle("omen_search_batch_ids")
	if err != nil {
		return nil, err
	}
	if s.dim == 0 || len(queries)%s.dim != 0 {
		return nil, wrapperError(ErrDimension, "omen_search_batch_ids", "%d floats is not a multiple of dim %d", len(queries), s.dim)
	}
	if k < 0 {
		return nil, wrapperError(ErrInvalidArgument, "omen_search_batch_ids", "k is negative (%d)", k)
	}
	nq := len(queries) / s.dim
	if nq == 0 {
		return [][]Hit{}, nil
	}
	rows, err := s.search(h, nq, queries, k, p)
	runtime.KeepAlive(queries)
	return rows, err
}

// idBytesGuess is the ID room per hit of a search's first try; longer IDs
// are retried once with the size the library reports.
const idBytesGuess = 32

// search runs omen_search_ids (nq < 0: one query) or omen_search_batch_ids
// and builds each query's hits from the hit and ID buffers.
func (s *Store) search(h *C.omen_store, nq int, queries []float32, k int, p *SearchParams) ([][]Hit, error) {
	if nq < 0 {
		return s.searchWithIDs(1, k, p, "omen_search_ids", func(o *idsOut) C.omen_status {
			return C.omen_search_ids(h, floatPtr(queries), C.size_t(k), o.params, o.hits, o.counts, o.buf, o.capacity, o.offs, o.need)
		})
	}
	return s.searchWithIDs(nq, k, p, "omen_search_batch_ids", func(o *idsOut) C.omen_status {
		return C.omen_search_batch_ids(h, C.size_t(nq), floatPtr(queries), C.size_t(k), o.params, o.hits, o.counts, o.buf, o.capacity, o.offs, o.need)
	})
}

// idsOut are the output buffers of one try of a search that writes its
// hits' IDs (the omen_*_ids functions), as C pointers.
type idsOut struct {
	params   *C.omen_search_params
	hits     *C.omen_hit
	counts   *C.size_t
	buf      *C.uint8_t
	capacity C.size_t
	offs     *C.uint64_t
	need     *C.size_t
}

// searchWithIDs runs call, an omen_*_ids search of `rows` rows of k hits,
// with ID room that grows until the IDs fit, and builds the rows' hits.
func (s *Store) searchWithIDs(rows, k int, p *SearchParams, op string, call func(*idsOut) C.omen_status) ([][]Hit, error) {
	hits := make([]C.omen_hit, rows*k+1) // +1: &hits[0] valid for k == 0
	counts := make([]C.size_t, rows)
	offs := make([]C.uint64_t, rows*k+1)
	capacity := rows * k * idBytesGuess
	var need C.size_t
	var buf []byte
	cp, filter := p.cParams()
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	for {
		buf = make([]byte, capacity+1) // +1: &buf[0] valid for capacity == 0
		st := call(&idsOut{&cp, &hits[0], &counts[0], (*C.uint8_t)(unsafe.Pointer(&buf[0])), C.size_t(capacity), &offs[0], &need})
		if st == C.OMEN_ERR_BUFFER_TOO_SMALL && int(need) > capacity {
			capacity = int(need) // the IDs are long, or the store changed: again
			continue
		}
		err := lastError(st, op)
		filter.done()
		runtime.KeepAlive(s)
		if err != nil {
			return nil, err
		}
		break
	}
	out := make([][]Hit, rows)
	for i := range out {
		row := make([]Hit, int(counts[i]))
		for j := range row {
			at := i*k + j
			row[j] = Hit{ID: string(buf[offs[at]:offs[at+1]]), Key: uint64(hits[at].key), Distance: float32(hits[at].distance)}
		}
		out[i] = row
	}
	return out, nil
}

// SearchByID returns up to k hits nearest to the vector stored under id
// (as Get returns it: in a trained DropRaw store, its PQ reconstruction),
// searched as Search does, with their IDs (omen_search_by_id_ids). With
// excludeSelf, the entry of id itself is left out: the k nearest others.
// ErrNotFound when the store holds no id.
func (s *Store) SearchByID(id string, k int, p *SearchParams, excludeSelf bool) ([]Hit, error) {
	const op = "omen_search_by_id_ids"
	h, err := s.handle(op)
	if err != nil {
		return nil, err
	}
	if k < 0 {
		return nil, wrapperError(ErrInvalidArgument, op, "k is negative (%d)", k)
	}
	var flags C.uint32_t
	if excludeSelf {
		flags = C.OMEN_SEARCH_EXCLUDE_SELF
	}
	rows, err := s.searchWithIDs(1, k, p, op, func(o *idsOut) C.omen_status {
		return C.omen_search_by_id_ids(h, stringPtr(id), C.size_t(len(id)), C.size_t(k), o.params, flags, o.hits, o.counts, o.buf, o.capacity, o.offs, o.need)
	})
	runtime.KeepAlive(id)
	if err != nil {
		return nil, err
	}
	return rows[0], nil
}

// RangeSearch returns every vector within distance radius of query
// (distance <= radius, on the scale Search reports), the closest max of
// them first, with their IDs, and how many lie within the radius in all
// (more than len(hits) when max cut the list). It is exact over the raw
// vectors, also in a trained store; p gives Threads and the filter
// (Rerank and Exact do not apply). A trained DropRaw store keeps no raw
// vectors: ErrInvalidArgument. (omen_range_search_ids)
func (s *Store) RangeSearch(query []float32, radius float32, max int, p *SearchParams) ([]Hit, uint64, error) {
	const op = "omen_range_search_ids"
	h, err := s.handle(op)
	if err != nil {
		return nil, 0, err
	}
	if len(query) != s.dim {
		return nil, 0, wrapperError(ErrDimension, op, "query has %d floats, dim is %d", len(query), s.dim)
	}
	if max < 0 {
		return nil, 0, wrapperError(ErrInvalidArgument, op, "max is negative (%d)", max)
	}
	var total C.uint64_t
	rows, err := s.searchWithIDs(1, max, p, op, func(o *idsOut) C.omen_status {
		return C.omen_range_search_ids(h, floatPtr(query), C.float(radius), C.size_t(max), o.params, o.hits, o.counts, &total, o.buf, o.capacity, o.offs, o.need)
	})
	runtime.KeepAlive(query)
	if err != nil {
		return nil, 0, err
	}
	return rows[0], uint64(total), nil
}

// Cursor lists the live (ID, vector) pairs of a store as of the moment
// Store.Cursor was called: later puts, deletes and compactions do not
// show, and it never sees part of a batch. Read it with Next; Close it (a
// finalizer closes a forgotten one). Once its Store is closed, Next
// returns ErrInvalidArgument. A Cursor must not be used by two goroutines
// at once.
type Cursor struct {
	h     *C.omen_cursor
	store *Store // keeps the store from being finalized while the cursor lives
	ids   []byte
	offs  []C.uint64_t
}

// Cursor opens a cursor over the live entries as of now (omen_cursor_open).
func (s *Store) Cursor() (*Cursor, error) {
	h, err := s.handle("omen_cursor_open")
	if err != nil {
		return nil, err
	}
	var ch *C.omen_cursor
	runtime.LockOSThread()
	err = lastError(C.omen_cursor_open(h, &ch), "omen_cursor_open")
	runtime.UnlockOSThread()
	runtime.KeepAlive(s)
	if err != nil {
		return nil, err
	}
	c := &Cursor{h: ch, store: s}
	runtime.SetFinalizer(c, (*Cursor).Close)
	return c, nil
}

// Next returns the next at most max (>= 1) entries in slot order: their
// IDs and, with withVectors, their vectors (len(ids)*Dim() floats, checked
// against their checksums). No IDs means the end. A store that keeps no
// raw vectors (trained DropRaw) lists IDs only: withVectors is then
// ErrInvalidArgument.
func (c *Cursor) Next(max int, withVectors bool) ([]string, []float32, error) {
	const op = "omen_cursor_next"
	if c.h == nil {
		return nil, nil, wrapperError(ErrInvalidArgument, op, "cursor is closed")
	}
	if max < 1 {
		return nil, nil, wrapperError(ErrInvalidArgument, op, "max must be at least 1 (got %d)", max)
	}
	if len(c.offs) < max+1 {
		c.offs = make([]C.uint64_t, max+1)
	}
	if len(c.ids) < max*idBytesGuess {
		c.ids = make([]byte, max*idBytesGuess)
	}
	var vectors []float32
	if withVectors {
		vectors = make([]float32, max*c.store.dim)
	}
	var n C.size_t
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	for {
		st := C.omen_cursor_next(c.h, C.size_t(max), (*C.uint8_t)(unsafe.Pointer(&c.ids[0])), C.size_t(len(c.ids)),
			&c.offs[0], floatPtr(vectors), &n)
		if st == C.OMEN_ERR_BUFFER_TOO_SMALL && int(c.offs[1]) > len(c.ids) {
			c.ids = make([]byte, int(c.offs[1])) // the next ID is longer than the room: again
			continue
		}
		if err := lastError(st, op); err != nil {
			return nil, nil, err
		}
		break
	}
	runtime.KeepAlive(c)
	ids := make([]string, int(n))
	for i := range ids {
		ids[i] = string(c.ids[c.offs[i]:c.offs[i+1]])
	}
	if withVectors {
		vectors = vectors[:len(ids)*c.store.dim]
	}
	return ids, vectors, nil
}

// Close frees the cursor (omen_cursor_close); closing twice is a no-op.
func (c *Cursor) Close() {
	if c.h == nil {
		return
	}
	C.omen_cursor_close(c.h)
	c.h = nil
	runtime.SetFinalizer(c, nil)
}

// KeyID returns the ID of a search key.
func (s *Store) KeyID(key uint64) (string, error) {
	h, err := s.handle("omen_key_id")
	if err != nil {
		return "", err
	}
	var p *C.uint8_t
	var n C.size_t
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	if err := lastError(C.omen_key_id(h, C.uint64_t(key), &p, &n), "omen_key_id"); err != nil {
		return "", err
	}
	id := C.GoStringN((*C.char)(unsafe.Pointer(p)), C.int(n))
	runtime.KeepAlive(s)
	return id, nil
}

// SearchMethod is omen_search_plan.method.
type SearchMethod uint32

const (
	SearchExact  SearchMethod = C.OMEN_SEARCH_METHOD_EXACT   // exact distances to every live vector
	SearchPQScan SearchMethod = C.OMEN_SEARCH_METHOD_PQ_SCAN // every PQ code, then the re-rank
	SearchIVF    SearchMethod = C.OMEN_SEARCH_METHOD_IVF     // the IVF index's NProbe nearest lists, then the re-rank
)

// SearchPlan is omen_search_plan: how Search runs a query.
type SearchPlan struct {
	Method SearchMethod
	NProbe uint32 // IVF: the lists probed a query; 0 otherwise
	// Candidates whose exact distances rank the results (at least k when
	// any); 0 = the codes' order alone, or an exact search.
	Rerank uint32
	// IVF without NProbe: the recall@10 the calibration measured for this
	// setting (on the store's own vectors, or on the host's queries after
	// Calibrate), less one standard error; 0 otherwise.
	CalibratedRecall float32
}

// ExplainSearch is omen_explain_search: how Search runs a query for k
// results with p (nil = defaults), its filter included (evaluated as a
// search evaluates it: a small allowed set is searched exactly, a larger
// one probes more lists). Errors as Search's for these parameters.
func (s *Store) ExplainSearch(k int, p *SearchParams) (SearchPlan, error) {
	h, err := s.handle("omen_explain_search")
	if err != nil {
		return SearchPlan{}, err
	}
	if k < 0 {
		return SearchPlan{}, wrapperError(ErrInvalidArgument, "omen_explain_search", "k is negative (%d)", k)
	}
	cp, f := p.cParams()
	var plan C.omen_search_plan
	plan.struct_size = C.uint32_t(unsafe.Sizeof(plan))
	runtime.LockOSThread()
	err = lastError(C.omen_explain_search(h, C.size_t(k), &cp, &plan), "omen_explain_search")
	runtime.UnlockOSThread()
	f.done() // re-raises a panic of the predicate
	runtime.KeepAlive(s)
	if err != nil {
		return SearchPlan{}, err
	}
	return SearchPlan{
		Method: SearchMethod(plan.method), NProbe: uint32(plan.nprobe), Rerank: uint32(plan.rerank),
		CalibratedRecall: float32(plan.calibrated_recall),
	}, nil
}

// CalibrationPoint is one setting of omen_calibration.
type CalibrationPoint struct {
	Recall     float32 // recall@10 on the store's own vectors (after Calibrate, the host's queries), less one standard error
	NProbe     uint32
	RerankPerK uint32  // candidates re-ranked per result; 0 = none
	Cost       float64 // bytes a query reads, relative
}

// Calibration is omen_calibration: the IVF index's measured settings,
// cheapest first (a target gets the first whose Recall reaches it), as
// training measured them on the store's own vectors or, after Calibrate,
// on the host's queries (Stats().CalibrationQueries says which); empty
// without an IVF index, or where training had no raw vectors to measure
// with.
func (s *Store) Calibration() ([]CalibrationPoint, error) {
	h, err := s.handle("omen_calibration")
	if err != nil {
		return nil, err
	}
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	defer runtime.KeepAlive(s)
	var count C.size_t
	for {
		n := int(count)
		recall, nprobe := make([]float32, n+1), make([]uint32, n+1)
		perK, cost := make([]uint32, n+1), make([]float64, n+1)
		st := C.omen_calibration(h, (*C.float)(&recall[0]), (*C.uint32_t)(&nprobe[0]), (*C.uint32_t)(&perK[0]),
			(*C.double)(&cost[0]), C.size_t(n), &count)
		// Only a training or a Calibrate changes it: a later try fits.
		if st == C.OMEN_ERR_BUFFER_TOO_SMALL && int(count) > n {
			continue
		}
		if err := lastError(st, "omen_calibration"); err != nil {
			return nil, err
		}
		out := make([]CalibrationPoint, int(count))
		for i := range out {
			out[i] = CalibrationPoint{Recall: recall[i], NProbe: nprobe[i], RerankPerK: perK[i], Cost: cost[i]}
		}
		return out, nil
	}
}

// Calibrate is omen_calibrate: measures the IVF index's recall targets on
// len(queries)/Dim() of the host's own queries (a sample of what this store
// will be asked, flat as SearchBatch takes them; read in place) instead of
// the store's own vectors, commits the result (durable, it survives
// reopening) and returns it as Calibration then does. For queries unlike
// the stored vectors, where a target measured on those can deliver less.
// A few hundred queries measure recall to about 0.01; each costs an exact
// search. TrainPQ and RebuildIndex measure on stored vectors again.
// progress (may be nil) is called on this goroutine with (done, total), as
// for TrainPQ: total is 3 x the number of queries, done never decreases and
// the last call has done == total once it has measured (the commit
// follows); the callback may read the store, a write from it returns
// ErrInvalidArgument; a panic in it is re-raised after the C call returns.
// ErrInvalidArgument for a store without a trained IVF index, a DropRaw
// store, one of 10 live vectors or fewer, no queries or over 100,000, or a
// value that is not finite; ErrCorrupt while IndexDamage reports damage;
// ErrReadOnly on a read-only store.
func (s *Store) Calibrate(queries []float32, progress func(done, total uint64)) ([]CalibrationPoint, error) {
	h, err := s.handle("omen_calibrate")
	if err != nil {
		return nil, err
	}
	if s.dim == 0 || len(queries)%s.dim != 0 {
		return nil, wrapperError(ErrDimension, "omen_calibrate", "%d floats is not a multiple of dim %d", len(queries), s.dim)
	}
	// No queries go to C too (nq 0): the library's refusal says why.
	nq := len(queries) / s.dim
	err = s.withProgress("omen_calibrate", progress, func(fn C.omen_progress_fn, user unsafe.Pointer) C.omen_status {
		return C.omen_calibrate(h, C.size_t(nq), floatPtr(queries), fn, user)
	})
	runtime.KeepAlive(queries)
	runtime.KeepAlive(s)
	if err != nil {
		return nil, err
	}
	return s.Calibration()
}

// Stats is omen_store_stats.
func (s *Store) Stats() (Stats, error) {
	h, err := s.handle("omen_store_stats")
	if err != nil {
		return Stats{}, err
	}
	var cs C.omen_stats
	cs.struct_size = C.uint32_t(unsafe.Sizeof(cs))
	runtime.LockOSThread()
	err = lastError(C.omen_store_stats(h, &cs), "omen_store_stats")
	runtime.UnlockOSThread()
	runtime.KeepAlive(s)
	if err != nil {
		return Stats{}, err
	}
	return Stats{
		Dim: uint32(cs.dim), Metric: Metric(cs.metric), PQM: uint32(cs.pq_m),
		PQTrained: cs.pq_trained != 0, RawKept: cs.raw_kept != 0,
		LiveVectors: uint64(cs.live_vectors), DeadSlots: uint64(cs.dead_slots),
		CheckpointSeq: uint64(cs.checkpoint_seq), DiskBytes: uint64(cs.disk_bytes),
		PayloadBytes: uint64(cs.payload_bytes), HeapBytes: uint64(cs.heap_bytes),
		PQBits: uint32(cs.pq_bits), PQTrainSize: uint32(cs.pq_train_size), DropRaw: cs.drop_raw != 0,
		AutoTrainStatus: int(cs.pq_auto_train_status), IVFLists: uint32(cs.ivf_lists),
		IndexStatus: int(cs.index_status), CalibrationQueries: uint32(cs.calibration_queries),
		IVFStages: uint32(cs.ivf_stages), IVFListCodeBytes: uint32(cs.ivf_list_code_bytes),
	}, nil
}
