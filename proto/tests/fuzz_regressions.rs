//! Replays every input the decode fuzzer once found (fixtures/fuzz/decode/) through the same
#![allow(clippy::expect_used)]
//! property checks, so a fixed bug stays fixed.

use std::path::Path;

#[test]
fn fuzz_findings_stay_fixed() {
    let dir = Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../fixtures/fuzz/decode"
    ));
    let mut n = 0;
    for entry in std::fs::read_dir(dir).expect("fixtures/fuzz/decode") {
        let path = entry.expect("entry").path();
        let data = std::fs::read(&path).expect("read input");
        let result = std::panic::catch_unwind(|| im_proto::fuzzing::check_decode(&data));
        assert!(
            result.is_ok(),
            "{} breaks a decode property again",
            path.display()
        );
        n += 1;
    }
    assert!(n >= 7, "expected the kept fuzz inputs, found {n}");
}
