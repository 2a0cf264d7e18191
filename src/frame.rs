//! The native protocol's framing: a 4-byte big-endian length, then that many bytes.
//!
//! Pure and synchronous so that the server, the client library, the fuzzers and the
//! benchmarks share one implementation; "not enough bytes yet" is `Ok(None)`.

use bytes::{Buf, BufMut, Bytes, BytesMut};

/// Default bound on one frame's payload.
pub const DEFAULT_MAX_FRAME: usize = 1024 * 1024;
/// Bytes of the length prefix in front of every frame's payload.
pub const HEADER: usize = 4;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("frame length 0: a frame holds at least one byte")]
    Empty,
    #[error("frame length {len} is over the limit of {max} bytes")]
    TooLarge { len: usize, max: usize },
    #[error("the stream ended in the middle of a frame")]
    Truncated,
    /// The bytes are not in the dialect's format at all, so no later unit can be found.
    #[error("unreadable stream: {0}")]
    Unreadable(String),
    /// Where a length prefix belongs there is a line of text (a command typed into
    /// `nc`, a browser's `GET /`): a person, or a client of the text dialect, at the
    /// native port. Told apart so that the server can answer in text.
    #[error("the stream starts with a line of text, not a length-prefixed frame")]
    Text,
}

/// Takes one complete frame's payload off the front of `src`, if it is all there.
pub fn decode(src: &mut BytesMut, max_frame: usize) -> Result<Option<Bytes>, FrameError> {
    let Some(len) = complete(src, max_frame)? else {
        return Ok(None);
    };
    src.advance(HEADER);
    Ok(Some(src.split_to(len).freeze()))
}

/// As [`decode`], but hands the payload to `parse` where it lies and then drops it:
/// splitting it off as its own `Bytes` would cost an allocation per frame, which a
/// server that only reads the payload has no use for.
pub fn decode_with<T>(
    src: &mut BytesMut,
    max_frame: usize,
    parse: impl FnOnce(&[u8]) -> T,
) -> Result<Option<T>, FrameError> {
    let Some(len) = complete(src, max_frame)? else {
        return Ok(None);
    };
    let parsed = parse(&src[HEADER..HEADER + len]);
    src.advance(HEADER + len);
    Ok(Some(parsed))
}

/// The payload length of the frame at the front of `src`, once all of it is there.
fn complete(src: &BytesMut, max_frame: usize) -> Result<Option<usize>, FrameError> {
    if src.len() < HEADER {
        if !src.is_empty() && is_text_header(src, max_frame) {
            return Err(FrameError::Text);
        }
        return Ok(None);
    }
    let len = u32::from_be_bytes([src[0], src[1], src[2], src[3]]) as usize;
    if len == 0 {
        return Err(FrameError::Empty);
    }
    if len > max_frame {
        if is_text_header(&src[..HEADER], max_frame) {
            return Err(FrameError::Text);
        }
        return Err(FrameError::TooLarge {
            len,
            max: max_frame,
        });
    }
    if src.len() < HEADER + len {
        // No reserving for the announced length here: a header alone must not make the
        // server commit a megabyte. The buffer grows as bytes actually arrive.
        return Ok(None);
    }
    Ok(Some(len))
}

/// Whether `header`, the first bytes of what should be a length prefix (all four, or
/// fewer when no more have come), is text rather than a length: printable ASCII, tab
/// or a line break, which as a length would be over `max_frame` whatever follows.
/// Any such length is at least 0x0900_0000 (144 MiB), so with any sane limit a
/// line of text is found from its first byte, even `\n` alone; the check runs only
/// where the stream is already in error or still waiting for a header, never on a
/// good frame.
fn is_text_header(header: &[u8], max_frame: usize) -> bool {
    let text = |b: &u8| matches!(b, b' '..=b'~' | b'\t' | b'\r' | b'\n');
    let mut smallest = [0u8; HEADER];
    smallest[..header.len()].copy_from_slice(header);
    header.iter().all(text) && u32::from_be_bytes(smallest) as usize > max_frame
}

/// Appends `payload` as one frame.
pub fn encode(payload: &[u8], dst: &mut BytesMut) {
    dst.reserve(HEADER + payload.len());
    dst.put_u32(payload.len() as u32);
    dst.put_slice(payload);
}

/// Appends a frame whose payload is `value` serialized as JSON, writing the length
/// prefix after the fact so the payload is serialized once, straight into `dst`.
pub fn encode_json<T: serde::Serialize + ?Sized>(value: &T, dst: &mut BytesMut) {
    encode_with(dst, |out| {
        serde_json::to_writer(out, value).map_err(std::io::Error::other)
    })
}

