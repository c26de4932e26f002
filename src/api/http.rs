//! HTTP/1.1 framing for the API socket: one request out of a connection's bytes, one
//! response into them. `httparse` (hyper's parser) reads the request line and headers;
//! what is left here is what the API needs around it: the body by Content-Length, keep-alive
//! and `Expect: 100-continue`, which curl sends for bodies over 1 KiB.
//!
//! Why not a server crate: Firecracker's `micro_http` is not published on crates.io; its
//! published fork `dbs-uhttp` and `tiny_http` have had no release since 2023, and
//! `tiny_http` runs a thread per connection (each would need the API's seccomp filter and
//! its own stack); hyper needs an async runtime, several MiB for a socket that serves a
//! handful of requests. `httparse` does the part that is easy to get wrong, and the server
//! stays one thread with one epoll (`server`).

/// The largest header block read: Firecracker's clients send a few hundred bytes.
pub const MAX_HEADER_BYTES: usize = 16 * 1024;
/// The largest body accepted: Firecracker's default API payload limit.
pub const MAX_BODY_BYTES: usize = 51_200;
/// Headers looked at per request; a request with more is refused.
const MAX_HEADERS: usize = 32;

/// One request, owned, as the router sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub method: String,
    /// The path without the query string (`/drives/rootfs`).
    pub path: String,
    /// `None` when the request had no body (no Content-Length, or 0).
    pub body: Option<Vec<u8>>,
    /// The client wants the connection closed after the response.
    pub close: bool,
}

/// What the bytes received so far hold.
#[derive(Debug, PartialEq, Eq)]
pub enum Parsed {
    /// A whole request, and how many bytes of the buffer it used.
    Request(Request, usize),
    /// Not yet a whole request; `send_continue` when the headers asked for a 100 Continue
    /// before the body comes.
    Partial { send_continue: bool },
    /// Not HTTP the API can serve: answered with 400 and the connection closed.
    Invalid(String),
}

/// Parses the first request in `buf`.
pub fn parse(buf: &[u8]) -> Parsed {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    let header_len = match req.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) if buf.len() > MAX_HEADER_BYTES => {
            return Parsed::Invalid(format!(
                "The request's headers are longer than {MAX_HEADER_BYTES} bytes."
            ))
        }
        Ok(httparse::Status::Partial) => {
            return Parsed::Partial {
                send_continue: false,
            }
        }
        Err(e) => return Parsed::Invalid(format!("Invalid HTTP request: {e}.")),
    };
    let (Some(method), Some(target), Some(version)) = (req.method, req.path, req.version) else {
        return Parsed::Invalid("Invalid HTTP request: incomplete request line.".into());
    };
    let mut content_length = 0usize;
    let mut close = version == 0;
    let mut expect_continue = false;
    for h in req.headers.iter() {
        let value = String::from_utf8_lossy(h.value);
        let value = value.trim();
        if h.name.eq_ignore_ascii_case("content-length") {
            match value.parse::<usize>() {
                Ok(n) => content_length = n,
                Err(_) => {
                    return Parsed::Invalid(format!("Invalid Content-Length header {value:?}."))
                }
            }
        } else if h.name.eq_ignore_ascii_case("transfer-encoding")
            && !value.eq_ignore_ascii_case("identity")
        {
            return Parsed::Invalid(format!(
                "Transfer-Encoding {value:?} is not supported; send a Content-Length."
            ));
        } else if h.name.eq_ignore_ascii_case("connection") {
            if value.eq_ignore_ascii_case("close") {
                close = true;
            } else if value.eq_ignore_ascii_case("keep-alive") {
                close = false;
            }
        } else if h.name.eq_ignore_ascii_case("expect")
            && value.eq_ignore_ascii_case("100-continue")
        {
            expect_continue = true;
        }
    }
    if content_length > MAX_BODY_BYTES {
        return Parsed::Invalid(format!(
            "Request payload with size {content_length} is larger than the limit of \
             {MAX_BODY_BYTES} allowed by server."
        ));
    }
    let total = header_len + content_length;
    if buf.len() < total {
        return Parsed::Partial {
            send_continue: expect_continue,
        };
    }
    let path = target.split('?').next().unwrap_or_default();
    // Clients write the request target as a path, or absolute (`http://localhost/x`).
    let path = match path.split_once("://") {
        Some((_, rest)) => rest.find('/').map_or("/", |i| &rest[i..]),
        None => path,
    };
    let request = Request {
        method: method.to_string(),
        path: path.to_string(),
        body: (content_length > 0).then(|| buf[header_len..total].to_vec()),
        close,
    };
    Parsed::Request(request, total)
}

/// A response: status, and a JSON body or none.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub body: Option<String>,
}

impl Response {
    pub fn no_content() -> Response {
        Response {
            status: 204,
            body: None,
        }
    }

    /// 200 with `value` as JSON.
    pub fn json(value: &impl serde::Serialize) -> Response {
        match serde_json::to_string(value) {
            Ok(body) => Response {
                status: 200,
                body: Some(body),
            },
            Err(e) => Response::fault(500, format!("Cannot serialize the response: {e}.")),
        }
    }

