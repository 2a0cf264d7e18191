use super::*;

fn scan_all(bytes: &[u8]) -> Result<Scanned, ScanError> {
    Scanner::default().scan(bytes, 1 << 20)
}

/// `pickle.dumps({'name': 'Jose Ortiz', 'email': 'jose@sfsu.edu'})`, protocol 4.
const DICT: &[u8] = b"\x80\x04\x95/\x00\x00\x00\x00\x00\x00\x00}\x94(\x8c\x04name\x94\x8c\nJose Ortiz\x94\x8c\x05email\x94\x8c\rjose@sfsu.edu\x94u.";

#[test]
fn a_python_dict_is_plain_data_and_its_end_is_found() {
    let mut bytes = DICT.to_vec();
    bytes.extend_from_slice(b"\x80\x04N.");
    assert_eq!(
        scan_all(&bytes),
        Ok(Scanned::Complete {
            len: DICT.len(),
            refused: None
        })
    );
}

#[test]
fn every_prefix_is_incomplete_and_resuming_finds_the_same_end() {
    for cut in 0..DICT.len() {
        let mut scanner = Scanner::default();
        assert_eq!(scanner.scan(&DICT[..cut], 1 << 20), Ok(Scanned::Incomplete));
        assert_eq!(
            scanner.scan(DICT, 1 << 20),
            Ok(Scanned::Complete {
                len: DICT.len(),
                refused: None
            })
        );
    }
}

#[test]
fn globals_and_calls_are_refused_but_framed() {
    // pickle.dumps of an object whose __reduce__ returns (os.system, ('id',)), protocol 0.
    let reduce = b"cposix\nsystem\np0\n(Vid\np1\ntp2\nRp3\n.";
    assert_eq!(
        scan_all(reduce),
        Ok(Scanned::Complete {
            len: reduce.len(),
            refused: Some("names a global, class or callable")
        })
    );
    let stack_global = b"\x80\x04\x8c\x02os\x8c\x06system\x93\x8c\x02id\x85R.";
    assert!(matches!(
        scan_all(stack_global),
        Ok(Scanned::Complete {
            refused: Some(_),
            ..
        })
    ));
}

#[test]
fn shared_containers_and_deep_nesting_are_refused() {
    // l = []; [l, l]: the second reference to a container comes through the memo.
    let shared = b"\x80\x04]\x94(]\x94h\x01e.";
    assert!(matches!(
        scan_all(shared),
        Ok(Scanned::Complete {
            refused: Some("shared or recursive containers are not accepted"),
            ..
        })
    ));
    let mut deep = b"\x80\x04".to_vec();
    deep.extend(std::iter::repeat_n(b']', 40));
    deep.extend(std::iter::repeat_n(b'a', 39));
    deep.push(b'.');
    assert!(matches!(
        scan_all(&deep),
        Ok(Scanned::Complete {
            refused: Some("containers nested too deep"),
            ..
        })
    ));
}

#[test]
fn broken_framing_is_an_error() {
    assert_eq!(scan_all(b"\xff"), Err(ScanError::UnknownOpcode(0xff)));
    assert_eq!(
        scan_all(b"\x80\x04\x8d\xff\xff\xff\xff\xff\xff\xff\x7f"),
        Err(ScanError::TooLarge { max: 1 << 20 })
    );
    let mut scanner = Scanner::default();
    assert_eq!(
        scanner.scan(&[b'V'; 100], 50),
        Err(ScanError::TooLarge { max: 50 })
    );
}

fn refusal(bytes: &[u8]) -> Option<&'static str> {
    match scan_all(bytes) {
        Ok(Scanned::Complete { len, refused }) if len == bytes.len() => refused,
        other => panic!("not one complete pickle: {other:?}"),
    }
}

