//! Feeds arbitrary bytes to the PDU codec on both link kinds and decodes the body of every PDU
//! that comes out, checking the properties of `im_proto::fuzzing::check_decode`. Inputs that
//! once broke a property are kept in `fixtures/fuzz/decode/` and replayed by
//! `proto/tests/fuzz_regressions.rs`.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    im_proto::fuzzing::check_decode(data);
});
