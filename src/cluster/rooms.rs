//! Room history in stream `SB_ROOMS`, one subject per room, with a `seq` that counts the
//! room's messages with no gap however many nodes its members say things through.
//!
//! JetStream's sequences are the whole stream's, so a room's messages are numbered
//! 7, 12, 13, 40...: not what `seq` promises. A separate counter (a key incremented by
//! compare-and-set, then the publish) would leave a gap whenever a node dies between
//! the two. Instead the stream itself is the counter: each message carries its `seq`
//! in header `Sb-Seq`, one more than the room's last message's, and is published with
//! `Nats-Expected-Last-Subject-Sequence` set to that last message's stream sequence.
//! JetStream stores it only if nothing was appended to the room since, so exactly one
//! of two racing appends takes each `seq`; the other rereads the room's last message
//! and tries again. A message and its `seq` are stored in one write, so no crash can
//! leave a number taken but unused.
//!
//! Contention is only between nodes: a node should send its own appends to one room one
//! at a time, so that they never race each other.

use async_nats::jetstream::message::PublishMessage;
use async_nats::jetstream::stream::{LastRawMessageErrorKind, Stream};
use async_nats::jetstream::{Context, ErrorCode};
use bytes::Bytes;

use super::{CAS_TRIES, ClusterError, back_off, lost_race, room_subject};

/// The header that holds a room message's `seq`.
pub const SEQ_HEADER: &str = "Sb-Seq";

/// A room message stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Appended {
    /// Its place in the room: one more than the message before it.
    pub seq: u64,
    /// Its sequence in the stream.
    pub stream_seq: u64,
}

/// Appends `payload` to the room of token `token` once JetStream has stored it.
pub async fn append_to_room(
    js: &Context,
    history: &Stream,
    token: &str,
    payload: Bytes,
) -> Result<Appended, ClusterError> {
    let subject = room_subject(token);
    let doing = || format!("appending to room {token}");
    for attempt in 0..CAS_TRIES {
        let (last_stream_seq, last_seq) = last_of(history, &subject, token).await?;
        let seq = last_seq + 1;
        let publish = PublishMessage::build()
            .payload(payload.clone())
            .header(SEQ_HEADER, seq.to_string().as_str())
            .expected_last_subject_sequence(last_stream_seq);
        let acked = match js.send_publish(subject.clone(), publish).await {
            Ok(ack) => ack.await,
            Err(e) => return Err(ClusterError::nats(doing(), e)),
        };
        match acked {
            Ok(ack) => {
                return Ok(Appended {
                    seq,
                    stream_seq: ack.sequence,
                });
            }
            Err(e) if lost_race(&e) => back_off(attempt).await,
            Err(e) => return Err(ClusterError::nats(doing(), e)),
        }
    }
    Err(ClusterError::Contended {
        what: format!("room {token}"),
        tries: CAS_TRIES,
    })
}

/// The stream sequence and `seq` of the room's last message; zeros for a room with no
/// message yet.
async fn last_of(history: &Stream, subject: &str, token: &str) -> Result<(u64, u64), ClusterError> {
    match history.get_last_raw_message_by_subject(subject).await {
        Ok(message) => {
            let seq = message
                .headers
                .get(SEQ_HEADER)
                .and_then(|value| value.as_str().parse::<u64>().ok())
                .ok_or_else(|| ClusterError::Corrupt {
                    what: format!("room {token}'s message {}", message.sequence),
                    detail: format!("no {SEQ_HEADER} header"),
                })?;
            Ok((message.sequence, seq))
        }
        Err(e) => match e.kind() {
            LastRawMessageErrorKind::NoMessageFound => Ok((0, 0)),
            LastRawMessageErrorKind::JetStream(j)
                if j.error_code() == ErrorCode::NO_MESSAGE_FOUND =>
            {
                Ok((0, 0))
            }
            _ => Err(ClusterError::nats(format!("reading room {token}"), e)),
        },
    }
}