/// Appends a frame whose payload `write` produces; nothing at all if it fails.
/// Serializing our own protocol types into memory does not fail: they hold only
/// strings, numbers, booleans and sequences, with string keys.
pub fn encode_with(
    dst: &mut BytesMut,
    write: impl FnOnce(&mut bytes::buf::Writer<&mut BytesMut>) -> std::io::Result<()>,
) {
    let start = dst.len();
    // Room for a typical small payload at once, instead of growing write by write.
    dst.reserve(HEADER + 120);
    dst.put_u32(0);
    let mut writer = dst.writer();
    let written = write(&mut writer);
    let dst = writer.into_inner();
    if written.is_err() {
        dst.truncate(start);
        return;
    }
    let len = (dst.len() - start - HEADER) as u32;
    dst[start..start + HEADER].copy_from_slice(&len.to_be_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partial_header_and_partial_body_wait_for_more() {
        let mut buf = BytesMut::new();
        encode(b"{\"op\":\"ping\"}", &mut buf);
        let whole = buf.clone();
        for cut in 0..whole.len() {
            let mut part = BytesMut::from(&whole[..cut]);
            assert_eq!(decode(&mut part, DEFAULT_MAX_FRAME), Ok(None));
        }
        assert_eq!(
            decode(&mut buf, DEFAULT_MAX_FRAME).unwrap().unwrap(),
            Bytes::from_static(b"{\"op\":\"ping\"}")
        );
        assert!(buf.is_empty());
    }

    #[test]
    fn decode_with_parses_in_place_and_consumes_the_frame() {
        let mut buf = BytesMut::new();
        encode(b"abc", &mut buf);
        encode(b"de", &mut buf);
        buf.extend_from_slice(&[0, 0]);
        assert_eq!(decode_with(&mut buf, 10, <[u8]>::len), Ok(Some(3)));
        assert_eq!(
            decode_with(&mut buf, 10, |p| p.to_vec()),
            Ok(Some(b"de".to_vec()))
        );
        assert_eq!(decode_with(&mut buf, 10, <[u8]>::len), Ok(None));
        assert_eq!(buf.len(), 2);
    }

    #[test]
    fn two_frames_in_one_buffer() {
        let mut buf = BytesMut::new();
        encode(b"a", &mut buf);
        encode(b"bc", &mut buf);
        assert_eq!(&decode(&mut buf, 10).unwrap().unwrap()[..], b"a");
        assert_eq!(&decode(&mut buf, 10).unwrap().unwrap()[..], b"bc");
        assert_eq!(decode(&mut buf, 10), Ok(None));
    }

    #[test]
    fn bounds_are_enforced_from_the_header_alone() {
        let mut buf = BytesMut::from(&[0u8, 0, 0, 0][..]);
        assert_eq!(decode(&mut buf, 10), Err(FrameError::Empty));
        let mut buf = BytesMut::from(&[0u8, 0, 0, 11][..]);
        assert_eq!(
            decode(&mut buf, 10),
            Err(FrameError::TooLarge { len: 11, max: 10 })
        );
    }

    #[test]
    fn a_line_of_text_is_told_from_a_length() {
        for line in [
            &b"USERS\n"[..],
            b"GET / HTTP/1.1\r\n",
            b"hello nina\r\n",
            b"ls\n",
            b"\n",
            b"\tx",
            b"{\"op\":\"ping\"}",
        ] {
            let mut buf = BytesMut::from(line);
            assert_eq!(
                decode(&mut buf, DEFAULT_MAX_FRAME),
                Err(FrameError::Text),
                "{line:?}"
            );
        }
        // Not text: binary garbage and UTF-8 beyond ASCII are still a bad length.
        for bytes in [
            &[0xff, 0xff, 0xff, 0xff][..],
            "héllo".as_bytes(),
            b"\x7fABC",
        ] {
            let mut buf = BytesMut::from(bytes);
            assert!(matches!(
                decode(&mut buf, DEFAULT_MAX_FRAME),
                Err(FrameError::TooLarge { .. })
            ));
        }
        // Under a limit that huge, printable bytes can be a length: wait for it.
        let mut buf = BytesMut::from(&b"AB"[..]);
        assert_eq!(decode(&mut buf, u32::MAX as usize), Ok(None));
        // A good frame's partial header is never mistaken for text.
        let mut buf = BytesMut::from(&[0u8, 0][..]);
        assert_eq!(decode(&mut buf, DEFAULT_MAX_FRAME), Ok(None));
    }

    #[test]
    fn encode_json_prefixes_the_right_length() {
        let mut buf = BytesMut::new();
        encode_json(&serde_json::json!({"op": "ping"}), &mut buf);
        let payload = decode(&mut buf, 100).unwrap().unwrap();
        assert_eq!(&payload[..], br#"{"op":"ping"}"#);
    }
}
