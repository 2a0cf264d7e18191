//! Shared by every target: feed the input to a decoder whole and split in two at a
//! point the input chooses, and check that both give the same units. A decoder must
//! never panic, and must not depend on how TCP happened to cut the stream.

use bytes::BytesMut;
use switchboard::dialect::{Dialect, Incoming};

/// Every unit the decoder takes from `chunks` fed one after another, then at EOF;
/// stops at the first framing error (the connection would be closed there).
fn decode_all<D: Dialect>(mut dialect: D, chunks: &[&[u8]]) -> (Vec<Incoming>, bool) {
    let mut buf = BytesMut::new();
    let mut units = Vec::new();
    for chunk in chunks {
        buf.extend_from_slice(chunk);
        loop {
            match dialect.decode(&mut buf) {
                Ok(Some(unit)) => units.push(unit),
                Ok(None) => break,
                Err(_) => return (units, true),
            }
        }
    }
    loop {
        match dialect.decode_eof(&mut buf) {
            Ok(Some(unit)) => units.push(unit),
            Ok(None) => return (units, false),
            Err(_) => return (units, true),
        }
    }
}

pub fn check<D: Dialect>(make: impl Fn() -> D, data: &[u8]) {
    let Some((&cut, stream)) = data.split_first() else {
        return;
    };
    let cut = (cut as usize * stream.len()) / 255;
    let whole = decode_all(make(), &[stream]);
    let split = decode_all(make(), &[&stream[..cut], &stream[cut..]]);
    // A framing error may be noticed earlier with more bytes at hand; up to it, and
    // without one, the units must be the same.
    if !whole.1 && !split.1 {
        assert_eq!(
            whole.0, split.0,
            "decoding depends on where the stream was cut"
        );
    }
}
