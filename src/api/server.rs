//! The API socket's server: one thread, one epoll, every connection non-blocking. Requests
//! on a connection are answered in order (clients pipeline them on one keep-alive
//! connection); while a connection has answers the client has not taken yet, nothing more
//! is read from it, so a client that never reads cannot make the VMM buffer without end.

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::net::{UnixListener, UnixStream};
use std::time::Instant;

use vmm_sys_util::epoll::{ControlOperation, Epoll, EpollEvent, EventSet};

use super::http::{self, Parsed, Request, Response};

/// Connections served at once; more are accepted and closed at once (Firecracker's
/// server takes 10; clients keep one or two).
const MAX_CONNECTIONS: usize = 64;
/// The epoll token of the listening socket; connections count up from 0.
const LISTENER: u64 = u64::MAX;
/// Bytes read from a connection per read(2).
const READ_CHUNK: usize = 4096;
/// What a connection may hold of requests not yet answered.
const MAX_PENDING_INPUT: usize = http::MAX_HEADER_BYTES + http::MAX_BODY_BYTES;

/// What answers the requests.
pub trait Service {
    fn handle(&mut self, request: Request) -> Response;
    /// When [`Service::tick`] is due next; `None`: not at all.
    fn next_tick(&self) -> Option<Instant> {
        None
    }
    /// Periodic work (the metrics' flush), on the server's thread.
    fn tick(&mut self) {}
}

struct Connection {
    stream: UnixStream,
    input: Vec<u8>,
    output: Vec<u8>,
    /// A `100 Continue` went out for the request being read.
    continued: bool,
    /// Close once the output is written: the client asked, sent garbage, or hung up.
    closing: bool,
    /// The events the connection is registered for.
    interest: EventSet,
}

/// Serves `listener` until epoll itself fails (it does not on its own valid fds).
pub fn serve(listener: UnixListener, service: &mut impl Service) -> io::Result<()> {
    listener.set_nonblocking(true)?;
    let epoll = Epoll::new()?;
    epoll.ctl(
        ControlOperation::Add,
        listener.as_raw_fd(),
        EpollEvent::new(EventSet::IN, LISTENER),
    )?;
    let mut connections: HashMap<u64, Connection> = HashMap::new();
    let mut next_token = 0u64;
    let mut events = [EpollEvent::default(); 16];
    loop {
        let timeout = match service.next_tick() {
            None => -1,
            Some(due) => {
                let left = due.saturating_duration_since(Instant::now());
                i32::try_from(left.as_millis().saturating_add(1)).unwrap_or(i32::MAX)
            }
        };
        let n = match epoll.wait(timeout, &mut events) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if service.next_tick().is_some_and(|due| due <= Instant::now()) {
            service.tick();
        }
        for event in &events[..n] {
            let token = event.data();
            if token == LISTENER {
                accept_all(&listener, &epoll, &mut connections, &mut next_token);
                continue;
            }
            let Some(conn) = connections.get_mut(&token) else {
                continue;
            };
            let set = event.event_set();
            if set.intersects(EventSet::ERROR | EventSet::HANG_UP) && conn.output.is_empty() {
                conn.closing = true;
                conn.input.clear();
            }
            if set.contains(EventSet::IN) {
                read_and_answer(conn, service);
            }
            flush(conn);
            if conn.closing && conn.output.is_empty() {
                // Dropping the stream closes it, which also takes it out of the epoll set.
                connections.remove(&token);
                continue;
            }
            let wanted = if conn.output.is_empty() {
                EventSet::IN
            } else {
                EventSet::OUT
            };
            if wanted != conn.interest
                && epoll
                    .ctl(
                        ControlOperation::Modify,
                        conn.stream.as_raw_fd(),
                        EpollEvent::new(wanted, token),
                    )
                    .is_ok()
            {
                conn.interest = wanted;
            }
        }
    }
}

fn accept_all(
    listener: &UnixListener,
    epoll: &Epoll,
    connections: &mut HashMap<u64, Connection>,
    next_token: &mut u64,
) {
    // Accept errors (EMFILE, a client that went away) drop that one client only.
    while let Ok((stream, _)) = listener.accept() {
        if connections.len() >= MAX_CONNECTIONS || stream.set_nonblocking(true).is_err() {
            continue;
        }
        let token = *next_token;
        *next_token += 1;
        let registered = epoll.ctl(
            ControlOperation::Add,
            stream.as_raw_fd(),
            EpollEvent::new(EventSet::IN, token),
        );
        if registered.is_ok() {
            connections.insert(
                token,
                Connection {
                    stream,
                    input: Vec::new(),
                    output: Vec::new(),
                    continued: false,
                    closing: false,
                    interest: EventSet::IN,
                },
            );
        }
    }
}