    /// An error as Firecracker answers it: `{"fault_message": "..."}`.
    pub fn fault(status: u16, message: impl Into<String>) -> Response {
        let body = serde_json::json!({ "fault_message": message.into() }).to_string();
        Response {
            status,
            body: Some(body),
        }
    }

    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// The bytes on the wire; `close` adds `Connection: close`.
    pub fn to_bytes(&self, close: bool) -> Vec<u8> {
        let mut head = format!("HTTP/1.1 {} {}\r\n", self.status, reason(self.status));
        head.push_str("Server: vmm\r\n");
        if close {
            head.push_str("Connection: close\r\n");
        }
        match &self.body {
            Some(body) => {
                head.push_str("Content-Type: application/json\r\n");
                head.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
                let mut bytes = head.into_bytes();
                bytes.extend_from_slice(body.as_bytes());
                bytes
            }
            // 204 has no body and so no Content-Length (RFC 9110 §8.6).
            None if self.status == 204 => {
                head.push_str("\r\n");
                head.into_bytes()
            }
            None => {
                head.push_str("Content-Length: 0\r\n\r\n");
                head.into_bytes()
            }
        }
    }
}

/// The interim response a client waits for after `Expect: 100-continue`.
pub const CONTINUE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        204 => "No Content",
        400 => "Bad Request",
        404 => "Not Found",
        500 => "Internal Server Error",
        _ => "",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(parsed: Parsed) -> (Request, usize) {
        match parsed {
            Parsed::Request(r, n) => (r, n),
            other => panic!("not a request: {other:?}"),
        }
    }

    #[test]
    fn put_with_a_body_is_read_by_content_length() {
        let raw = b"PUT /drives/rootfs HTTP/1.1\r\nHost: localhost\r\nContent-Length: 2\r\n\r\n{}";
        let (r, used) = request(parse(raw));
        assert_eq!(r.method, "PUT");
        assert_eq!(r.path, "/drives/rootfs");
        assert_eq!(r.body.as_deref(), Some(&b"{}"[..]));
        assert!(!r.close);
        assert_eq!(used, raw.len());
    }

    #[test]
    fn pipelined_requests_are_taken_one_at_a_time() {
        let raw = b"GET / HTTP/1.1\r\n\r\nGET /machine-config HTTP/1.1\r\n\r\n";
        let (first, used) = request(parse(raw));
        assert_eq!(first.path, "/");
        let (second, _) = request(parse(&raw[used..]));
        assert_eq!(second.path, "/machine-config");
    }

    #[test]
    fn a_body_not_yet_arrived_is_partial_and_may_ask_for_continue() {
        let raw = b"PUT /x HTTP/1.1\r\nContent-Length: 10\r\nExpect: 100-continue\r\n\r\n{";
        assert_eq!(
            parse(raw),
            Parsed::Partial {
                send_continue: true
            }
        );
        assert_eq!(
            parse(b"GET / HTTP/1.1\r\n"),
            Parsed::Partial {
                send_continue: false
            }
        );
    }

    #[test]
    fn absolute_targets_and_queries_leave_the_path() {
        let (r, _) = request(parse(b"GET http://localhost/balloon?x=1 HTTP/1.1\r\n\r\n"));
        assert_eq!(r.path, "/balloon");
    }

    #[test]
    fn http_1_0_and_connection_close_close_the_connection() {
        assert!(request(parse(b"GET / HTTP/1.0\r\n\r\n")).0.close);
        assert!(
            request(parse(b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n"))
                .0
                .close
        );
        assert!(
            !request(parse(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"))
                .0
                .close
        );
    }

    #[test]
    fn garbage_chunked_and_oversized_requests_are_invalid() {
        for raw in [
            &b"\x01\x02 nonsense\r\n\r\n"[..],
            b"PUT /x HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n",
            b"PUT /x HTTP/1.1\r\nContent-Length: lots\r\n\r\n",
            b"PUT /x HTTP/1.1\r\nContent-Length: 999999\r\n\r\n",
        ] {
            assert!(matches!(parse(raw), Parsed::Invalid(_)), "{raw:?}");
        }
        let huge = vec![b'a'; MAX_HEADER_BYTES + 1];
        assert!(matches!(parse(&huge), Parsed::Invalid(_)));
    }

    #[test]
    fn responses_carry_length_and_json_type_and_204_none() {
        let text = String::from_utf8(Response::fault(400, "bad").to_bytes(false)).unwrap();
        assert!(text.starts_with("HTTP/1.1 400 Bad Request\r\n"), "{text}");
        assert!(text.contains("Content-Length: 23\r\n"), "{text}");
        assert!(text.ends_with("{\"fault_message\":\"bad\"}"), "{text}");
        let text = String::from_utf8(Response::no_content().to_bytes(true)).unwrap();
        assert_eq!(
            text,
            "HTTP/1.1 204 No Content\r\nServer: vmm\r\nConnection: close\r\n\r\n"
        );
    }
}
