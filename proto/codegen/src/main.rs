//! `cargo run -p im-proto-codegen`: rewrites `proto/src/generated/` from `proto/pb/`.

fn main() -> Result<(), im_proto_codegen::Error> {
    let dir = im_proto_codegen::proto_dir();
    let files = im_proto_codegen::bless(&dir)?;
    for f in files {
        println!("wrote proto/src/generated/{}", f.name);
    }
    Ok(())
}
