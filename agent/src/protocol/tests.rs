use std::path::PathBuf;

use runtime::options::{config_from_options, RunOptions};

use super::*;

fn sample_config() -> Box<ContainerConfig> {
    let options = RunOptions::new(
        std::env::temp_dir(),
        vec!["sh".into(), "-c".into(), "echo hi".into()],
    );
    Box::new(config_from_options(&options).unwrap())
}

fn round_trip(op: Op) {
    let request = Request::new(7, op);
    let line = encode(&request);
    assert_eq!(line.last(), Some(&b'\n'));
    assert_eq!(line.iter().filter(|&&b| b == b'\n').count(), 1, "one line");
    let decoded = decode_request(&line[..line.len() - 1]).unwrap();
    assert_eq!(decoded, request);
}

#[test]
fn every_op_survives_encode_and_decode() {
    round_trip(Op::Hello { seed: None });
    round_trip(Op::Hello {
        seed: Some((0..32).collect()),
    });
    round_trip(Op::Create {
        container: "c1".into(),
        config: sample_config(),
        rootfs: RootfsSource::Disk {
            device: PathBuf::from("/dev/vda"),
            fstype: "ext4".into(),
            bytes: None,
        },
        link: None,
        files: Vec::new(),
    });
    round_trip(Op::Create {
        container: "c1".into(),
        config: sample_config(),
        rootfs: RootfsSource::Disk {
            device: PathBuf::from("/dev/vda"),
            fstype: "ext4".into(),
            bytes: Some(64 << 20),
        },
        link: Some(LinkAddresses::slot(3)),
        files: Vec::new(),
    });
    round_trip(Op::Create {
        container: "c1".into(),
        config: sample_config(),
        rootfs: RootfsSource::Dir {
            path: PathBuf::from("/tmp/root"),
        },
        link: None,
        files: Vec::new(),
    });
    for stream in StreamKind::ALL {
        round_trip(Op::Attach {
            container: "c1".into(),
            stream,
        });
    }
    round_trip(Op::Start {
        container: "c1".into(),
        console_size: None,
    });
    round_trip(Op::Start {
        container: "c1".into(),
        console_size: Some(ConsoleSize { rows: 24, cols: 80 }),
    });
    round_trip(Op::Resize {
        container: "c1".into(),
        size: ConsoleSize {
            rows: 50,
            cols: 132,
        },
    });
    round_trip(Op::Wait {
        container: "c1".into(),
    });
    round_trip(Op::Signal {
        container: "c1".into(),
        signal: 15,
    });
    round_trip(Op::Shutdown);
}

#[test]
fn optional_fields_stay_off_the_wire_when_unset() {
    // An agent built before these fields still takes what a host sends without them.
    let start = encode(&Request::new(
        1,
        Op::Start {
            container: "c".into(),
            console_size: None,
        },
    ));
    assert!(!String::from_utf8(start).unwrap().contains("console_size"));
    let exec = encode(&Request::new(
        2,
        Op::Exec {
            container: "e".into(),
            target: "c".into(),
            process: Box::new(sample_config().process),
            terminal: false,
        },
    ));
    assert!(!String::from_utf8(exec).unwrap().contains("terminal"));
}

