package omendb

/*
#include <stdint.h>
*/
import "C"

import (
	"runtime/cgo"
	"unsafe"
)

// goOmenProgress is the omen_progress_fn handed to omen_train_pq,
// omen_rebuild_index and omen_calibrate (Store.withProgress). `user` points
// at a cgo.Handle of the Go callback, valid for the whole call.
//
//export goOmenProgress
func goOmenProgress(user unsafe.Pointer, done, total C.uint64_t) {
	h := *(*cgo.Handle)(user)
	cb := h.Value().(*progressState)
	if cb.panicked != nil {
		return
	}
	defer cb.catch()
	cb.fn(uint64(done), uint64(total))
}

type progressState struct {
	fn func(done, total uint64)
	callbackPanic
}

// callbackPanic keeps a panic of a Go callback called from C: it must not
// unwind through the library's frames, so it is re-raised after the C call.
type callbackPanic struct {
	panicked interface{}
}

// catch is deferred by the exported callback.
func (c *callbackPanic) catch() {
	if r := recover(); r != nil {
		c.panicked = r
	}
}

// rethrow runs after the C call returned.
func (c *callbackPanic) rethrow() {
	if c.panicked != nil {
		panic(c.panicked)
	}
}
