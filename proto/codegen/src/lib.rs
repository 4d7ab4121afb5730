//! Generates im-proto's Rust code from the `.proto` files in `proto/pb/`.
//!
//! The output is checked in (`proto/src/generated/`) so that building the project needs neither
//! `protoc` nor this crate; im-proto's drift test calls [`generate`] and compares, and
//! `IM_BLESS=1` (or `cargo run -p im-proto-codegen`) rewrites the files.
//!
//! Two kinds of files come out:
//! * prost's message and enum types, one file per proto package (`im.message.rs`, ...);
//! * `required.rs`: a table of every message's `required` fields, nested message fields and
//!   required enum fields. prost does not enforce proto2 `required` on decode, but every
//!   original TeamTalk peer drops a message that lacks one, so im-proto checks the table
//!   before decoding (see `im_proto::required`).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use prost_types::field_descriptor_proto::{Label, Type};
use prost_types::{DescriptorProto, FileDescriptorSet};

/// The .proto files, in dependency order.
pub const PROTO_FILES: &[&str] = &[
    "IM.BaseDefine.proto",
    "IM.Buddy.proto",
    "IM.Login.proto",
    "IM.Message.proto",
    "IM.Group.proto",
    "IM.File.proto",
    "IM.SwitchService.proto",
    "IM.Other.proto",
    "IM.Server.proto",
    "IM.Admin.proto",
];

/// One generated file: its name inside `proto/src/generated/` and its contents.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GeneratedFile {
    /// File name, e.g. `im.message.rs`.
    pub name: String,
    /// Full contents.
    pub contents: String,
}

/// Errors of the generator.
#[derive(Debug)]
pub enum Error {
    /// protox could not parse or link the .proto files.
    Compile(String),
    /// prost-build failed or a file could not be read or written.
    Io(std::io::Error),
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Error::Compile(e) => write!(f, "compiling .proto files: {e}"),
            Error::Io(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for Error {}

impl From<std::io::Error> for Error {
    fn from(e: std::io::Error) -> Self {
        Error::Io(e)
    }
}

/// The `proto/` directory of the workspace (where `pb/` and `src/generated/` live).
pub fn proto_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("proto"))
}

/// Compiles the .proto files and returns every generated file, sorted by name.
pub fn generate(proto_dir: &Path) -> Result<Vec<GeneratedFile>, Error> {
    let pb = proto_dir.join("pb");
    let fds = protox::compile(PROTO_FILES, [&pb]).map_err(|e| Error::Compile(e.to_string()))?;

    let out = tempdir()?;
    let mut config = prost_build::Config::new();
    config.out_dir(&out);
    // Bytes fields share the receive buffer instead of copying it (msg_data, attach_data).
    config.bytes(["."]);
    config
        .compile_fds(fds.clone())
        .map_err(|e| Error::Compile(e.to_string()))?;

    let mut files = Vec::new();
    for entry in std::fs::read_dir(&out)? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let contents = std::fs::read_to_string(entry.path())?;
        files.push(GeneratedFile { name, contents });
    }
    std::fs::remove_dir_all(&out)?;
    files.push(GeneratedFile {
        name: "required.rs".to_owned(),
        contents: required_table(&fds),
    });
    files.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(files)
}

/// Writes the generated files into `proto/src/generated/`, removing stale ones.
pub fn bless(proto_dir: &Path) -> Result<Vec<GeneratedFile>, Error> {
    let files = generate(proto_dir)?;
    let dir = proto_dir.join("src").join("generated");
    std::fs::create_dir_all(&dir)?;
    for entry in std::fs::read_dir(&dir)? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.ends_with(".rs") && !files.iter().any(|f| f.name == name) {
            std::fs::remove_file(entry.path())?;
        }
    }
    for f in &files {
        std::fs::write(dir.join(&f.name), &f.contents)?;
    }
    Ok(files)
}

fn tempdir() -> Result<PathBuf, Error> {
    let base = std::env::temp_dir().join(format!(
        "im-proto-codegen-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0)
    ));
    std::fs::create_dir_all(&base)?;
    Ok(base)
}

/// Rust path of a message type relative to `crate::pb` (e.g. `.IM.Message.IMMsgData` ->
/// `im::message::ImMsgData`), following prost's naming rules.
fn rust_path(full_name: &str) -> String {
    let trimmed = full_name.trim_start_matches('.');
    let mut parts: Vec<&str> = trimmed.split('.').collect();
    let ty = parts.pop().unwrap_or_default();
    let mut path: Vec<String> = parts.iter().map(|p| snake_case(p)).collect();
    path.push(upper_camel(ty));
    path.join("::")
}

fn static_name(full_name: &str) -> String {
    let mut s = String::from("S");
    for c in full_name.trim_start_matches('.').chars() {
        if c == '.' {
            s.push('_');
        } else {
            s.push(c.to_ascii_uppercase());
        }
    }
    s
}

