//! Properties checked on arbitrary input, shared by the fuzz target (`proto/fuzz`) and the
//! regression test that replays the inputs the fuzzer once found (`fixtures/fuzz/decode/`).
//!
//! [`check_decode`] panics when a property breaks:
//! * a PDU the codec cuts out re-encodes to exactly the bytes it came from;
//! * when the proto2 required check refuses a body, `Pdu::decode` refuses it too;
//! * a body `Pdu::decode` accepts re-encodes (prost) into a body it accepts again, with the
//!   same bytes the second time.
//!
//! Decoding must also never panic, as the body of its command and as every other type.

use bytes::BytesMut;
use tokio_util::codec::Decoder;

use crate::codec::{LinkKind, PduCodec};
use crate::command::{BodyVisitor, Command, command_name, visit_all_body_types, visit_body_type};
use crate::pdu::{Pdu, decode_body};
use crate::required::{RequiredFields, check_schema};

struct AsItsCommand<'a>(&'a Pdu);

impl BodyVisitor for AsItsCommand<'_> {
    fn visit<M: Command + std::fmt::Debug>(&mut self) {
        let pdu = self.0;
        let decoded = pdu.decode::<M>();
        if check_schema(<M as RequiredFields>::SCHEMA, &pdu.body).is_err() {
            assert!(
                decoded.is_err(),
                "{}: required check failed but decode accepted",
                M::NAME
            );
        }
        let Ok(msg) = decoded else { return };
        let first = Pdu::from_msg(&msg, pdu.seq_num());
        let again = match first.decode::<M>() {
            Ok(m) => m,
            Err(e) => panic!(
                "{}: accepted body re-encodes into a refused one: {e}",
                M::NAME
            ),
        };
        assert_eq!(
            again.encode_to_vec(),
            first.body.to_vec(),
            "{}: re-encoding is not stable",
            M::NAME
        );
    }
}

struct AsEveryType<'a>(&'a bytes::Bytes);

impl BodyVisitor for AsEveryType<'_> {
    fn visit<M: Command + std::fmt::Debug>(&mut self) {
        let _ = decode_body::<M>(self.0);
    }
}

fn handle(frame: &[u8], pdu: &Pdu) {
    assert_eq!(
        &pdu.to_frame()[..],
        frame,
        "decoded PDU does not re-encode to its bytes"
    );
    let known = visit_body_type(pdu.command_id(), &mut AsItsCommand(pdu));
    assert_eq!(known, command_name(pdu.command_id()).is_some());
    visit_all_body_types(&mut AsEveryType(&pdu.body));
}

fn run(kind: LinkKind, data: &[u8]) {
    let mut codec = PduCodec::new(kind);
    let mut buf = BytesMut::from(data);
    let mut offset = 0;
    let mut eof = false;
    loop {
        let before = buf.len();
        let next = if eof {
            codec.decode_eof(&mut buf)
        } else {
            codec.decode(&mut buf)
        };
        match next {
            Ok(Some(pdu)) => {
                let used = before - buf.len();
                handle(&data[offset..offset + used], &pdu);
                offset += used;
            }
            Ok(None) if !eof => eof = true,
            // A framing error closes the connection; nothing more to check.
            Ok(None) | Err(_) => return,
        }
    }
}

/// Runs `data` through both link kinds and checks every property; panics on a violation.
pub fn check_decode(data: &[u8]) {
    run(LinkKind::Client, data);
    run(LinkKind::Server, data);
}