/// Feeds `pickle` in reads of `chunk` bytes, as a connection would, and checks
/// after each that what the scanner holds is within its bound of what came.
fn feed(pickle: &[u8], chunk: usize) -> Scanned {
    let mut scanner = Scanner::default();
    let mut got = 0;
    loop {
        got = (got + chunk).min(pickle.len());
        let scanned = scanner.scan(&pickle[..got], pickle.len()).unwrap();
        let bound = COST_FACTOR * (got as u64 + COST_SLACK);
        assert!(
            scanner.held() as u64 <= bound,
            "holds {} bytes after {got} received",
            scanner.held()
        );
        if scanned != Scanned::Incomplete {
            return scanned;
        }
    }
}

#[test]
fn one_value_memoized_a_million_times_is_refused_holding_little() {
    let mut pickle = b"\x80\x04\x8c\x01a".to_vec();
    pickle.extend(std::iter::repeat_n(0x94, 1_000_000));
    let mut scanner = Scanner::default();
    assert_eq!(
        scanner.scan(&pickle, 2 << 20),
        Ok(Scanned::Incomplete),
        "no STOP yet"
    );
    // Refused long before the end, and everything kept to judge it let go.
    assert!(scanner.refused.is_some());
    assert_eq!(scanner.held(), 0);
    pickle.push(b'.');
    assert!(matches!(
        feed(&pickle, 4096),
        Scanned::Complete {
            refused: Some(TOO_COSTLY),
            ..
        }
    ));
}

#[test]
fn what_decoding_would_build_is_weighed_before_it_is_built() {
    let with = |head: &[u8], body: &[u8], times: usize, tail: &[u8]| {
        let mut pickle = head.to_vec();
        for _ in 0..times {
            pickle.extend_from_slice(body);
        }
        pickle.extend_from_slice(tail);
        pickle
    };
    // Marks: serde-pickle gives each a stack of its own.
    let marks = with(b"\x80\x04", b"(", 100_000, b"N.");
    // A list of a hundred thousand Nones.
    let nones = with(b"\x80\x04](", b"N", 100_000, b"e.");
    // One 100 kB string read back through the memo eight times.
    let mut repeated = b"\x80\x04](\x8d\xa0\x86\x01\x00\x00\x00\x00\x00".to_vec();
    repeated.extend(std::iter::repeat_n(b'y', 100_000));
    repeated.push(0x94);
    repeated.extend(std::iter::repeat_n([b'h', 0], 8).flatten());
    repeated.extend_from_slice(b"e.");
    // A list of strings memoized, then memoized again and again: each clones it.
    let mut cloned = with(b"\x80\x04](", b"\x8c\x0aabcdefghij", 1000, b"e");
    cloned.extend(std::iter::repeat_n(0x94, 1000));
    cloned.push(b'.');
    for (what, pickle) in [
        ("marks", marks),
        ("nones", nones),
        ("repeated", repeated),
        ("cloned", cloned),
    ] {
        assert_eq!(refusal(&pickle), Some(TOO_COSTLY), "{what}");
        assert!(matches!(feed(&pickle, 1000), Scanned::Complete { .. }));
    }
}

#[test]
fn what_the_lab_programs_send_is_not_too_costly() {
    // pickle.dumps({'op': 'send', 'to': 'nina', 'text': 'x' * 65536, 'id': 7}).
    let mut send = b"\x80\x04\x95\x00\x00\x00\x00\x00\x00\x00\x00}\x94(\x8c\x02op\x94\x8c\x04send\x94\x8c\x02to\x94\x8c\x04nina\x94\x8c\x04text\x94\x8d\x00\x00\x01\x00\x00\x00\x00\x00".to_vec();
    send.extend(std::iter::repeat_n(b'x', 65536));
    send.extend_from_slice(b"\x94\x8c\x02id\x94K\x07u.");
    assert_eq!(refusal(&send), None);
    assert_eq!(refusal(DICT), None);
    // A list of a hundred small ints and a hundred short strings.
    let mut list = b"\x80\x04](".to_vec();
    for k in 0..100u8 {
        list.extend_from_slice(&[b'K', k, 0x8c, 1, b'a' + k % 26, 0x94]);
    }
    list.extend_from_slice(b"e.");
    assert_eq!(refusal(&list), None);
}
