//! Parse + validate any bytes: must never panic, hang or allocate without bound.
//! Run: `cargo fuzz run load -- -max_total_time=600` (see fuzz/README.md).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Err(e) = podsup::manifest::load_bytes("fuzz.yaml", data) {
        // Rendering the errors is part of the path users hit.
        let _ = e.to_string();
    }
});
