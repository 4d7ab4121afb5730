#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The codec and body decoding on byte slices, no sockets.
//!
//! Malformed input must end in a typed error (the connection is closed) or, for a bad body in
//! a good frame, in a [`BodyError`] the handler logs before dropping the PDU; never a panic.

use std::fmt::Debug;

use bytes::{BufMut, Bytes, BytesMut};
use im_proto::codec::{CLIENT_INBOUND_CAP, SERVER_FRAME_CAP};
use im_proto::command::{self, Command};
use im_proto::required::RequiredError;
use im_proto::{
    BodyError, CodecError, Header, LinkKind, Pdu, PduCodec, base, buddy, group, login, message,
    other,
};
use proptest::prelude::*;
use tokio_util::codec::Decoder;

const BOTH_KINDS: [LinkKind; 2] = [LinkKind::Client, LinkKind::Server];

/// A 16-byte header announcing `length` bytes, followed by `body`.
fn frame(length: u32, service_id: u16, command_id: u16, seq: u16, body: &[u8]) -> BytesMut {
    let mut buf = BytesMut::new();
    Header::new(service_id, command_id, seq).write(length, &mut buf);
    buf.put_slice(body);
    buf
}

/// A correctly sized frame around `body`.
fn good_frame(service_id: u16, command_id: u16, body: &[u8]) -> BytesMut {
    frame(16 + body.len() as u32, service_id, command_id, 1, body)
}

fn decode_one(kind: LinkKind, mut buf: BytesMut) -> Pdu {
    let pdu = PduCodec::new(kind).decode(&mut buf).unwrap().unwrap();
    assert!(buf.is_empty());
    pdu
}

fn sample_msg_data(len: usize) -> message::ImMsgData {
    message::ImMsgData {
        from_user_id: 1001,
        to_session_id: 1002,
        msg_id: 7,
        create_time: 1_733_356_800,
        msg_type: base::MsgType::SingleAudio as i32,
        msg_data: (0..len).map(|i| i as u8).collect(),
        attach_data: Some(Bytes::from_static(&[
            0, 0, 0, 1, 0, 0, 0xab, 0xcd, 0, 0, 0, 0,
        ])),
    }
}

// --- (a) malformed streams ---------------------------------------------------------------

#[test]
fn length_zero_is_too_short() {
    for kind in BOTH_KINDS {
        let mut buf = frame(0, 7, 0x0701, 0, &[]);
        assert!(matches!(
            PduCodec::new(kind).decode(&mut buf),
            Err(CodecError::TooShort(0))
        ));
        // The length field alone is enough to refuse it.
        let mut buf = BytesMut::from(&[0u8, 0, 0, 0][..]);
        assert!(matches!(
            PduCodec::new(kind).decode(&mut buf),
            Err(CodecError::TooShort(0))
        ));
    }
}

#[test]
fn length_fifteen_is_too_short() {
    for kind in BOTH_KINDS {
        let mut buf = frame(15, 7, 0x0701, 0, &[]);
        assert!(matches!(
            PduCodec::new(kind).decode(&mut buf),
            Err(CodecError::TooShort(15))
        ));
    }
    // Every length the original would underflow on.
    for len in 1..16 {
        let mut buf = frame(len, 7, 0x0701, 0, &[0; 16]);
        match PduCodec::new(LinkKind::Server).decode(&mut buf) {
            Err(CodecError::TooShort(got)) => assert_eq!(got, len),
            other => panic!("length {len}: {other:?}"),
        }
    }
}

#[test]
fn length_two_gib_is_too_large_on_both_link_kinds() {
    for (kind, cap) in [
        (LinkKind::Client, CLIENT_INBOUND_CAP),
        (LinkKind::Server, SERVER_FRAME_CAP),
    ] {
        let mut buf = frame(1 << 31, 3, 0x0301, 0, &[]);
        match PduCodec::new(kind).decode(&mut buf) {
            Err(CodecError::TooLarge { len, cap: c }) => {
                assert_eq!(len, 0x8000_0000);
                assert_eq!(c, cap);
            }
            other => panic!("{kind:?}: {other:?}"),
        }
    }
    assert_eq!(SERVER_FRAME_CAP, 64 * 1024 * 1024);
}