/// Reads what the client sent and answers every whole request in it.
fn read_and_answer(conn: &mut Connection, service: &mut impl Service) {
    let mut chunk = [0u8; READ_CHUNK];
    while !conn.closing && conn.input.len() < MAX_PENDING_INPUT {
        match conn.stream.read(&mut chunk) {
            Ok(0) => {
                // The client is done sending: answer what it sent, then close.
                conn.closing = true;
            }
            Ok(n) => conn.input.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => {
                conn.closing = true;
                conn.input.clear();
            }
        }
    }
    loop {
        match http::parse(&conn.input) {
            Parsed::Request(request, used) => {
                conn.input.drain(..used);
                conn.continued = false;
                let close = request.close;
                let response = service.handle(request);
                conn.output.extend(response.to_bytes(close));
                if close {
                    conn.closing = true;
                    conn.input.clear();
                    return;
                }
            }
            Parsed::Partial { send_continue } => {
                if send_continue && !conn.continued {
                    conn.output.extend_from_slice(http::CONTINUE);
                    conn.continued = true;
                }
                if conn.closing {
                    // A request cut off by the client's hang-up gets no answer.
                    conn.input.clear();
                }
                return;
            }
            Parsed::Invalid(message) => {
                conn.output
                    .extend(Response::fault(400, message).to_bytes(true));
                conn.closing = true;
                conn.input.clear();
                return;
            }
        }
    }
}

/// Writes what the socket takes of the pending output.
fn flush(conn: &mut Connection) {
    while !conn.output.is_empty() {
        match conn.stream.write(&conn.output) {
            Ok(0) => break,
            Ok(n) => {
                conn.output.drain(..n);
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => {
                // The client is gone: nothing more can reach it.
                conn.output.clear();
                conn.closing = true;
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{BufRead, BufReader};

    struct Echo {
        seen: usize,
    }

    impl Service for Echo {
        fn handle(&mut self, request: Request) -> Response {
            self.seen += 1;
            Response::fault(
                400,
                format!("{} {} #{}", request.method, request.path, self.seen),
            )
        }
    }

    fn serving() -> (std::path::PathBuf, std::thread::JoinHandle<()>) {
        let dir = std::env::temp_dir().join(format!("vmm-api-server-{}", std::process::id()));
        let _ = std::fs::create_dir_all(&dir);
        let path = dir.join(format!("s{}", rand_suffix()));
        let listener = UnixListener::bind(&path).unwrap();
        let thread = std::thread::spawn(move || {
            let _ = serve(listener, &mut Echo { seen: 0 });
        });
        (path, thread)
    }

    fn rand_suffix() -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64
    }

    /// Reads one response (headers and a Content-Length body) from `reader`.
    fn read_response(reader: &mut impl BufRead) -> String {
        let mut head = String::new();
        let mut length = 0;
        loop {
            let mut line = String::new();
            reader.read_line(&mut line).unwrap();
            if let Some(v) = line.strip_prefix("Content-Length: ") {
                length = v.trim().parse().unwrap();
            }
            head.push_str(&line);
            if line == "\r\n" {
                break;
            }
        }
        let mut body = vec![0; length];
        reader.read_exact(&mut body).unwrap();
        head + &String::from_utf8(body).unwrap()
    }

    #[test]
    fn pipelined_requests_on_one_connection_are_answered_in_order() {
        let (path, _server) = serving();
        let mut stream = UnixStream::connect(&path).unwrap();
        stream
            .write_all(b"GET /a HTTP/1.1\r\n\r\nGET /b HTTP/1.1\r\n\r\nGET /c HTTP/1.1\r\n\r\n")
            .unwrap();
        let mut reader = BufReader::new(stream);
        for (i, p) in ["/a", "/b", "/c"].iter().enumerate() {
            let r = read_response(&mut reader);
            assert!(r.contains(&format!("GET {p} #{}", i + 1)), "{r}");
        }
        let _ = std::fs::remove_file(path);
    }

    #[test]
    fn garbage_gets_400_and_the_connection_closed() {
        let (path, _server) = serving();
        let mut stream = UnixStream::connect(&path).unwrap();
        stream.write_all(b"\x00\x01\x02\r\n\r\n").unwrap();
        let mut all = String::new();
        stream.read_to_string(&mut all).unwrap();
        assert!(all.starts_with("HTTP/1.1 400 "), "{all}");
        assert!(all.contains("Connection: close"), "{all}");
        assert!(all.contains("fault_message"), "{all}");
        let _ = std::fs::remove_file(path);
    }

    #[test]
    fn expect_continue_gets_100_before_the_body() {
        let (path, _server) = serving();
        let mut stream = UnixStream::connect(&path).unwrap();
        stream
            .write_all(b"PUT /x HTTP/1.1\r\nContent-Length: 2\r\nExpect: 100-continue\r\n\r\n")
            .unwrap();
        let mut reader = BufReader::new(stream.try_clone().unwrap());
        let mut line = String::new();
        reader.read_line(&mut line).unwrap();
        assert_eq!(line, "HTTP/1.1 100 Continue\r\n");
        reader.read_line(&mut line).unwrap();
        stream.write_all(b"{}").unwrap();
        let r = read_response(&mut reader);
        assert!(r.contains("PUT /x #1"), "{r}");
        let _ = std::fs::remove_file(path);
    }
}
