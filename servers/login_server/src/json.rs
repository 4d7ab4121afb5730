//! The `/msg_server` answer bodies, byte for byte as the original's jsoncpp `StyledWriter`
//! printed them (FLOWS.md 2): keys sorted byte-wise (jsoncpp keeps object members in a
//! `std::map` ordered by `strcmp`), one member per line indented by three spaces, `"key" :
//! value`, and a newline after the closing brace.
//!
//! Clients only parse the JSON, but keeping the exact bytes means a capture of the original
//! and of ours compare equal, and the `Content-Length` is what an original would send.

use std::fmt::Write as _;

/// A value of a flat JSON object (the answers hold nothing else).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Value<'a> {
    /// A JSON number.
    Int(i64),
    /// A JSON string.
    Str(&'a str),
}

/// Renders a flat object the way jsoncpp's `StyledWriter` does.
pub fn styled_object(members: &mut [(&str, Value<'_>)]) -> String {
    members.sort_unstable_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
    if members.is_empty() {
        return "{}\n".to_owned();
    }
    let mut out = String::with_capacity(256);
    out.push_str("{\n");
    for (i, (key, value)) in members.iter().enumerate() {
        out.push_str("   ");
        push_quoted(&mut out, key);
        out.push_str(" : ");
        match value {
            Value::Int(n) => {
                let _ = write!(out, "{n}");
            }
            Value::Str(s) => push_quoted(&mut out, s),
        }
        if i + 1 < members.len() {
            out.push(',');
        }
        out.push('\n');
    }
    out.push_str("}\n");
    out
}

/// jsoncpp's quoting: the short escapes, `\u00XX` (upper-case hex) for the other control
/// characters, everything else (UTF-8 included, and `/`) as is.
fn push_quoted(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if u32::from(c) < 0x20 => {
                let _ = write!(out, "\\u{:04X}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_the_flows_example_byte_for_byte() {
        let got = styled_object(&mut [
            ("code", Value::Int(0)),
            ("msg", Value::Str("")),
            ("priorIP", Value::Str("10.0.0.5")),
            ("backupIP", Value::Str("10.0.0.5")),
            ("msfsPrior", Value::Str("http://10.0.0.7:8700/")),
            ("msfsBackup", Value::Str("http://10.0.0.7:8700/")),
            ("discovery", Value::Str("http://10.0.0.9/api/discovery")),
            ("port", Value::Str("8000")),
        ]);
        let want = r#"{
   "backupIP" : "10.0.0.5",
   "code" : 0,
   "discovery" : "http://10.0.0.9/api/discovery",
   "msfsBackup" : "http://10.0.0.7:8700/",
   "msfsPrior" : "http://10.0.0.7:8700/",
   "msg" : "",
   "port" : "8000",
   "priorIP" : "10.0.0.5"
}
"#;
        assert_eq!(got, want);
    }

    #[test]
    fn errors_keep_utf8_and_escapes_follow_jsoncpp() {
        assert_eq!(
            styled_object(&mut [("msg", Value::Str("负载过高")), ("code", Value::Int(2))]),
            "{\n   \"code\" : 2,\n   \"msg\" : \"负载过高\"\n}\n"
        );
        assert_eq!(
            styled_object(&mut [("k", Value::Str("a\"b\\c\n\u{1}/d"))]),
            "{\n   \"k\" : \"a\\\"b\\\\c\\n\\u0001/d\"\n}\n"
        );
        assert_eq!(styled_object(&mut []), "{}\n");
        // The result is JSON that a standard parser reads back.
        assert_eq!(
            styled_object(&mut [("n", Value::Int(-7))]),
            "{\n   \"n\" : -7\n}\n"
        );
    }
}