#[test]
fn caps_are_inclusive() {
    for (kind, cap) in [
        (LinkKind::Client, CLIENT_INBOUND_CAP),
        (LinkKind::Server, SERVER_FRAME_CAP),
    ] {
        // Exactly the cap: a legal frame whose body has not arrived yet.
        let mut buf = frame(cap as u32, 3, 0x0301, 0, &[]);
        assert!(matches!(PduCodec::new(kind).decode(&mut buf), Ok(None)));
        let mut buf = frame(cap as u32 + 1, 3, 0x0301, 0, &[]);
        assert!(matches!(
            PduCodec::new(kind).decode(&mut buf),
            Err(CodecError::TooLarge { .. })
        ));
    }
}

#[test]
fn truncated_body_at_eof_is_reported() {
    for kind in BOTH_KINDS {
        let full = Pdu::from_msg(&sample_msg_data(24), 9).to_frame();
        let mut buf = BytesMut::from(&full[..full.len() - 10]);
        let mut codec = PduCodec::new(kind);
        assert!(matches!(codec.decode(&mut buf), Ok(None)));
        match codec.decode_eof(&mut buf) {
            Err(CodecError::Truncated { have, need }) => {
                assert_eq!(have, full.len() - 10);
                assert_eq!(need, full.len());
            }
            other => panic!("{kind:?}: {other:?}"),
        }
        // A stream that ends inside the length field itself.
        let mut buf = BytesMut::from(&[0u8, 0][..]);
        assert!(matches!(
            PduCodec::new(kind).decode_eof(&mut buf),
            Err(CodecError::Truncated { have: 2, need: 0 })
        ));
        // A header-only tail of a longer frame.
        let mut buf = frame(100, 3, 0x0301, 0, &[]);
        assert!(matches!(
            PduCodec::new(kind).decode_eof(&mut buf),
            Err(CodecError::Truncated {
                have: 16,
                need: 100
            })
        ));
    }
}

#[test]
fn clean_eof_is_not_an_error() {
    let mut buf = BytesMut::new();
    assert!(matches!(
        PduCodec::new(LinkKind::Client).decode_eof(&mut buf),
        Ok(None)
    ));
}

#[test]
fn garbage_body_is_a_body_error_not_a_frame_error() {
    for garbage in [
        &[0xffu8; 11][..],       // an over-long varint key
        &[0x32, 0x05, 0x01],     // msg_data claims 5 bytes, 1 present
        &[0x0f],                 // wire type 7
        &[0x08],                 // key without its value
        b"this is not protobuf", // text
    ] {
        let pdu = decode_one(LinkKind::Client, good_frame(3, 0x0301, garbage));
        assert_eq!(pdu.command_id(), 0x0301);
        assert_eq!(&pdu.body[..], garbage);
        let err = pdu.decode::<message::ImMsgData>().unwrap_err();
        assert!(
            matches!(
                err,
                BodyError::Required(RequiredError::Malformed { .. }) | BodyError::Decode { .. }
            ),
            "{garbage:02x?}: {err:?}"
        );
        // The message says which type it was, for the log line.
        assert!(err.to_string().contains("IMMsgData"), "{err}");
    }
}

#[test]
fn unknown_command_decodes_as_a_frame_and_is_refused_as_a_body() {
    let pdu = decode_one(
        LinkKind::Server,
        good_frame(7, 0x070c, &[0x08, 0x01, 0x12, 0x00]),
    );
    assert_eq!(pdu.header.service_id, 7);
    assert_eq!(pdu.command_id(), 0x070c);
    assert_eq!(command::command_name(0x070c), None);
    assert_eq!(command::service_of(0x070c), None);
    assert!(!command::ALL_COMMANDS.contains(&0x070c));
    assert_eq!(pdu.command_name(), "unknown");
    match pdu.decode::<other::ImHeartBeat>() {
        Err(BodyError::UnexpectedCommand {
            expected,
            expected_name,
            got,
        }) => {
            assert_eq!(expected, 0x0701);
            assert_eq!(expected_name, "CID_OTHER_HEARTBEAT");
            assert_eq!(got, 0x070c);
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        pdu.decode::<message::ImMsgData>(),
        Err(BodyError::UnexpectedCommand { got: 0x070c, .. })
    ));
}

#[test]
fn header_fields_the_original_never_checks_are_kept() {
    // version/flag/reserved are carried through unchanged, so a relayed frame is identical.
    let mut buf = BytesMut::new();
    let header = Header {
        version: 7,
        flag: 0xa5a5,
        service_id: 3,
        command_id: 0x0305,
        seq_num: 0xbeef,
        reserved: 0x1234,
    };
    header.write(16, &mut buf);
    let raw = buf.clone().freeze();
    let pdu = decode_one(LinkKind::Client, buf);
    assert_eq!(pdu.header, header);
    assert_eq!(pdu.to_frame(), raw);
    assert_eq!(
        pdu.decode::<message::ImClientTimeReq>(),
        Ok(message::ImClientTimeReq {})
    );
}