/// prost's module naming: `BaseDefine` -> `base_define`, `IM` -> `im`.
fn snake_case(s: &str) -> String {
    let chars: Vec<char> = s.chars().collect();
    let mut out = String::new();
    for (i, &c) in chars.iter().enumerate() {
        if c.is_uppercase() {
            let prev_lower = i > 0 && chars[i - 1].is_lowercase();
            let next_lower = chars.get(i + 1).is_some_and(|n| n.is_lowercase());
            let prev_upper = i > 0 && chars[i - 1].is_uppercase();
            if i > 0 && (prev_lower || (prev_upper && next_lower)) {
                out.push('_');
            }
            out.extend(c.to_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

/// prost's type naming: `IMMsgData` -> `ImMsgData`, `IMPCLoginStatusNotify` ->
/// `ImpcLoginStatusNotify` (heck's UpperCamelCase over the word boundaries).
fn upper_camel(s: &str) -> String {
    snake_case(s)
        .split('_')
        .filter(|w| !w.is_empty())
        .map(|w| {
            let mut cs = w.chars();
            match cs.next() {
                Some(f) => f.to_uppercase().chain(cs).collect::<String>(),
                None => String::new(),
            }
        })
        .collect()
}

struct MsgInfo {
    full_name: String,
    required: Vec<i32>,
    nested: Vec<(i32, String)>,
    required_enums: Vec<(i32, String)>,
}

fn required_table(fds: &FileDescriptorSet) -> String {
    let mut enums: BTreeMap<String, Vec<i32>> = BTreeMap::new();
    let mut messages: Vec<MsgInfo> = Vec::new();
    for file in &fds.file {
        let pkg = file.package();
        for e in &file.enum_type {
            let name = format!(".{pkg}.{}", e.name());
            let mut values: Vec<i32> = e.value.iter().map(|v| v.number()).collect();
            values.sort_unstable();
            enums.insert(name, values);
        }
        for m in &file.message_type {
            collect_message(&format!(".{pkg}"), m, &mut messages);
        }
    }

    let mut out = String::new();
    out.push_str(
        "// @generated by im-proto-codegen from proto/pb/*.proto. Do not edit; run\n\
         // `IM_BLESS=1 cargo test -p im-proto --test codegen` after changing a .proto file.\n\
         //\n\
         // Per message: the field numbers labelled `required`, the message-typed fields to check\n\
         // recursively, and the required enum fields with their defined values (a proto2 parser\n\
         // treats an undefined enum value as a missing field).\n\n",
    );
    out.push_str("use super::{EnumField, NestedField, RequiredFields, Schema};\n\n");
    let used: std::collections::BTreeSet<&str> = messages
        .iter()
        .flat_map(|m| m.required_enums.iter().map(|(_, ty)| ty.as_str()))
        .collect();
    for (name, values) in enums.iter().filter(|(n, _)| used.contains(n.as_str())) {
        let list: Vec<String> = values.iter().map(|v| v.to_string()).collect();
        let _ = writeln!(
            out,
            "static {}: &[i32] = &[{}];",
            static_name(name).replacen('S', "E", 1),
            list.join(", ")
        );
    }
    out.push('\n');
    for m in &messages {
        let req: Vec<String> = m.required.iter().map(|v| v.to_string()).collect();
        let nested: Vec<String> = m
            .nested
            .iter()
            .map(|(tag, ty)| format!("NestedField {{ tag: {tag}, schema: &{} }}", static_name(ty)))
            .collect();
        let en: Vec<String> = m
            .required_enums
            .iter()
            .map(|(tag, ty)| {
                format!(
                    "EnumField {{ tag: {tag}, values: {} }}",
                    static_name(ty).replacen('S', "E", 1)
                )
            })
            .collect();
        let _ = writeln!(
            out,
            "pub(crate) static {}: Schema = Schema {{\n    name: \"{}\",\n    required: &[{}],\n    nested: &[{}],\n    enums: &[{}],\n}};",
            static_name(&m.full_name),
            m.full_name.trim_start_matches('.'),
            req.join(", "),
            nested.join(", "),
            en.join(", "),
        );
        let _ = writeln!(
            out,
            "impl RequiredFields for crate::pb::{} {{\n    const SCHEMA: &'static Schema = &{};\n}}\n",
            rust_path(&m.full_name),
            static_name(&m.full_name),
        );
    }
    out
}

fn collect_message(scope: &str, m: &DescriptorProto, out: &mut Vec<MsgInfo>) {
    let full_name = format!("{scope}.{}", m.name());
    let mut info = MsgInfo {
        full_name: full_name.clone(),
        required: Vec::new(),
        nested: Vec::new(),
        required_enums: Vec::new(),
    };
    for f in &m.field {
        let required = f.label() == Label::Required;
        if required {
            info.required.push(f.number());
        }
        match f.r#type() {
            Type::Message => info.nested.push((f.number(), f.type_name().to_owned())),
            Type::Enum if required => info
                .required_enums
                .push((f.number(), f.type_name().to_owned())),
            _ => {}
        }
    }
    for nested in &m.nested_type {
        collect_message(&full_name, nested, out);
    }
    out.push(info);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prost_names() {
        assert_eq!(snake_case("BaseDefine"), "base_define");
        assert_eq!(snake_case("IM"), "im");
        assert_eq!(snake_case("SwitchService"), "switch_service");
        assert_eq!(upper_camel("IMMsgData"), "ImMsgData");
        assert_eq!(
            upper_camel("IMPCLoginStatusNotify"),
            "ImpcLoginStatusNotify"
        );
        assert_eq!(upper_camel("IMFileServerIPReq"), "ImFileServerIpReq");
        assert_eq!(rust_path(".IM.Message.IMMsgData"), "im::message::ImMsgData");
    }
}
