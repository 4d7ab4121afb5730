#![allow(clippy::unwrap_used, clippy::expect_used)]
//! PDU encode/decode cost for a typical chat message: an `IMMsgData` whose protobuf body is
//! 100 bytes (116 bytes on the wire). Throughput is reported in PDUs per second on one core.
//!
//! `cargo bench -p im-proto --bench pdu`

use std::hint::black_box;

use bytes::{Bytes, BytesMut};
use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use im_proto::{LinkKind, Pdu, PduCodec, base, message};
use prost::Message as _;
use tokio_util::codec::Decoder;

/// Protobuf body size of the benchmarked message.
const BODY_LEN: usize = 100;

fn msg_data() -> message::ImMsgData {
    // Everything but msg_data takes 18 bytes with these values; msg_data fills the rest.
    let msg = message::ImMsgData {
        from_user_id: 1001,
        to_session_id: 1002,
        msg_id: 58,
        create_time: 1_733_356_800,
        msg_type: base::MsgType::SingleText as i32,
        msg_data: Bytes::from(vec![b'A'; BODY_LEN - 18]),
        attach_data: None,
    };
    assert_eq!(msg.encoded_len(), BODY_LEN, "benchmark body size drifted");
    msg
}

fn decode(codec: &mut PduCodec, buf: &mut BytesMut) -> message::ImMsgData {
    let pdu = codec.decode(buf).unwrap().unwrap();
    pdu.decode::<message::ImMsgData>().unwrap()
}

fn bench_pdu(c: &mut Criterion) {
    let msg = msg_data();
    let frame = Pdu::from_msg(&msg, 7).to_frame();
    assert_eq!(frame.len(), 16 + BODY_LEN);

    let mut group = c.benchmark_group("im_msg_data_100b");
    group.throughput(Throughput::Elements(1));

    group.bench_function("encode_decode", |b| {
        let mut codec = PduCodec::new(LinkKind::Client);
        b.iter(|| {
            let frame = Pdu::from_msg(black_box(&msg), 7).to_frame();
            // Unique, so this takes the buffer over without copying.
            let mut buf = BytesMut::from(frame);
            black_box(decode(&mut codec, &mut buf))
        });
    });

    group.bench_function("encode", |b| {
        b.iter(|| black_box(Pdu::from_msg(black_box(&msg), 7).to_frame()));
    });

    group.bench_function("decode", |b| {
        let mut codec = PduCodec::new(LinkKind::Client);
        b.iter_batched_ref(
            || BytesMut::from(&frame[..]),
            |buf| black_box(decode(&mut codec, buf)),
            BatchSize::SmallInput,
        );
    });

    group.finish();
}

criterion_group!(benches, bench_pdu);
criterion_main!(benches);