// --- (b) split streams -------------------------------------------------------------------

fn several_pdus() -> Vec<Pdu> {
    vec![
        Pdu::from_msg(&other::ImHeartBeat {}, 0),
        Pdu::from_msg(&sample_msg_data(300), 1),
        Pdu::from_msg(
            &login::ImLoginReq {
                user_name: "张三".into(),
                password: "e10adc3949ba59abbe56e057f20f883e".into(),
                online_status: 1,
                client_type: 0x12,
                client_version: None,
            },
            0xffff,
        ),
        Pdu::from_msg(&message::ImClientTimeReq {}, 2),
        Pdu::from_msg(
            &group::ImGroupInfoListRsp {
                user_id: 1,
                group_info_list: vec![base::GroupInfo {
                    group_id: 20,
                    version: 3,
                    group_name: "技术交流群".into(),
                    group_avatar: String::new(),
                    group_creator_id: 1,
                    group_type: 2,
                    shield_status: 0,
                    group_member_list: vec![1, 2, 3],
                }],
                attach_data: None,
            },
            3,
        ),
    ]
}

fn stream_of(pdus: &[Pdu]) -> Vec<u8> {
    let mut out = BytesMut::new();
    for p in pdus {
        p.encode_to(&mut out);
    }
    out.to_vec()
}

/// Feeds `chunks` one after the other, decoding after each, then at EOF.
fn decode_chunks<'a>(kind: LinkKind, chunks: impl IntoIterator<Item = &'a [u8]>) -> Vec<Pdu> {
    let mut codec = PduCodec::new(kind);
    let mut buf = BytesMut::new();
    let mut out = Vec::new();
    for chunk in chunks {
        buf.extend_from_slice(chunk);
        while let Some(pdu) = codec.decode(&mut buf).unwrap() {
            out.push(pdu);
        }
    }
    while let Some(pdu) = codec.decode_eof(&mut buf).unwrap() {
        out.push(pdu);
    }
    out
}

#[test]
fn byte_by_byte_stream_decodes_to_the_same_pdus() {
    let pdus = several_pdus();
    let stream = stream_of(&pdus);
    for kind in BOTH_KINDS {
        assert_eq!(decode_chunks(kind, stream.chunks(1)), pdus);
    }
}

#[test]
fn stream_split_at_every_boundary_decodes_to_the_same_pdus() {
    let pdus = several_pdus();
    let stream = stream_of(&pdus);
    for at in 0..=stream.len() {
        let (a, b) = stream.split_at(at);
        assert_eq!(
            decode_chunks(LinkKind::Client, [a, b]),
            pdus,
            "split at {at}"
        );
    }
    // Odd chunk sizes that straddle headers and bodies in every phase.
    for size in [2, 3, 5, 7, 15, 16, 17, 64] {
        assert_eq!(
            decode_chunks(LinkKind::Server, stream.chunks(size)),
            pdus,
            "{size}"
        );
    }
}

// --- (c) required fields -----------------------------------------------------------------

fn body_refused<M: Command + Debug>(body: &[u8]) -> BodyError {
    let pdu = decode_one(
        LinkKind::Client,
        good_frame(M::SERVICE_ID, M::COMMAND_ID, body),
    );
    match pdu.decode::<M>() {
        Ok(m) => panic!("{} accepted: {m:?}", M::NAME),
        Err(e) => e,
    }
}

#[test]
fn missing_required_field_is_refused() {
    // IMMsgData with fields 1..5 but no msg_data (6).
    let body = [0x08, 0x01, 0x10, 0x02, 0x18, 0x03, 0x20, 0x04, 0x28, 0x01];
    assert_eq!(
        body_refused::<message::ImMsgData>(&body),
        BodyError::Required(RequiredError::Missing {
            message: "IM.Message.IMMsgData",
            field: 6
        })
    );
    // The original's empty IMDeviceTokenRsp (PROTOCOL.md 5) would be dropped by a client.
    assert_eq!(
        body_refused::<login::ImDeviceTokenRsp>(&[]),
        BodyError::Required(RequiredError::Missing {
            message: "IM.Login.IMDeviceTokenRsp",
            field: 1
        })
    );
}

