//! Fuzzing the agent protocol's decoders on stable as ordinary tests (`fuzzkit`;
//! docs/fuzzing.md). Both sides decode what the other sends, so none of this may panic:
//!
//! - `decode_request` and `decode_reply` on any bytes and on near-valid messages (every op
//!   and reply with a few values changed, removed or added): a clean error, with the
//!   request's id only when the line carried that numeric id; whatever is accepted
//!   encodes to a line that decodes to the same message, and a reply has exactly one of
//!   `ok` and `error`, whose body the typed accessor takes or refuses;
//! - `LineBuffer` on any stream cut into any pieces, lines up to past `MAX_LINE` long: the
//!   lines it gives are the stream's, in order, each shorter than `MAX_LINE`; it refuses a
//!   line as soon as `MAX_LINE` bytes come without a newline, so it never holds more than
//!   that plus one push; the bytes after the last line are left for `take_rest`.

use std::path::PathBuf;

use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::select;
use runtime::options::{config_from_options, RunOptions};
use serde_json::Value;

use super::*;
use fuzzkit::json::{garbage, near, text_of};
use fuzzkit::{Reach, Text};

/// Cases per decoder target in a plain `cargo test` run.
const CASES: u32 = 512;
/// Cases of the line buffer, whose streams run to megabytes.
const LINE_CASES: u32 = 48;

fn sample_config() -> Box<ContainerConfig> {
    let options = RunOptions::new(
        std::env::temp_dir(),
        vec!["sh".into(), "-c".into(), "x".into()],
    );
    Box::new(config_from_options(&options).expect("a config of plain options"))
}

/// Every op, each with its optional fields set, as JSON.
fn requests() -> Vec<Value> {
    let config = sample_config();
    let ops = vec![
        Op::Hello {
            seed: Some(vec![7; SEED_BYTES]),
        },
        Op::Create {
            container: "c1".into(),
            config: config.clone(),
            rootfs: RootfsSource::Disk {
                device: PathBuf::from("/dev/vda"),
                fstype: "ext4".into(),
                bytes: Some(1 << 30),
            },
            link: Some(LinkAddresses::slot(3)),
            files: vec![FileCopy {
                mount: 0,
                mode: 0o644,
                content: b"127.0.0.1 localhost\n".to_vec(),
            }],
        },
        Op::Attach {
            container: "c1".into(),
            stream: StreamKind::Stdin,
        },
        Op::Start {
            container: "c1".into(),
            console_size: Some(ConsoleSize { rows: 24, cols: 80 }),
        },
        Op::Wait {
            container: "c1".into(),
        },
        Op::Exec {
            container: "e1".into(),
            target: "c1".into(),
            process: Box::new(config.process.clone()),
            terminal: true,
        },
        Op::Resize {
            container: "c1".into(),
            size: ConsoleSize {
                rows: 50,
                cols: 132,
            },
        },
        Op::Signal {
            container: "c1".into(),
            signal: 15,
        },
        Op::Shutdown,
    ];
    ops.into_iter()
        .map(|op| serde_json::to_value(Request::new(7, op)).unwrap_or(Value::Null))
        .collect()
}

fn replies() -> Vec<Value> {
    let hello = HelloReply {
        protocol: PROTOCOL_VERSION,
        agent: "vmm-agent 0.1.0".into(),
        kernel: "6.1.0".into(),
    };
    let wait = WaitReply {
        status: 137,
        signal: Some(9),
        oom_killed: true,
    };
    [
        Reply::ok(1, &hello),
        Reply::ok(2, &StartReply { pid: 42 }),
        Reply::ok(3, &wait),
        Reply::empty(4),
        Reply::error(Some(5), ErrorKind::BadInput, "no such command"),
        Reply::error(None, ErrorKind::Protocol, "not JSON"),
    ]
    .iter()
    .map(|r| serde_json::to_value(r).unwrap_or(Value::Null))
    .collect()
}

/// One of `templates` as it is, or near one of them, as the bytes of one line (no
/// newline), sometimes damaged; or garbage.
fn lines(templates: Vec<Value>) -> impl Strategy<Value = Text> {
    let near_one = select(templates.clone()).prop_flat_map(|t| near(t, 3));
    prop_oneof![
        1 => text_of(select(templates), 0),
        3 => text_of(near_one, 2),
        1 => garbage(),
    ]
    .prop_map(|mut line| {
        line.0.retain(|&b| b != b'\n');
        line
    })
}

/// The line's "id" when it is a JSON object with a numeric one.
fn numeric_id(line: &[u8]) -> Option<u64> {
    serde_json::from_slice::<Value>(line)
        .ok()?
        .get("id")?
        .as_u64()
}

fn line_of(message: &impl Serialize) -> Vec<u8> {
    let mut line = encode(message);
    line.pop();
    line
}

#[test]
fn any_request_line_decodes_or_is_refused_with_only_its_own_id() {
    // Some lines must decode, or the round trip goes untested.
    let decoded = Reach::new("decoded");
    fuzzkit::check(file!(), CASES, lines(requests()), |line| {
        let result = decode_request(&line);
        decoded.record(result.is_ok());
        match result {
            Ok(request) => {
                let again = decode_request(&line_of(&request));
                prop_assert_eq!(
                    again,
                    Ok(request),
                    "a request does not survive its round trip"
                );
            }
            Err((id, error)) => {
                prop_assert!(!error.to_string().is_empty());
                if let Some(id) = id {
                    prop_assert_eq!(Some(id), numeric_id(&line), "an error reply for another id");
                }
            }
        }
        Ok(())
    });
    decoded.assert_at_least_one_in(16);
}

