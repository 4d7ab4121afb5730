//! An HTTP/1.x request reader over a byte buffer, as much of it as `/msg_server` needs.
//!
//! ```text
//! METHOD SP target SP HTTP/x.y CRLF      any method (the original does not check it)
//! (name ":" value CRLF)*                 only Content-Length and Transfer-Encoding matter
//! CRLF
//! body                                   Content-Length bytes, or chunks; read, then ignored
//! ```
//!
//! Bare LF line ends are accepted like CRLF, and empty lines before the request line are
//! skipped, as the original's http_parser does. The request is complete when its body is; the
//! whole request (head and body) must fit in [`MAX_REQUEST_LEN`] bytes.

/// Largest request the original accepts; more bytes close the connection (FLOWS.md 2).
pub const MAX_REQUEST_LEN: usize = 1024;

/// The path prefix answered; the original compares exactly these 11 characters.
pub const MSG_SERVER_PATH: &[u8] = b"/msg_server";

/// What the buffer holds so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Parse {
    /// Read more.
    Incomplete,
    /// A whole request; `msg_server` when its target starts with `/msg_server`.
    Complete {
        /// The target matched the prefix.
        msg_server: bool,
    },
    /// The declared body cannot fit in [`MAX_REQUEST_LEN`].
    TooLarge,
    /// Not an HTTP/1.x request.
    Malformed(&'static str),
}

/// Parses `buf`, which holds the bytes received so far.
pub fn parse_request(buf: &[u8]) -> Parse {
    let mut lines = Lines { buf, pos: 0 };
    let request_line = loop {
        match lines.next() {
            // Something that cannot start a method (a TLS handshake, binary junk) is refused
            // at once instead of waiting for a line end.
            None => match buf.get(lines.pos) {
                Some(&b) if b != b'\r' && !is_token(b) => {
                    return Parse::Malformed("bad method");
                }
                _ => return Parse::Incomplete,
            },
            Some([]) => continue,
            Some(l) => break l,
        }
    };
    let target = match request_target(request_line) {
        Ok(t) => t,
        Err(why) => return Parse::Malformed(why),
    };
    let mut content_length: Option<usize> = None;
    let mut chunked = false;
    loop {
        let Some(line) = lines.next() else {
            return Parse::Incomplete;
        };
        if line.is_empty() {
            break;
        }
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            return Parse::Malformed("header line without a colon");
        };
        let (name, value) = (&line[..colon], trim(&line[colon + 1..]));
        if name.eq_ignore_ascii_case(b"content-length") {
            let Some(n) = parse_decimal(value) else {
                return Parse::Malformed("bad Content-Length");
            };
            if content_length.is_some_and(|c| c != n) {
                return Parse::Malformed("conflicting Content-Length headers");
            }
            content_length = Some(n);
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            chunked = value
                .split(|&b| b == b',')
                .any(|v| trim(v).eq_ignore_ascii_case(b"chunked"));
        }
    }
    let body = &buf[lines.pos..];
    let complete = if chunked {
        match chunked_body_complete(body) {
            Ok(done) => done,
            Err(why) => return Parse::Malformed(why),
        }
    } else {
        let want = content_length.unwrap_or(0);
        if lines.pos.saturating_add(want) > MAX_REQUEST_LEN {
            return Parse::TooLarge;
        }
        body.len() >= want
    };
    if !complete {
        return Parse::Incomplete;
    }
    Parse::Complete {
        msg_server: target.starts_with(MSG_SERVER_PATH),
    }
}

/// The target of `METHOD SP target SP HTTP/x.y`.
fn request_target(line: &[u8]) -> Result<&[u8], &'static str> {
    let mut parts = line.split(|&b| b == b' ');
    let method = parts.next().unwrap_or_default();
    let target = parts.next().unwrap_or_default();
    let version = parts.next().unwrap_or_default();
    if parts.next().is_some() {
        return Err("request line has more than three parts");
    }
    if method.is_empty() || !method.iter().all(|&b| is_token(b)) {
        return Err("bad method");
    }
    if target.is_empty() || target.iter().any(|b| b.is_ascii_control()) {
        return Err("bad request target");
    }
    match version {
        [b'H', b'T', b'T', b'P', b'/', b'1', b'.', d] if d.is_ascii_digit() => Ok(target),
        _ => Err("not HTTP/1.x"),
    }
}