#[test]
fn missing_required_field_in_a_nested_message_is_refused() {
    // IMUsersInfoRsp { user_id: 1, user_info_list: [UserInfo { user_id: 7 }] }
    let body = [0x08, 0x01, 0x12, 0x02, 0x08, 0x07];
    assert_eq!(
        body_refused::<buddy::ImUsersInfoRsp>(&body),
        BodyError::Required(RequiredError::Missing {
            message: "IM.BaseDefine.UserInfo",
            field: 2
        })
    );
}

#[test]
fn undefined_value_in_a_required_enum_is_refused() {
    let mut req = login::ImLoginReq {
        user_name: "u".into(),
        password: "p".into(),
        online_status: 1,
        client_type: 0x12,
        client_version: None,
    };
    let ok = Pdu::from_msg(&req, 1);
    assert_eq!(ok.decode::<login::ImLoginReq>(), Ok(req.clone()));
    // 5 is no ClientType: a proto2 parser treats it as unknown, so field 4 is missing.
    req.client_type = 5;
    let body = prost::Message::encode_to_vec(&req);
    assert_eq!(
        body_refused::<login::ImLoginReq>(&body),
        BodyError::Required(RequiredError::Missing {
            message: "IM.Login.IMLoginReq",
            field: 4
        })
    );
}

#[test]
fn repeated_scalars_are_written_unpacked_and_read_in_both_forms() {
    let req = buddy::ImUsersInfoReq {
        user_id: 1,
        user_id_list: vec![2, 300],
        attach_data: None,
    };
    // TeamTalk's protoc 2.6.1 writes one tag per element (no [packed=true] anywhere).
    let unpacked = [0x08, 0x01, 0x10, 0x02, 0x10, 0xac, 0x02];
    assert_eq!(prost::Message::encode_to_vec(&req), unpacked);
    // Readers accept the packed form too, as protobuf 2.x parsers do.
    let packed = [0x08, 0x01, 0x12, 0x03, 0x02, 0xac, 0x02];
    let pdu = decode_one(LinkKind::Client, good_frame(2, 0x0204, &packed));
    assert_eq!(pdu.decode::<buddy::ImUsersInfoReq>(), Ok(req));
}

// --- (d) properties ----------------------------------------------------------------------

const MSG_TYPES: [i32; 4] = [0x01, 0x02, 0x11, 0x12];

fn bytes_up_to(max: usize) -> impl Strategy<Value = Bytes> {
    prop::collection::vec(any::<u8>(), 0..=max).prop_map(Bytes::from)
}

fn text() -> impl Strategy<Value = String> {
    "\\PC{0,24}"
}

fn msg_data() -> impl Strategy<Value = message::ImMsgData> {
    (
        any::<u32>(),
        any::<u32>(),
        any::<u32>(),
        any::<u32>(),
        prop::sample::select(&MSG_TYPES[..]),
        bytes_up_to(2048),
        prop::option::of(bytes_up_to(64)),
    )
        .prop_map(
            |(
                from_user_id,
                to_session_id,
                msg_id,
                create_time,
                msg_type,
                msg_data,
                attach_data,
            )| {
                message::ImMsgData {
                    from_user_id,
                    to_session_id,
                    msg_id,
                    create_time,
                    msg_type,
                    msg_data,
                    attach_data,
                }
            },
        )
}

fn group_info() -> impl Strategy<Value = base::GroupInfo> {
    (
        any::<u32>(),
        any::<u32>(),
        text(),
        text(),
        any::<u32>(),
        prop::sample::select(&[1i32, 2][..]),
        any::<u32>(),
        prop::collection::vec(any::<u32>(), 0..16),
    )
        .prop_map(
            |(
                group_id,
                version,
                group_name,
                group_avatar,
                creator,
                group_type,
                shield,
                members,
            )| {
                base::GroupInfo {
                    group_id,
                    version,
                    group_name,
                    group_avatar,
                    group_creator_id: creator,
                    group_type,
                    shield_status: shield,
                    group_member_list: members,
                }
            },
        )
}

fn group_info_list_rsp() -> impl Strategy<Value = group::ImGroupInfoListRsp> {
    (
        any::<u32>(),
        prop::collection::vec(group_info(), 0..8),
        prop::option::of(bytes_up_to(32)),
    )
        .prop_map(
            |(user_id, group_info_list, attach_data)| group::ImGroupInfoListRsp {
                user_id,
                group_info_list,
                attach_data,
            },
        )
}

