//! Feeds arbitrary bytes to the PDU codec on both link kinds and decodes the body of every PDU
//! that comes out as the message of its command id, then as every other message type.
//!
//! Beyond "never panics", it checks three properties:
//! * a decoded PDU re-encodes to the exact bytes it was cut from;
//! * the proto2 required check inside `Pdu::decode` agrees with `required::check_schema`;
//! * a body `Pdu::decode` accepts re-encodes (prost) into a body `Pdu::decode` accepts again,
//!   and that second encoding is identical to the first (compared as bytes, so NaN doubles in
//!   the admin messages do not matter).

#![no_main]

use std::sync::Once;

use bytes::{Bytes, BytesMut};
use im_proto::command::{ALL_COMMANDS, Command};
use im_proto::pdu::decode_body;
use im_proto::required::{self, RequiredFields};
use im_proto::{
    LinkKind, Pdu, PduCodec, admin, buddy, file, group, login, message, other, server,
    switch_service,
};
use libfuzzer_sys::fuzz_target;
use tokio_util::codec::Decoder;

/// Decodes `pdu` as `M` and checks the properties listed at the top.
fn decode_as<M: Command>(pdu: &Pdu) {
    let decoded = pdu.decode::<M>();
    let schema_ok = required::check_schema(<M as RequiredFields>::SCHEMA, &pdu.body).is_ok();
    if !schema_ok {
        assert!(
            decoded.is_err(),
            "{}: required check failed but decode accepted",
            M::NAME
        );
    }
    let Ok(msg) = decoded else { return };
    let first = Pdu::from_msg(&msg, pdu.seq_num());
    let again = first.decode::<M>().unwrap_or_else(|e| {
        panic!(
            "{}: accepted body re-encodes into a refused one: {e}",
            M::NAME
        )
    });
    assert_eq!(
        again.encode_to_vec(),
        first.body.to_vec(),
        "{}: re-encoding is not stable",
        M::NAME
    );
}

macro_rules! body_types {
    ($($t:ty),* $(,)?) => {
        /// Decodes the body as the message of the PDU's command id; false for unknown ids.
        fn decode_as_its_command(pdu: &Pdu) -> bool {
            match pdu.command_id() {
                $( id if id == <$t as Command>::COMMAND_ID => { decode_as::<$t>(pdu); true } )*
                _ => false,
            }
        }

        /// Decodes the body as every message type, whatever the command id says.
        fn decode_as_every_type(body: &Bytes) {
            $( let _ = decode_body::<$t>(body); )*
        }

        /// Command ids the two functions above know.
        const COVERED: &[u16] = &[$( <$t as Command>::COMMAND_ID ),*];
    };
}

