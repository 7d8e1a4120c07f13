package omendb

/*
#include <stddef.h>
#include <stdint.h>
*/
import "C"

import (
	"runtime/cgo"
	"unsafe"
)

// goOmenFilter is the omen_filter_fn of a search with SearchParams.Filter.
// `user` points at the cgo.Handle of its filterState (in the call's C
// memory, valid for the whole call).
//
//export goOmenFilter
func goOmenFilter(user unsafe.Pointer, id *C.uint8_t, idLen C.size_t) (keep C.int32_t) {
	st := (*(*cgo.Handle)(user)).Value().(*filterState)
	if st.panicked != nil {
		return 0 // the predicate panicked earlier in this call: keep nothing more
	}
	defer st.catch() // on a panic, keep stays 0
	if st.fn(unsafe.Slice((*byte)(unsafe.Pointer(id)), int(idLen))) {
		keep = 1
	}
	return keep
}

type filterState struct {
	fn func(id []byte) bool
	callbackPanic
}
