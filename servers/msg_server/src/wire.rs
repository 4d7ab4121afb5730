//! Byte-level helpers for relaying PDUs without decoding them.
//!
//! Clients must never see our `attach_data` (field 20 of many messages, PROTOCOL.md 6) and
//! unsolicited PDUs carry seq 0 (2.2). Rather than decoding and re-encoding a whole message to
//! clear one field, [`strip_attach`] walks the top-level fields of the protobuf body and drops
//! field 20; a body without it is returned as the same buffer.

use bytes::{Bytes, BytesMut};
use im_proto::{Header, Pdu};

/// Field number of `attach_data` in every message that has it.
const ATTACH_FIELD: u64 = 20;

fn read_varint(b: &[u8], pos: &mut usize) -> Option<u64> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let byte = *b.get(*pos)?;
        *pos += 1;
        v |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Some(v);
        }
    }
    None
}

/// Byte ranges of the top-level fields numbered 20, or `None` if the body is not well-formed
/// protobuf (then it is left alone: whoever receives it drops it, as before).
fn attach_ranges(b: &[u8]) -> Option<Vec<(usize, usize)>> {
    let mut pos = 0;
    let mut found = Vec::new();
    while pos < b.len() {
        let start = pos;
        let tag = read_varint(b, &mut pos)?;
        match tag & 7 {
            0 => {
                read_varint(b, &mut pos)?;
            }
            1 => pos = pos.checked_add(8)?,
            2 => {
                let len = usize::try_from(read_varint(b, &mut pos)?).ok()?;
                pos = pos.checked_add(len)?;
            }
            5 => pos = pos.checked_add(4)?,
            // Groups (3, 4) appear in no TeamTalk message.
            _ => return None,
        }
        if pos > b.len() {
            return None;
        }
        if tag >> 3 == ATTACH_FIELD {
            found.push((start, pos));
        }
    }
    Some(found)
}

/// The body without `attach_data`; `None` when there was nothing to remove (or the body is
/// malformed), so the caller keeps the original buffer.
pub fn strip_attach(body: &Bytes) -> Option<Bytes> {
    let ranges = attach_ranges(body)?;
    if ranges.is_empty() {
        return None;
    }
    let mut out = BytesMut::with_capacity(body.len());
    let mut at = 0;
    for (s, e) in ranges {
        out.extend_from_slice(&body[at..s]);
        at = e;
    }
    out.extend_from_slice(&body[at..]);
    Some(out.freeze())
}

/// `pdu` as a client should receive it unsolicited: seq 0, no `attach_data`, and no route
/// stamp ([`stamp`]). The frame is the received bytes when nothing needs changing.
pub fn client_frame(pdu: &Pdu) -> Bytes {
    let body = strip_attach(&pdu.body);
    let h = &pdu.header;
    if h.seq_num == 0 && h.flag == 0 && h.reserved == 0 && body.is_none() {
        return pdu.to_frame();
    }
    Pdu::new(
        Header {
            seq_num: 0,
            flag: 0,
            reserved: 0,
            ..*h
        },
        body.unwrap_or_else(|| pdu.body.clone()),
    )
    .to_frame()
}

/// Marks a notify we route with a per-process number in the header's `flag` and `reserved`
/// fields, which TeamTalk writes as 0 and never reads (PROTOCOL.md 2). route_server relays
/// frames as bytes, so the receiving msg_servers see the stamp and can drop the copies the
/// resend window sends again, without anything new in the bodies that an original server
/// would have to understand. Clients never see it ([`client_frame`] clears it).
pub fn stamp(pdu: &mut Pdu, stamp: u32) {
    pdu.header.flag = (stamp >> 16) as u16;
    pdu.header.reserved = stamp as u16;
}

/// The stamp of a routed PDU, `None` when it carries none.
pub fn stamp_of(pdu: &Pdu) -> Option<u32> {
    let s = (u32::from(pdu.header.flag) << 16) | u32::from(pdu.header.reserved);
    (s != 0).then_some(s)
}

/// FNV-1a of a body (identifies a stamped notify together with its stamp).
pub fn body_hash(body: &[u8]) -> u64 {
    body.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// `pdu` as the answer to a client request: the client's seq and no `attach_data`.
pub fn reply_frame(pdu: &Pdu, client_seq: u16) -> Bytes {
    let body = strip_attach(&pdu.body).unwrap_or_else(|| pdu.body.clone());
    Pdu::new(
        Header {
            seq_num: client_seq,
            ..pdu.header
        },
        body,
    )
    .to_frame()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use im_proto::message::{ImMsgData, ImUnreadMsgCntRsp};
    use prost::Message;

    use super::*;

    #[test]
    fn strips_only_field_20() {
        let msg = ImMsgData {
            from_user_id: 1,
            to_session_id: 2,
            msg_id: 3,
            create_time: 4,
            msg_type: 1,
            msg_data: Bytes::from_static(b"hello"),
            attach_data: Some(Bytes::from_static(b"secret attach")),
        };
        let body = Bytes::from(msg.encode_to_vec());
        let stripped = strip_attach(&body).unwrap();
        let back = ImMsgData::decode(stripped.clone()).unwrap();
        assert_eq!(
            back,
            ImMsgData {
                attach_data: None,
                ..msg.clone()
            }
        );
        // Nothing to strip: the caller keeps its buffer.
        assert_eq!(strip_attach(&stripped), None);
        // Malformed: left alone.
        assert_eq!(strip_attach(&Bytes::from_static(&[0x0a, 0x09, 1])), None);
        let empty = Bytes::from(ImUnreadMsgCntRsp::default().encode_to_vec());
        assert_eq!(strip_attach(&empty), None);
    }

    #[test]
    fn frames_get_seq_zero_or_the_client_seq() {
        let msg = ImMsgData {
            from_user_id: 1,
            to_session_id: 2,
            msg_id: 3,
            create_time: 4,
            msg_type: 1,
            msg_data: Bytes::from_static(b"x"),
            attach_data: Some(Bytes::from_static(b"a")),
        };
        let pdu = Pdu::from_msg(&msg, 77);
        let frame = client_frame(&pdu);
        assert_eq!(&frame[12..14], &[0, 0]);
        let clean = Pdu::from_msg(
            &ImMsgData {
                attach_data: None,
                ..msg
            },
            0,
        );
        assert_eq!(frame, clean.to_frame());
        // Already clean: the very same bytes.
        assert_eq!(client_frame(&clean), clean.to_frame());
        let mut stamped = clean.clone();
        stamp(&mut stamped, 0x0001_0002);
        assert_eq!(stamp_of(&stamped), Some(0x0001_0002));
        assert_eq!(stamp_of(&clean), None);
        assert_eq!(client_frame(&stamped), clean.to_frame());
        let mut stamped = clean.clone();
        stamp(&mut stamped, 0x0001_0002);
        assert_eq!(stamp_of(&stamped), Some(0x0001_0002));
        assert_eq!(stamp_of(&clean), None);
        assert_eq!(client_frame(&stamped), clean.to_frame());
        let r = reply_frame(&pdu, 9);
        assert_eq!(&r[12..14], &[0, 9]);
        assert_eq!(&r[16..], &clean.body[..]);
    }
}
