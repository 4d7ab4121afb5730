//! Drift test: the checked-in generated code must be exactly what the .proto files produce.
//! `IM_BLESS=1 cargo test -p im-proto --test codegen` rewrites it.
#![allow(clippy::expect_used)]

use std::path::Path;

#[test]
fn generated_code_matches_the_proto_files() {
    let proto_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    if std::env::var_os("IM_BLESS").is_some() {
        let files = im_proto_codegen::bless(proto_dir).expect("regenerate");
        eprintln!("rewrote {} generated files", files.len());
        return;
    }
    let files = im_proto_codegen::generate(proto_dir).expect("generate");
    let dir = proto_dir.join("src").join("generated");
    let mut stale = Vec::new();
    for f in &files {
        let on_disk = std::fs::read_to_string(dir.join(&f.name)).unwrap_or_default();
        if on_disk != f.contents {
            stale.push(f.name.clone());
        }
    }
    let mut extra = Vec::new();
    for entry in std::fs::read_dir(&dir).expect("read generated dir") {
        let name = entry
            .expect("entry")
            .file_name()
            .to_string_lossy()
            .into_owned();
        if !files.iter().any(|f| f.name == name) {
            extra.push(name);
        }
    }
    assert!(
        stale.is_empty() && extra.is_empty(),
        "generated code is out of date (stale: {stale:?}, not generated: {extra:?}); \
         run `IM_BLESS=1 cargo test -p im-proto --test codegen`"
    );
}