/// True once the chunked body (with its trailers) is complete.
fn chunked_body_complete(body: &[u8]) -> Result<bool, &'static str> {
    let mut lines = Lines { buf: body, pos: 0 };
    loop {
        let Some(size_line) = lines.next() else {
            return Ok(false);
        };
        let size_text = size_line
            .split(|&b| b == b';')
            .next()
            .map(trim)
            .unwrap_or_default();
        let size = parse_hex(size_text).ok_or("bad chunk size")?;
        if size == 0 {
            // Trailers up to an empty line.
            loop {
                match lines.next() {
                    None => return Ok(false),
                    Some([]) => return Ok(true),
                    Some(_) => {}
                }
            }
        }
        // Data, then CRLF; sizes beyond the buffer can only be "incomplete" here, and the
        // caller's length cap ends them.
        let end = lines.pos.checked_add(size).ok_or("bad chunk size")?;
        if body.len() < end {
            return Ok(false);
        }
        lines.pos = end;
        match lines.next() {
            None => return Ok(false),
            Some([]) => {}
            Some(_) => return Err("chunk data longer than its size"),
        }
    }
}

/// Lines ended by LF (a preceding CR is dropped); a line without its LF yet is not returned.
struct Lines<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Lines<'a> {
    fn next(&mut self) -> Option<&'a [u8]> {
        let rest = self.buf.get(self.pos..)?;
        let nl = rest.iter().position(|&b| b == b'\n')?;
        self.pos += nl + 1;
        let line = &rest[..nl];
        Some(line.strip_suffix(b"\r").unwrap_or(line))
    }
}

/// An HTTP token character (RFC 9110 `tchar`).
fn is_token(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

fn trim(v: &[u8]) -> &[u8] {
    v.trim_ascii()
}

fn parse_decimal(v: &[u8]) -> Option<usize> {
    if v.is_empty() || v.len() > 18 || !v.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(v).ok()?.parse().ok()
}

fn parse_hex(v: &[u8]) -> Option<usize> {
    if v.is_empty() || v.len() > 15 {
        return None;
    }
    usize::from_str_radix(std::str::from_utf8(v).ok()?, 16).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn complete(msg_server: bool) -> Parse {
        Parse::Complete { msg_server }
    }

    #[test]
    fn plain_gets() {
        let get = b"GET /msg_server HTTP/1.1\r\nHost: x\r\n\r\n";
        assert_eq!(parse_request(get), complete(true));
        for cut in 0..get.len() {
            assert_eq!(
                parse_request(&get[..cut]),
                Parse::Incomplete,
                "cut at {cut}"
            );
        }
        assert_eq!(
            parse_request(b"GET /msg_server?a=1 HTTP/1.0\r\n\r\n"),
            complete(true)
        );
        assert_eq!(
            parse_request(b"GET /msg_serverXYZ HTTP/1.0\r\n\r\n"),
            complete(true)
        );
        assert_eq!(
            parse_request(b"\r\nDELETE /msg_server HTTP/1.1\n\n"),
            complete(true)
        );
        assert_eq!(
            parse_request(b"GET /msg_serve HTTP/1.1\r\n\r\n"),
            complete(false)
        );
        assert_eq!(parse_request(b"GET / HTTP/1.1\r\n\r\n"), complete(false));
        assert_eq!(
            parse_request(b"GET http://h/msg_server HTTP/1.1\r\n\r\n"),
            complete(false)
        );
    }

    #[test]
    fn bodies_are_waited_for() {
        let post = b"POST /msg_server HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello";
        assert_eq!(parse_request(post), complete(true));
        assert_eq!(parse_request(&post[..post.len() - 1]), Parse::Incomplete);
        let big = b"POST /msg_server HTTP/1.1\r\ncontent-length: 2000\r\n\r\n";
        assert_eq!(parse_request(big), Parse::TooLarge);
        let chunked =
            b"POST /msg_server HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5;x=1\r\nhello\r\n0\r\n\r\n";
        assert_eq!(parse_request(chunked), complete(true));
        for cut in 0..chunked.len() {
            assert_eq!(
                parse_request(&chunked[..cut]),
                Parse::Incomplete,
                "cut at {cut}"
            );
        }
    }

    #[test]
    fn garbage_is_malformed() {
        for bad in [
            &b"\x16\x03\x01\x02\x00\n"[..],
            b"\x16\x03\x01",
            b"GET /msg_server\r\n\r\n",
            b"GET /msg_server HTTP/2.0\r\n\r\n",
            b"GET  /msg_server HTTP/1.1\r\n\r\n",
            b"GET /msg_server HTTP/1.1\r\nno colon\r\n\r\n",
            b"GET /msg_server HTTP/1.1\r\nContent-Length: x\r\n\r\n",
            b"GET /msg_server HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
            b"POST /msg_server HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
            b"POST /msg_server HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nabc\r\n",
        ] {
            assert!(
                matches!(parse_request(bad), Parse::Malformed(_)),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }
}