#[test]
fn op_names_match_the_wire() {
    let line = encode(&Request::new(1, Op::Shutdown));
    let text = String::from_utf8(line).unwrap();
    assert!(text.contains(r#""op":"shutdown""#), "{text}");
    assert!(text.contains(r#""v":1"#), "{text}");
    assert_eq!(Op::Shutdown.name(), "shutdown");
    assert!(Op::NAMES.contains(&Op::Hello { seed: None }.name()));
}

#[test]
fn wire_form_of_a_request_is_stable() {
    let request =
        decode_request(br#"{"v":1,"id":3,"op":"signal","container":"c","signal":9}"#).unwrap();
    assert_eq!(
        request,
        Request::new(
            3,
            Op::Signal {
                container: "c".into(),
                signal: 9
            }
        )
    );
    let attach =
        decode_request(br#"{"v":1,"id":4,"op":"attach","container":"c","stream":"stderr"}"#)
            .unwrap();
    assert!(matches!(
        attach.op,
        Op::Attach {
            stream: StreamKind::Stderr,
            ..
        }
    ));
}

/// A create line as a host without links sends it: the wire form minus `link`.
fn create_line(link: Option<&str>) -> Vec<u8> {
    let config = serde_json::to_string(&sample_config()).unwrap();
    let link = link.map_or(String::new(), |l| format!(r#","link":{l}"#));
    format!(
        r#"{{"v":1,"id":2,"op":"create","container":"c","config":{config},"rootfs":{{"disk":{{"device":"/dev/vda","fstype":"ext4"}}}}{link}}}"#
    )
    .into_bytes()
}

#[test]
fn a_create_without_link_from_an_older_host_still_parses() {
    let request = decode_request(&create_line(None)).unwrap();
    assert!(
        matches!(request.op, Op::Create { link: None, .. }),
        "{request:?}"
    );
}

#[test]
fn a_create_with_a_link_carries_both_ends_and_the_prefix() {
    let line = create_line(Some(
        r#"{"host":"10.231.0.5","workload":"10.231.0.6","prefix_len":30}"#,
    ));
    let request = decode_request(&line).unwrap();
    let Op::Create { link, .. } = request.op else {
        panic!("not a create: {request:?}");
    };
    assert_eq!(link, Some(LinkAddresses::slot(1)));
}

#[test]
fn a_create_without_link_is_sent_without_the_field() {
    // So an agent that predates `link` (it refuses unknown fields) still takes it.
    let line = encode(&Request::new(
        2,
        Op::Create {
            container: "c".into(),
            config: sample_config(),
            rootfs: RootfsSource::Dir {
                path: PathBuf::from("/"),
            },
            link: None,
            files: Vec::new(),
        },
    ));
    let text = String::from_utf8(line).unwrap();
    assert!(!text.contains("\"link\""), "{text}");
    assert!(!text.contains("\"files\""), "{text}");
}

#[test]
fn a_create_with_file_copies_carries_their_bytes() {
    round_trip(Op::Create {
        container: "c1".into(),
        config: sample_config(),
        rootfs: RootfsSource::Dir {
            path: PathBuf::from("/tmp/root"),
        },
        link: None,
        files: vec![FileCopy {
            mount: 2,
            mode: 0o644,
            content: b"127.0.0.1 localhost\n\0\xff".to_vec(),
        }],
    });
}

#[test]
fn a_link_with_a_malformed_address_is_refused_with_the_id() {
    let line = create_line(Some(
        r#"{"host":"10.231.0.256","workload":"10.231.0.6","prefix_len":30}"#,
    ));
    let (id, err) = decode_request(&line).unwrap_err();
    assert_eq!(id, Some(2));
    assert!(matches!(err, ProtocolError::Invalid { .. }), "{err}");
}

#[test]
fn not_json_is_refused() {
    let (id, err) = decode_request(b"hello agent").unwrap_err();
    assert_eq!(id, None);
    assert!(matches!(err, ProtocolError::NotJson(_)), "{err}");
}

#[test]
fn json_that_is_not_an_object_is_refused() {
    for line in [&b"[1,2]"[..], b"42", b"\"hello\"", b"null"] {
        let (_, err) = decode_request(line).unwrap_err();
        assert_eq!(err, ProtocolError::NotAnObject);
    }
}

#[test]
fn missing_or_other_version_is_refused() {
    let (_, err) = decode_request(br#"{"id":1,"op":"hello"}"#).unwrap_err();
    assert_eq!(err, ProtocolError::NoVersion);
    let (_, err) = decode_request(br#"{"v":"1","id":1,"op":"hello"}"#).unwrap_err();
    assert_eq!(err, ProtocolError::NoVersion);
    let (_, err) = decode_request(br#"{"v":2,"id":1,"op":"hello"}"#).unwrap_err();
    assert_eq!(err, ProtocolError::WrongVersion { found: 2 });
    assert!(err.to_string().contains("version 2"), "{err}");
}

#[test]
fn request_without_id_is_refused() {
    let (id, err) = decode_request(br#"{"v":1,"op":"hello"}"#).unwrap_err();
    assert_eq!((id, err), (None, ProtocolError::NoId));
    let (_, err) = decode_request(br#"{"v":1,"id":-1,"op":"hello"}"#).unwrap_err();
    assert_eq!(err, ProtocolError::NoId);
}

#[test]
fn unknown_or_missing_op_is_refused_with_the_id() {
    let (id, err) = decode_request(br#"{"v":1,"id":5,"op":"format_disk"}"#).unwrap_err();
    assert_eq!(id, Some(5));
    assert_eq!(err, ProtocolError::UnknownOp("format_disk".into()));
    let (id, err) = decode_request(br#"{"v":1,"id":6}"#).unwrap_err();
    assert_eq!(id, Some(6));
    assert!(matches!(err, ProtocolError::UnknownOp(_)));
    let (_, err) = decode_request(br#"{"v":1,"id":6,"op":3}"#).unwrap_err();
    assert!(matches!(err, ProtocolError::UnknownOp(_)));
}

#[test]
fn fields_of_the_wrong_type_or_missing_are_refused_with_the_id() {
    for line in [
        &br#"{"v":1,"id":8,"op":"signal","container":"c","signal":"TERM"}"#[..],
        br#"{"v":1,"id":8,"op":"signal","container":"c"}"#,
        br#"{"v":1,"id":8,"op":"start"}"#,
        br#"{"v":1,"id":8,"op":"attach","container":"c","stream":"stdlog"}"#,
        br#"{"v":1,"id":8,"op":"create","container":"c","config":{},"rootfs":{"dir":{"path":"/"}}}"#,
        br#"{"v":1,"id":8,"op":"create","container":"c","config":null,"rootfs":{"tape":{}}}"#,
    ] {
        let (id, err) = decode_request(line).unwrap_err();
        assert_eq!(id, Some(8), "{}", String::from_utf8_lossy(line));
        assert!(
            matches!(err, ProtocolError::Invalid { .. }),
            "{}: {err}",
            String::from_utf8_lossy(line)
        );
    }
}

#[test]
fn unknown_fields_of_an_op_are_refused() {
    let (_, err) =
        decode_request(br#"{"v":1,"id":9,"op":"start","container":"c","privileged":true}"#)
            .unwrap_err();
    assert!(matches!(err, ProtocolError::Invalid { .. }), "{err}");
}

#[test]
fn replies_round_trip_and_carry_typed_bodies() {
    let reply = Reply::ok(
        4,
        &WaitReply {
            status: 137,
            signal: Some(9),
            oom_killed: true,
        },
    );
    let line = encode(&reply);
    let decoded = decode_reply(&line[..line.len() - 1]).unwrap();
    assert_eq!(decoded.id, Some(4));
    let wait: WaitReply = decoded.into_result().unwrap();
    assert_eq!(wait.status, 137);
    assert!(wait.oom_killed);

    let line = encode(&Reply::empty(5));
    let decoded = decode_reply(&line[..line.len() - 1]).unwrap();
    let _: serde_json::Map<String, Value> = decoded.into_result().unwrap();
}

#[test]
fn error_reply_gives_the_agents_kind_and_message() {
    let reply = Reply::error(Some(2), ErrorKind::BadInput, "command \"nope\" not found");
    let line = encode(&reply);
    let decoded = decode_reply(&line[..line.len() - 1]).unwrap();
    let err = decoded.into_result::<StartReply>().unwrap_err();
    match err {
        ReplyError::Agent(e) => {
            assert_eq!(e.kind, ErrorKind::BadInput);
            assert!(e.message.contains("nope"));
        }
        other => panic!("{other}"),
    }
}

#[test]
fn reply_with_both_or_neither_result_is_malformed() {
    let both = br#"{"v":1,"id":1,"ok":{},"error":{"kind":"failed","message":"x"}}"#;
    assert!(matches!(
        decode_reply(both),
        Err(ProtocolError::Invalid { .. })
    ));
    let neither = br#"{"v":1,"id":1}"#;
    assert!(matches!(
        decode_reply(neither),
        Err(ProtocolError::Invalid { .. })
    ));
    let other_version = br#"{"v":7,"id":1,"ok":{}}"#;
    assert_eq!(
        decode_reply(other_version),
        Err(ProtocolError::WrongVersion { found: 7 })
    );
}

#[test]
fn reply_body_of_the_wrong_shape_is_malformed() {
    let reply = decode_reply(br#"{"v":1,"id":1,"ok":{"pid":"one"}}"#).unwrap();
    assert!(matches!(
        reply.into_result::<StartReply>(),
        Err(ReplyError::Malformed(_))
    ));
    let reply = decode_reply(br#"{"v":1,"id":1,"error":{"kind":"cosmic_ray","message":"x"}}"#);
    assert!(matches!(reply, Err(ProtocolError::Invalid { .. })));
}

#[test]
fn line_buffer_splits_lines_across_pushes() {
    let mut lines = LineBuffer::new();
    lines.push(b"{\"a\":1}\n{\"b\"");
    assert_eq!(lines.next_line().unwrap(), Some(b"{\"a\":1}".to_vec()));
    assert_eq!(lines.next_line().unwrap(), None);
    lines.push(b":2}\nraw");
    assert_eq!(lines.next_line().unwrap(), Some(b"{\"b\":2}".to_vec()));
    assert_eq!(lines.next_line().unwrap(), None);
    assert_eq!(lines.take_rest(), b"raw".to_vec());
    assert_eq!(lines.next_line().unwrap(), None);
}

#[test]
fn line_buffer_refuses_a_line_longer_than_the_limit() {
    let mut lines = LineBuffer::new();
    let chunk = vec![b'x'; 64 * 1024];
    let mut refused = false;
    for _ in 0..(MAX_LINE / chunk.len() + 1) {
        lines.push(&chunk);
        match lines.next_line() {
            Ok(None) => {}
            Err(ProtocolError::LineTooLong) => {
                refused = true;
                break;
            }
            other => panic!("{other:?}"),
        }
    }
    assert!(
        refused,
        "a newline-free stream past MAX_LINE must be refused"
    );

    let mut lines = LineBuffer::new();
    let mut long = vec![b'y'; MAX_LINE];
    long.push(b'\n');
    lines.push(&long);
    assert_eq!(lines.next_line(), Err(ProtocolError::LineTooLong));
}

#[test]
fn oversized_line_given_to_decode_is_refused() {
    let long = vec![b' '; MAX_LINE];
    assert_eq!(
        decode_request(&long).unwrap_err().1,
        ProtocolError::LineTooLong
    );
    assert_eq!(decode_reply(&long), Err(ProtocolError::LineTooLong));
}

#[test]
fn a_field_this_side_does_not_know_is_refused() {
    // What an agent from before `link` does with a create that carries one.
    let (id, err) =
        decode_request(br#"{"v":1,"id":8,"op":"signal","container":"c","signal":9,"extra":1}"#)
            .unwrap_err();
    assert_eq!(id, Some(8));
    assert!(matches!(err, ProtocolError::Invalid { .. }), "{err}");
}
