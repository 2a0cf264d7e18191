//! Codec speed per dialect: decoding a client's request and encoding what goes back.
//! Pure functions on buffers, so these are repeatable apart from the network.
//!
//!   cargo bench --bench codecs

use bytes::BytesMut;
use criterion::{BatchSize, Criterion, Throughput, black_box, criterion_group, criterion_main};
use switchboard::dialect::{Dialect, Lab, Native, Text};
use switchboard::frame;
use switchboard::protocol::{Event, Reply, Response};

/// A `say` of 64 bytes in each dialect's wire form.
fn say_request() -> (Vec<u8>, Vec<u8>, Vec<u8>) {
    let text = "x".repeat(64);
    let value = serde_json::json!({"id": 7, "op": "say", "room": "hall", "text": text});
    let mut native = BytesMut::new();
    frame::encode_json(&value, &mut native);
    let line = format!("SAY hall {text}\r\n").into_bytes();
    let pickle = serde_pickle::to_vec(&value, serde_pickle::SerOptions::new()).expect("pickle");
    (native.to_vec(), line, pickle)
}

/// A `ping` on the native wire, the request of the `rr` benchmark: what is left is
/// nearly all the JSON parser's fixed cost per request.
fn ping_request() -> Vec<u8> {
    let mut native = BytesMut::new();
    frame::encode(br#"{"id":1,"op":"ping"}"#, &mut native);
    native.to_vec()
}

fn decode<D: Dialect>(c: &mut Criterion, name: &str, mut dialect: D, wire: &[u8]) {
    let mut group = c.benchmark_group("decode");
    group.throughput(Throughput::Bytes(wire.len() as u64));
    group.bench_function(name, |b| {
        b.iter_batched_ref(
            || BytesMut::from(wire),
            |buf| black_box(dialect.decode(buf)),
            BatchSize::SmallInput,
        )
    });
    group.finish();
}

fn encode<D: Dialect>(c: &mut Criterion, name: &str, dialect: D) {
    let event = Event::RoomMessage {
        room: "hall".into(),
        from: "ana".into(),
        text: "x".repeat(64),
        sent_at: "2026-11-21T20:00:00Z".into(),
        seq: 1234,
        replay: false,
    };
    let response = Response {
        id: Some(7),
        outcome: Ok(Reply::Done {}),
    };
    let mut group = c.benchmark_group("encode");
    let mut buf = BytesMut::with_capacity(4096);
    group.bench_function(format!("{name}/room_message"), |b| {
        b.iter(|| {
            buf.clear();
            dialect.encode_event(black_box(&event), &mut buf);
        })
    });
    group.bench_function(format!("{name}/ok_response"), |b| {
        b.iter(|| {
            buf.clear();
            dialect.encode_response(black_box(&response), &mut buf);
        })
    });
    group.finish();
}

fn codecs(c: &mut Criterion) {
    let (native, line, pickle) = say_request();
    decode(c, "native", Native::default(), &native);
    decode(c, "native/ping", Native::default(), &ping_request());
    decode(c, "text", Text::default(), &line);
    decode(c, "lab", Lab::new(1 << 20), &pickle);
    encode(c, "native", Native::default());
    encode(c, "text", Text::default());
    encode(c, "lab", Lab::new(1 << 20));
}

criterion_group!(benches, codecs);
criterion_main!(benches);