fn user_info() -> impl Strategy<Value = base::UserInfo> {
    (
        (any::<u32>(), any::<u32>(), text(), text(), any::<u32>()),
        (text(), text(), text(), text(), any::<u32>()),
        prop::option::of(text()),
    )
        .prop_map(
            |(
                (user_id, user_gender, user_nick_name, avatar_url, department_id),
                (email, user_real_name, user_tel, user_domain, status),
                sign_info,
            )| base::UserInfo {
                user_id,
                user_gender,
                user_nick_name,
                avatar_url,
                department_id,
                email,
                user_real_name,
                user_tel,
                user_domain,
                status,
                sign_info,
            },
        )
}

fn users_info_rsp() -> impl Strategy<Value = buddy::ImUsersInfoRsp> {
    (
        any::<u32>(),
        prop::collection::vec(user_info(), 0..8),
        prop::option::of(bytes_up_to(32)),
    )
        .prop_map(
            |(user_id, user_info_list, attach_data)| buddy::ImUsersInfoRsp {
                user_id,
                user_info_list,
                attach_data,
            },
        )
}

fn round_trip<M: Command + PartialEq + Debug>(msg: &M, seq: u16) -> Result<(), TestCaseError> {
    let frame = Pdu::from_msg(msg, seq).to_frame();
    for kind in BOTH_KINDS {
        let mut buf = BytesMut::from(&frame[..]);
        let pdu = PduCodec::new(kind)
            .decode(&mut buf)
            .map_err(|e| TestCaseError::fail(e.to_string()))?
            .ok_or_else(|| TestCaseError::fail("incomplete frame"))?;
        prop_assert!(buf.is_empty());
        prop_assert_eq!(pdu.header, Header::new(M::SERVICE_ID, M::COMMAND_ID, seq));
        let back = pdu
            .decode::<M>()
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(&back, msg);
        prop_assert_eq!(pdu.to_frame(), frame.clone());
    }
    Ok(())
}

/// Decodes everything a peer could send, touching every PDU's body; must never panic.
fn drain(kind: LinkKind, input: &[u8]) {
    let mut codec = PduCodec::new(kind);
    let mut buf = BytesMut::from(input);
    loop {
        match codec.decode(&mut buf) {
            Ok(Some(pdu)) => touch(&pdu),
            Ok(None) => break,
            Err(_) => return,
        }
    }
    while let Ok(Some(pdu)) = codec.decode_eof(&mut buf) {
        touch(&pdu);
    }
}

fn touch(pdu: &Pdu) {
    let _ = pdu.command_name();
    let _ = pdu.decode::<message::ImMsgData>();
    let _ = pdu.decode::<group::ImGroupInfoListRsp>();
    let _ = pdu.decode::<buddy::ImUsersInfoRsp>();
    let _ = pdu.decode::<login::ImLoginReq>();
    let _ = pdu.decode::<other::ImHeartBeat>();
}

/// A frame with a plausible header (often a known command) and arbitrary body bytes.
fn framed_garbage() -> impl Strategy<Value = Vec<u8>> {
    (
        prop_oneof![prop::sample::select(command::ALL_COMMANDS), any::<u16>()],
        any::<u16>(),
        prop::collection::vec(any::<u8>(), 0..512),
        -4i64..4,
    )
        .prop_map(|(cid, seq, body, skew)| {
            let sid = command::service_of(cid).unwrap_or(0);
            // A length that is usually exact and sometimes a little off.
            let len = (16 + body.len() as i64 + skew).max(0) as u32;
            frame(len, sid, cid, seq, &body).to_vec()
        })
}

proptest! {
    #[test]
    fn msg_data_round_trips(msg in msg_data(), seq in any::<u16>()) {
        round_trip(&msg, seq)?;
    }

    #[test]
    fn group_info_list_rsp_round_trips(msg in group_info_list_rsp(), seq in any::<u16>()) {
        round_trip(&msg, seq)?;
    }

    #[test]
    fn users_info_rsp_round_trips(msg in users_info_rsp(), seq in any::<u16>()) {
        round_trip(&msg, seq)?;
    }

    #[test]
    fn arbitrary_bytes_never_panic(input in prop::collection::vec(any::<u8>(), 0..4096)) {
        for kind in BOTH_KINDS {
            drain(kind, &input);
        }
    }

    #[test]
    fn framed_garbage_never_panics(frames in prop::collection::vec(framed_garbage(), 1..6)) {
        let input = frames.concat();
        for kind in BOTH_KINDS {
            drain(kind, &input);
        }
    }
}