#[test]
fn any_reply_line_decodes_to_exactly_one_outcome_or_is_refused() {
    fuzzkit::check(file!(), CASES, lines(replies()), |line| {
        match decode_reply(&line) {
            Ok(reply) => {
                prop_assert!(reply.ok.is_some() != reply.error.is_some());
                let again = decode_reply(&line_of(&reply))
                    .map_err(|e| TestCaseError::fail(format!("re-decoding the reply: {e}")))?;
                prop_assert_eq!(
                    (again.v, again.id, &again.error),
                    (reply.v, reply.id, &reply.error)
                );
                let (a, b) = (
                    again.ok.unwrap_or_default(),
                    reply.ok.clone().unwrap_or_default(),
                );
                prop_assert!(
                    same_json(&a, &b),
                    "a reply body does not survive its round trip: {} vs {}",
                    a,
                    b
                );
                // The typed accessors take the body, pass the agent's error on, or say
                // why the body is not what was asked for.
                for outcome in [
                    reply.clone().into_result::<HelloReply>().err(),
                    reply.clone().into_result::<StartReply>().err(),
                    reply.clone().into_result::<WaitReply>().err(),
                    reply.clone().into_result::<Value>().err(),
                ]
                .into_iter()
                .flatten()
                {
                    match outcome {
                        ReplyError::Agent(e) => prop_assert_eq!(Some(&e), reply.error.as_ref()),
                        ReplyError::Malformed(e) => {
                            prop_assert!(reply.ok.is_some());
                            prop_assert!(!e.to_string().is_empty());
                        }
                    }
                }
            }
            Err(error) => prop_assert!(!error.to_string().is_empty()),
        }
        Ok(())
    });
}

/// Equal JSON, but for floats, which serde_json's default (fast) parsing reads back up to
/// an ulp or so off: a reply body is opaque JSON, and only its typed bodies, which have no
/// floats, must come back exactly.
fn same_json(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) if x.is_f64() || y.is_f64() => {
            let (x, y) = (
                x.as_f64().unwrap_or(f64::NAN),
                y.as_f64().unwrap_or(f64::NAN),
            );
            x == y || (x - y).abs() <= 1e-12 * x.abs().max(y.abs())
        }
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(x, y)| same_json(x, y))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| same_json(v, w)))
        }
        _ => a == b,
    }
}

/// A piece of a stream: `len` bytes of `byte`, then a newline or not.
#[derive(Debug, Clone)]
struct Piece {
    len: usize,
    byte: u8,
    newline: bool,
}

fn stream() -> impl Strategy<Value = (Vec<Piece>, Vec<usize>)> {
    let len = prop_oneof![
        8 => 0..64usize,
        1 => MAX_LINE - 2..=MAX_LINE + 1,
        1 => 0..2 * MAX_LINE,
    ];
    let piece = (
        len,
        any::<u8>().prop_filter("not a newline", |b| *b != b'\n'),
        any::<bool>(),
    )
        .prop_map(|(len, byte, newline)| Piece { len, byte, newline });
    let chunk = prop_oneof![4 => 1..4096usize, 1 => 1..=MAX_LINE + 1];
    (vec(piece, 1..8), vec(chunk, 1..8))
}

#[test]
fn line_buffer_gives_the_streams_lines_and_refuses_one_past_the_limit() {
    fuzzkit::check(file!(), LINE_CASES, stream(), |(pieces, chunks)| {
        let mut bytes = Vec::new();
        for p in &pieces {
            bytes.resize(bytes.len() + p.len, p.byte);
            if p.newline {
                bytes.push(b'\n');
            }
        }
        let mut buffer = LineBuffer::new();
        // The model: the stream up to `consumed` has come out as lines, and there is no
        // newline between `consumed` and `scanned`.
        let mut consumed = 0;
        let mut scanned = 0;
        let mut pushed = 0;
        for &size in chunks.iter().cycle() {
            if pushed == bytes.len() {
                break;
            }
            let end = (pushed + size).min(bytes.len());
            buffer.push(&bytes[pushed..end]);
            pushed = end;
            loop {
                let pending = &bytes[consumed..pushed];
                let got = buffer.next_line();
                let from = scanned.max(consumed);
                let newline = bytes[from..pushed].iter().position(|&b| b == b'\n');
                match newline.map(|n| from + n - consumed) {
                    Some(n) if n >= MAX_LINE => {
                        prop_assert_eq!(got, Err(ProtocolError::LineTooLong));
                        return Ok(());
                    }
                    Some(n) => {
                        prop_assert_eq!(got, Ok(Some(pending[..n].to_vec())));
                        consumed += n + 1;
                        scanned = consumed;
                    }
                    None if pending.len() >= MAX_LINE => {
                        prop_assert_eq!(got, Err(ProtocolError::LineTooLong));
                        return Ok(());
                    }
                    None => {
                        prop_assert_eq!(got, Ok(None));
                        scanned = pushed;
                        break;
                    }
                }
            }
        }
        prop_assert_eq!(buffer.take_rest(), bytes[consumed..].to_vec());
        Ok(())
    });
}
