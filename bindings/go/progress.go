package omendb

/*
#include <stdint.h>
*/
import "C"

import (
	"runtime/cgo"
	"unsafe"
)

// goOmenProgress is the omen_progress_fn handed to omen_train_pq. `user`
// points at a cgo.Handle of the Go callback, valid for the whole call.
//
//export goOmenProgress
func goOmenProgress(user unsafe.Pointer, done, total C.uint64_t) {
	h := *(*cgo.Handle)(user)
	cb := h.Value().(*progressState)
	if cb.panicked != nil {
		return
	}
	defer func() {
		// A panic must not unwind through the Rust frames: keep it and
		// re-raise it after omen_train_pq returns.
		if r := recover(); r != nil {
			cb.panicked = r
		}
	}()
	cb.fn(uint64(done), uint64(total))
}

type progressState struct {
	fn       func(done, total uint64)
	panicked interface{}
}