body_types! {
    login::ImMsgServReq, login::ImMsgServRsp, login::ImLoginReq, login::ImLoginRes,
    login::ImLogoutReq, login::ImLogoutRsp, login::ImKickUser, login::ImDeviceTokenReq,
    login::ImDeviceTokenRsp, login::ImKickPcClientReq, login::ImKickPcClientRsp,
    login::ImPushShieldReq, login::ImPushShieldRsp, login::ImQueryPushShieldReq,
    login::ImQueryPushShieldRsp,
    buddy::ImRecentContactSessionReq, buddy::ImRecentContactSessionRsp, buddy::ImUserStatNotify,
    buddy::ImUsersInfoReq, buddy::ImUsersInfoRsp, buddy::ImRemoveSessionReq,
    buddy::ImRemoveSessionRsp, buddy::ImAllUserReq, buddy::ImAllUserRsp, buddy::ImUsersStatReq,
    buddy::ImUsersStatRsp, buddy::ImChangeAvatarReq, buddy::ImChangeAvatarRsp,
    buddy::ImpcLoginStatusNotify, buddy::ImRemoveSessionNotify, buddy::ImDepartmentReq,
    buddy::ImDepartmentRsp, buddy::ImAvatarChangedNotify, buddy::ImChangeSignInfoReq,
    buddy::ImChangeSignInfoRsp, buddy::ImSignInfoChangedNotify,
    message::ImMsgData, message::ImMsgDataAck, message::ImMsgDataReadAck,
    message::ImMsgDataReadNotify, message::ImClientTimeReq, message::ImClientTimeRsp,
    message::ImUnreadMsgCntReq, message::ImUnreadMsgCntRsp, message::ImGetMsgListReq,
    message::ImGetMsgListRsp, message::ImGetLatestMsgIdReq, message::ImGetLatestMsgIdRsp,
    message::ImGetMsgByIdReq, message::ImGetMsgByIdRsp,
    group::ImNormalGroupListReq, group::ImNormalGroupListRsp, group::ImGroupInfoListReq,
    group::ImGroupInfoListRsp, group::ImGroupCreateReq, group::ImGroupCreateRsp,
    group::ImGroupChangeMemberReq, group::ImGroupChangeMemberRsp, group::ImGroupShieldReq,
    group::ImGroupShieldRsp, group::ImGroupChangeMemberNotify,
    file::ImFileLoginReq, file::ImFileLoginRsp, file::ImFileState, file::ImFilePullDataReq,
    file::ImFilePullDataRsp, file::ImFileReq, file::ImFileRsp, file::ImFileNotify,
    file::ImFileHasOfflineReq, file::ImFileHasOfflineRsp, file::ImFileAddOfflineReq,
    file::ImFileDelOfflineReq,
    switch_service::Imp2pCmdMsg,
    other::ImHeartBeat,
    server::ImStopReceivePacket, server::ImValidateReq, server::ImValidateRsp,
    server::ImGetDeviceTokenReq, server::ImGetDeviceTokenRsp, server::ImRoleSet,
    server::ImOnlineUserInfo, server::ImMsgServInfo, server::ImUserStatusUpdate,
    server::ImUserCntUpdate, server::ImServerKickUser, server::ImServerPcLoginStatusNotify,
    server::ImPushToUserReq, server::ImPushToUserRsp, server::ImGroupGetShieldReq,
    server::ImGroupGetShieldRsp, server::ImFileTransferReq, server::ImFileTransferRsp,
    server::ImFileServerIpReq, server::ImFileServerIpRsp,
    admin::ImAdminAuthReq, admin::ImAdminAuthRsp, admin::ImAdminStatsReq,
    admin::ImAdminStatsRsp, admin::ImAdminRouteListReq, admin::ImAdminRouteListRsp,
    admin::ImAdminLocateUserReq, admin::ImAdminLocateUserRsp, admin::ImAdminKickUserReq,
    admin::ImAdminKickUserRsp, admin::ImAdminDrainReq, admin::ImAdminDrainRsp,
    admin::ImAdminMsgServerListReq, admin::ImAdminMsgServerListRsp,
    admin::ImAdminConnListReq, admin::ImAdminConnListRsp,
}

/// The type list above must match im-proto's command table exactly.
fn check_coverage() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let mut covered = COVERED.to_vec();
        let mut all = ALL_COMMANDS.to_vec();
        covered.sort_unstable();
        all.sort_unstable();
        assert_eq!(covered, all, "fuzz target's type list is out of date");
    });
}

fn handle(frame: &[u8], pdu: &Pdu) {
    assert_eq!(
        &pdu.to_frame()[..],
        frame,
        "decoded PDU does not re-encode to its bytes"
    );
    let known = decode_as_its_command(pdu);
    assert_eq!(
        known,
        im_proto::command::command_name(pdu.command_id()).is_some()
    );
    decode_as_every_type(&pdu.body);
}

fn run(kind: LinkKind, data: &[u8]) {
    let mut codec = PduCodec::new(kind);
    let mut buf = BytesMut::from(data);
    let mut offset = 0;
    loop {
        let before = buf.len();
        match codec.decode(&mut buf) {
            Ok(Some(pdu)) => {
                let used = before - buf.len();
                handle(&data[offset..offset + used], &pdu);
                offset += used;
            }
            Ok(None) => break,
            // The connection would be closed here.
            Err(_) => return,
        }
    }
    loop {
        let before = buf.len();
        match codec.decode_eof(&mut buf) {
            Ok(Some(pdu)) => {
                let used = before - buf.len();
                handle(&data[offset..offset + used], &pdu);
                offset += used;
            }
            Ok(None) | Err(_) => break,
        }
    }
}

fuzz_target!(|data: &[u8]| {
    check_coverage();
    run(LinkKind::Client, data);
    run(LinkKind::Server, data);
});
