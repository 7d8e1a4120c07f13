#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    omendb_fuzz::init();
    omendb_fuzz::ops(data)
});
