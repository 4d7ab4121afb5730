#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Cross-implementation test vectors.
//!
//! `scripts/gen_pdu_vectors.py` writes `fixtures/pdu/<name>.hex` with Google's protobuf and a
//! hand-packed header; nothing there shares code with this crate. For every file this test
//! decodes the PDU with [`PduCodec`], checks the header, decodes the body with the proto2
//! required check, compares it with a message typed out again below, and re-encodes the
//! expected message to the exact bytes of the file. A file without an expectation, or an
//! expectation without a file, fails the test.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::path::Path;

use bytes::{Bytes, BytesMut};
use im_proto::command::Command;
use im_proto::crypto::MessageCipher;
use im_proto::{
    LinkKind, Pdu, PduCodec, admin, base, buddy, file, group, login, message, other, server,
    switch_service,
};
use prost::Message as _;
use tokio_util::codec::Decoder;

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../fixtures/pdu");

/// Fewer vectors than this means the fixtures were lost or not regenerated.
const MIN_VECTORS: usize = 30;

// Values shared with the Python generator, typed again.
const T0: u32 = 1_733_356_800;
const ATTACH_HANDLE: &[u8] = &[0, 0, 0, 1, 0, 0, 0xab, 0xcd, 0, 0, 0, 0];
const TASK_ID: &str = "0f8fad5b-d9cb-469f-a165-70867728950e";
const IOS_TOKEN: &str = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";
const SINGLE_TEXT_PLAIN: &str =
    "你好，TeamTalk！&$#@~^@[{:http://127.0.0.1:8700/g0/000/000/1.png:}]&$~@#@";
const SINGLE_TEXT_CIPHER: &str = "kCh1sJcqHYpN+vj969iDKsvHto3K0DaYJmhznaT0Aa7CrTgSOUN2SmXK8+8S4hlrYWruXVwK0FuoVPc9bUuIDpuNo6FAa6ohUfmPa34ROg4Mp2bda1L0mjWnIWxFqiYx";
const GROUP_TEXT_PLAIN: &str = "hello, TeamTalk!";
const GROUP_TEXT_CIPHER: &str = "TiqZIhzaWu25WvC+OqHWvwfU6OB7fpsvZh6GP3dYB9g=";
/// The IMMsgData body carried in `group_get_shield_req`'s attach_data.
const INNER_MSG_DATA_HEX: &str = "08e9071014183d2080dac3ba06281232050000000141";

type Check = Box<dyn Fn(&str, &[u8])>;

fn expect<M: Command + PartialEq + Debug>(sid: u16, cid: u16, seq: u16, expected: M) -> Check {
    Box::new(move |name, raw| verify(name, raw, sid, cid, seq, &expected))
}

fn verify<M: Command + PartialEq + Debug>(
    name: &str,
    raw: &[u8],
    sid: u16,
    cid: u16,
    seq: u16,
    expected: &M,
) {
    assert!(raw.len() >= 16, "{name}: shorter than a header");
    let length = u32::from_be_bytes([raw[0], raw[1], raw[2], raw[3]]) as usize;
    assert_eq!(length, raw.len(), "{name}: length field");

    let mut buf = BytesMut::from(raw);
    let pdu = PduCodec::new(LinkKind::Client)
        .decode(&mut buf)
        .unwrap_or_else(|e| panic!("{name}: codec error {e}"))
        .unwrap_or_else(|| panic!("{name}: codec wants more bytes"));
    assert!(buf.is_empty(), "{name}: bytes left after the frame");

    let h = pdu.header;
    assert_eq!(h.version, 1, "{name}: version");
    assert_eq!(h.flag, 0, "{name}: flag");
    assert_eq!(h.service_id, sid, "{name}: service id");
    assert_eq!(h.command_id, cid, "{name}: command id");
    assert_eq!(h.seq_num, seq, "{name}: seq");
    assert_eq!(h.reserved, 0, "{name}: reserved");
    assert_eq!(
        (M::SERVICE_ID, M::COMMAND_ID),
        (sid, cid),
        "{name}: im-proto's command table disagrees on the ids of {}",
        M::NAME
    );

    let got: M = pdu
        .decode::<M>()
        .unwrap_or_else(|e| panic!("{name}: body refused: {e}"));
    assert_eq!(&got, expected, "{name}: decoded body");

    let reencoded = Pdu::from_msg(expected, seq).to_frame();
    assert_eq!(
        hex::encode(&reencoded),
        hex::encode(raw),
        "{name}: re-encoding differs"
    );
    assert_eq!(&pdu.to_frame()[..], raw, "{name}: relayed frame differs");
}

fn s(v: &str) -> String {
    v.to_owned()
}

fn some(v: &str) -> Option<String> {
    Some(v.to_owned())
}

fn b(v: &'static [u8]) -> Bytes {
    Bytes::from_static(v)
}

fn attach_handle() -> Option<Bytes> {
    Some(b(ATTACH_HANDLE))
}

fn zhangsan() -> base::UserInfo {
    base::UserInfo {
        user_id: 1001,
        user_gender: 1,
        user_nick_name: s("小张"),
        avatar_url: s("http://127.0.0.1:8700/g0/000/000/avatar.png"),
        department_id: 3,
        email: s("zhangsan@example.com"),
        user_real_name: s("张三"),
        user_tel: s("13800138000"),
        user_domain: s("zhangsan"),
        status: 0,
        sign_info: some("好好学习，天天向上"),
    }
}

fn report_ip() -> base::IpAddr {
    base::IpAddr {
        ip: s("192.168.1.10"),
        port: 8600,
    }
}

fn inner_msg_data() -> message::ImMsgData {
    message::ImMsgData {
        from_user_id: 1001,
        to_session_id: 20,
        msg_id: 61,
        create_time: T0,
        msg_type: base::MsgType::GroupAudio as i32,
        msg_data: b(b"\x00\x00\x00\x01A"),
        attach_data: None,
    }
}

fn expectations() -> Vec<(&'static str, Check)> {
    use base::{
        ClientType, DepartmentStatusType, MsgType, ResultType, SessionStatusType, SessionType,
        UserStatType,
    };
    const SINGLE: i32 = SessionType::Single as i32;
    const GROUP: i32 = SessionType::Group as i32;

    vec![
        // --- empty bodies ---------------------------------------------------------------
        ("heartbeat", expect(7, 0x0701, 0, other::ImHeartBeat {})),
        ("logout_req", expect(1, 0x0105, 7, login::ImLogoutReq {})),
        (
            "client_time_req",
            expect(3, 0x0305, 0xFFFF, message::ImClientTimeReq {}),
        ),
        (
            "file_server_ip_req",
            expect(7, 0x0733, 0, server::ImFileServerIpReq {}),
        ),
        // --- IM.Login ---------------------------------------------------------------------
        (
            "msg_serv_rsp",
            expect(
                1,
                0x0102,
                1,
                login::ImMsgServRsp {
                    result_code: ResultType::RefuseReasonNone as i32,
                    prior_ip: some("127.0.0.1"),
                    backip_ip: some("192.168.0.2"),
                    port: Some(8000),
                },
            ),
        ),
        (
            "login_req",
            expect(
                1,
                0x0103,
                2,
                login::ImLoginReq {
                    user_name: s("张三"),
                    password: s("e10adc3949ba59abbe56e057f20f883e"),
                    online_status: UserStatType::UserStatusOnline as i32,
                    client_type: 0x12,
                    client_version: some("3.1.0-android"),
                },
            ),
        ),
        (
            "login_res_ok",
            expect(
                1,
                0x0104,
                2,
                login::ImLoginRes {
                    server_time: T0,
                    result_code: 0,
                    result_string: some("成功"),
                    online_status: Some(UserStatType::UserStatusOnline as i32),
                    user_info: Some(zhangsan()),
                },
            ),
        ),
        (
            "login_res_refused",
            expect(
                1,
                0x0104,
                3,
                login::ImLoginRes {
                    server_time: u32::MAX,
                    result_code: ResultType::RefuseReasonDbValidateFailed as i32,
                    result_string: None,
                    online_status: None,
                    user_info: None,
                },
            ),
        ),
        (
            "kick_user",
            expect(
                1,
                0x0107,
                0,
                login::ImKickUser {
                    user_id: 0xFFFF_FFFF,
                    kick_reason: base::KickReasonType::KickReasonMobileKick as i32,
                },
            ),
        ),
        (
            "device_token_req",
            expect(
                1,
                0x0108,
                0x1234,
                login::ImDeviceTokenReq {
                    user_id: 1001,
                    device_token: s(IOS_TOKEN),
                    client_type: Some(ClientType::Ios as i32),
                    attach_data: attach_handle(),
                },
            ),
        ),
        (
            "query_push_shield_rsp",
            expect(
                1,
                0x010f,
                5,
                login::ImQueryPushShieldRsp {
                    user_id: 1001,
                    result_code: 0,
                    shield_status: Some(0),
                    attach_data: None,
                },
            ),
        ),
        // --- IM.Buddy ---------------------------------------------------------------------
        (
            "recent_contact_session_rsp",
            expect(
                2,
                0x0202,
                9,
                buddy::ImRecentContactSessionRsp {
                    user_id: 1001,
                    contact_session_list: vec![
                        base::ContactSessionInfo {
                            session_id: 1002,
                            session_type: SINGLE,
                            session_status: SessionStatusType::SessionStatusOk as i32,
                            updated_time: T0,
                            latest_msg_id: 57,
                            latest_msg_data: b(b"\x00\x00\x00\x02#!AMR\n\xff\xfe\x80"),
                            latest_msg_type: MsgType::SingleAudio as i32,
                            latest_msg_from_user_id: 1002,
                        },
                        base::ContactSessionInfo {
                            session_id: 20,
                            session_type: GROUP,
                            session_status: SessionStatusType::SessionStatusDelete as i32,
                            updated_time: T0 - 60,
                            latest_msg_id: u32::MAX,
                            latest_msg_data: Bytes::new(),
                            latest_msg_type: MsgType::GroupText as i32,
                            latest_msg_from_user_id: 1003,
                        },
                    ],
                    attach_data: attach_handle(),
                },
            ),
        ),
        (
            "user_stat_notify",
            expect(
                2,
                0x0203,
                0,
                buddy::ImUserStatNotify {
                    user_stat: base::UserStat {
                        user_id: 1002,
                        status: UserStatType::UserStatusLeave as i32,
                    },
                },
            ),
        ),
        (
            "users_info_req",
            expect(
                2,
                0x0204,
                10,
                buddy::ImUsersInfoReq {
                    user_id: 1001,
                    user_id_list: vec![1002, 0, u32::MAX, 1002],
                    attach_data: None,
                },
            ),
        ),
        (
            "users_info_rsp",
            expect(
                2,
                0x0205,
                10,
                buddy::ImUsersInfoRsp {
                    user_id: 1001,
                    user_info_list: vec![
                        zhangsan(),
                        base::UserInfo {
                            user_id: 1002,
                            user_gender: 2,
                            user_nick_name: String::new(),
                            avatar_url: String::new(),
                            department_id: 0,
                            email: String::new(),
                            user_real_name: s("李四"),
                            user_tel: String::new(),
                            user_domain: s("lisi"),
                            status: 3,
                            sign_info: None,
                        },
                    ],
                    attach_data: Some(Bytes::new()),
                },
            ),
        ),
        (
            "remove_session_req",
            expect(
                2,
                0x0206,
                11,
                buddy::ImRemoveSessionReq {
                    user_id: 1001,
                    session_type: GROUP,
                    session_id: 20,
                    attach_data: None,
                },
            ),
        ),
        (
            "users_stat_rsp",
            expect(
                2,
                0x020b,
                12,
                buddy::ImUsersStatRsp {
                    user_id: 1001,
                    user_stat_list: vec![
                        base::UserStat {
                            user_id: 1002,
                            status: UserStatType::UserStatusOnline as i32,
                        },
                        base::UserStat {
                            user_id: 1003,
                            status: UserStatType::UserStatusOffline as i32,
                        },
                    ],
                    attach_data: Some(b(&[0, 0, 0, 1, 0, 0, 0xab, 0xcd, 0, 0, 0, 0, 0, 0, 0, 0])),
                },
            ),
        ),
        (
            "pc_login_status_notify",
            expect(
                2,
                0x020e,
                0,
                buddy::ImpcLoginStatusNotify {
                    user_id: 1001,
                    login_stat: UserStatType::UserStatusOffline as i32,
                },
            ),
        ),
        (
            "department_rsp",
            expect(
                2,
                0x0211,
                13,
                buddy::ImDepartmentRsp {
                    user_id: 1001,
                    latest_update_time: 0,
                    dept_list: vec![
                        base::DepartInfo {
                            dept_id: 1,
                            priority: 10,
                            dept_name: s("研发部"),
                            parent_dept_id: 0,
                            dept_status: DepartmentStatusType::DeptStatusOk as i32,
                        },
                        base::DepartInfo {
                            dept_id: 2,
                            priority: 20,
                            dept_name: s("测试组"),
                            parent_dept_id: 1,
                            dept_status: DepartmentStatusType::DeptStatusDelete as i32,
                        },
                    ],
                    attach_data: None,
                },
            ),
        ),
        (
            "change_sign_info_rsp",
            expect(
                2,
                0x0214,
                14,
                buddy::ImChangeSignInfoRsp {
                    user_id: 1001,
                    result_code: 0,
                    sign_info: some("今天天气不错 🌤"),
                    attach_data: attach_handle(),
                },
            ),
        ),
        // --- IM.Message -------------------------------------------------------------------
        (
            "msg_data_single_text",
            expect(
                3,
                0x0301,
                0x0102,
                message::ImMsgData {
                    from_user_id: 1001,
                    to_session_id: 1002,
                    msg_id: 0,
                    create_time: T0,
                    msg_type: MsgType::SingleText as i32,
                    msg_data: b(SINGLE_TEXT_CIPHER.as_bytes()),
                    attach_data: None,
                },
            ),
        ),
        (
            "msg_data_group_text",
            expect(
                3,
                0x0301,
                3,
                message::ImMsgData {
                    from_user_id: 1001,
                    to_session_id: 20,
                    msg_id: 58,
                    create_time: T0 + 1,
                    msg_type: 0x11,
                    msg_data: b(GROUP_TEXT_CIPHER.as_bytes()),
                    attach_data: attach_handle(),
                },
            ),
        ),
        (
            "msg_data_group_audio",
            expect(
                3,
                0x0301,
                0,
                message::ImMsgData {
                    from_user_id: 1003,
                    to_session_id: 20,
                    msg_id: 59,
                    create_time: T0 + 2,
                    msg_type: MsgType::GroupAudio as i32,
                    msg_data: [0u8, 0, 0, 5].into_iter().chain(0u8..=255).collect(),
                    attach_data: None,
                },
            ),
        ),
        (
            "msg_data_ack",
            expect(
                3,
                0x0302,
                0x0102,
                message::ImMsgDataAck {
                    user_id: 1001,
                    session_id: 1002,
                    msg_id: 58,
                    session_type: SINGLE,
                },
            ),
        ),
        (
            "client_time_rsp",
            expect(
                3,
                0x0306,
                0xFFFF,
                message::ImClientTimeRsp {
                    server_time: 4_294_967_295,
                },
            ),
        ),
        (
            "unread_msg_cnt_rsp",
            expect(
                3,
                0x0308,
                16,
                message::ImUnreadMsgCntRsp {
                    user_id: 1001,
                    total_cnt: 7,
                    unreadinfo_list: vec![
                        base::UnreadInfo {
                            session_id: 1002,
                            session_type: SINGLE,
                            unread_cnt: 5,
                            latest_msg_id: 60,
                            latest_msg_data: b(b"5L2g5aW9"),
                            latest_msg_type: MsgType::SingleText as i32,
                            latest_msg_from_user_id: 1002,
                        },
                        base::UnreadInfo {
                            session_id: 20,
                            session_type: GROUP,
                            unread_cnt: 2,
                            latest_msg_id: 9,
                            latest_msg_data: b(b"\x00\x00\x00\x01\xff"),
                            latest_msg_type: MsgType::GroupAudio as i32,
                            latest_msg_from_user_id: 1003,
                        },
                    ],
                    attach_data: attach_handle(),
                },
            ),
        ),
        (
            "get_msg_list_rsp",
            expect(
                3,
                0x030a,
                17,
                message::ImGetMsgListRsp {
                    user_id: 1001,
                    session_type: SINGLE,
                    session_id: 1002,
                    msg_id_begin: 60,
                    msg_list: vec![
                        base::MsgInfo {
                            msg_id: 60,
                            from_session_id: 1002,
                            create_time: T0,
                            msg_type: MsgType::SingleText as i32,
                            msg_data: b(b"U2FsdGVk"),
                        },
                        base::MsgInfo {
                            msg_id: 59,
                            from_session_id: 1001,
                            create_time: T0 - 1,
                            msg_type: MsgType::SingleAudio as i32,
                            msg_data: b(b"\x00\x00\x00\x02\x80\x81\x82"),
                        },
                    ],
                    attach_data: None,
                },
            ),
        ),
        (
            "get_msg_by_id_req",
            expect(
                3,
                0x030d,
                18,
                message::ImGetMsgByIdReq {
                    user_id: 1001,
                    session_type: GROUP,
                    session_id: 20,
                    msg_id_list: vec![1, 2, 300, u32::MAX],
                    attach_data: None,
                },
            ),
        ),
        // --- IM.Group ---------------------------------------------------------------------
        (
            "normal_group_list_rsp",
            expect(
                4,
                0x0402,
                19,
                group::ImNormalGroupListRsp {
                    user_id: 1001,
                    group_version_list: vec![
                        base::GroupVersionInfo {
                            group_id: 20,
                            version: 3,
                        },
                        base::GroupVersionInfo {
                            group_id: 21,
                            version: 0,
                        },
                    ],
                    attach_data: attach_handle(),
                },
            ),
        ),
        (
            "group_info_list_rsp",
            expect(
                4,
                0x0404,
                20,
                group::ImGroupInfoListRsp {
                    user_id: 1001,
                    group_info_list: vec![
                        base::GroupInfo {
                            group_id: 20,
                            version: 3,
                            group_name: s("技术交流群"),
                            group_avatar: s("http://127.0.0.1:8700/g0/group.png"),
                            group_creator_id: 1001,
                            group_type: base::GroupType::Normal as i32,
                            shield_status: 0,
                            group_member_list: vec![1001, 1002, 1003],
                        },
                        base::GroupInfo {
                            group_id: 21,
                            version: 1,
                            group_name: s("tmp"),
                            group_avatar: String::new(),
                            group_creator_id: 0,
                            group_type: base::GroupType::Tmp as i32,
                            shield_status: 1,
                            group_member_list: vec![],
                        },
                    ],
                    attach_data: Some(b(&[
                        0, 0, 0, 3, 0, 0, 0xab, 0xcd, 0, 0, 0, 0, 0, 0, 0, 2, 0xbe, 0xef,
                    ])),
                },
            ),
        ),
        (
            "group_create_req",
            expect(
                4,
                0x0405,
                21,
                group::ImGroupCreateReq {
                    user_id: 1001,
                    group_type: base::GroupType::Tmp as i32,
                    group_name: s("周末聚餐"),
                    group_avatar: String::new(),
                    member_id_list: vec![1001, 1002, 1003],
                    attach_data: None,
                },
            ),
        ),
        (
            "group_change_member_notify",
            expect(
                4,
                0x040b,
                0,
                group::ImGroupChangeMemberNotify {
                    user_id: 1001,
                    change_type: base::GroupModifyType::Del as i32,
                    group_id: 20,
                    cur_user_id_list: vec![1001, 1003],
                    chg_user_id_list: vec![1002],
                },
            ),
        ),
        // --- IM.File ----------------------------------------------------------------------
        (
            "file_state_peer_ready",
            expect(
                5,
                0x0503,
                22,
                file::ImFileState {
                    state: base::ClientFileState::ClientFilePeerReady as i32,
                    task_id: s(TASK_ID),
                    user_id: 1002,
                },
            ),
        ),
        (
            "file_pull_data_rsp",
            expect(
                5,
                0x0505,
                23,
                file::ImFilePullDataRsp {
                    result_code: 0,
                    task_id: s(TASK_ID),
                    user_id: 1001,
                    offset: 32768,
                    file_data: b(b"\x89PNG\r\n\x1a\n\x00\xff\xfe\xc0\x80"),
                },
            ),
        ),
        (
            "file_notify",
            expect(
                5,
                0x0508,
                0,
                file::ImFileNotify {
                    from_user_id: 1001,
                    to_user_id: 1002,
                    file_name: s("报告.pdf"),
                    file_size: u32::MAX,
                    task_id: s(TASK_ID),
                    ip_addr_list: vec![
                        report_ip(),
                        base::IpAddr {
                            ip: s("10.0.0.1"),
                            port: 8601,
                        },
                    ],
                    trans_mode: base::TransferFileType::FileTypeOffline as i32,
                    offline_ready: 1,
                },
            ),
        ),
        (
            "file_has_offline_rsp",
            expect(
                5,
                0x050a,
                24,
                file::ImFileHasOfflineRsp {
                    user_id: 1002,
                    offline_file_list: vec![base::OfflineFileInfo {
                        from_user_id: 1001,
                        task_id: s(TASK_ID),
                        file_name: s("报告.pdf"),
                        file_size: 123_456,
                    }],
                    ip_addr_list: vec![report_ip()],
                    attach_data: attach_handle(),
                },
            ),
        ),
        // --- IM.SwitchService -------------------------------------------------------------
        (
            "p2p_cmd_msg",
            expect(
                6,
                0x0601,
                25,
                switch_service::Imp2pCmdMsg {
                    from_user_id: 1001,
                    to_user_id: 1002,
                    cmd_msg_data: s(r#"{"cmd_id":1,"content":"对方正在输入..."}"#),
                },
            ),
        ),
        // --- IM.Server --------------------------------------------------------------------
        (
            "stop_receive_packet",
            expect(7, 0x0702, 0, server::ImStopReceivePacket { result: 0 }),
        ),
        (
            "validate_rsp",
            expect(
                7,
                0x0704,
                26,
                server::ImValidateRsp {
                    user_name: s("zhangsan"),
                    result_code: 0,
                    result_string: some("成功"),
                    user_info: Some(zhangsan()),
                    attach_data: attach_handle(),
                },
            ),
        ),
        (
            "online_user_info",
            expect(
                7,
                0x0708,
                0,
                server::ImOnlineUserInfo {
                    user_stat_list: vec![
                        base::ServerUserStat {
                            user_id: 1001,
                            status: UserStatType::UserStatusOnline as i32,
                            client_type: ClientType::Android as i32,
                        },
                        base::ServerUserStat {
                            user_id: 1002,
                            status: UserStatType::UserStatusLeave as i32,
                            client_type: ClientType::Windows as i32,
                        },
                        base::ServerUserStat {
                            user_id: u32::MAX,
                            status: UserStatType::UserStatusOnline as i32,
                            client_type: ClientType::Mac as i32,
                        },
                    ],
                },
            ),
        ),
        (
            "msg_serv_info",
            expect(
                7,
                0x0709,
                0,
                server::ImMsgServInfo {
                    ip1: s("127.0.0.1"),
                    ip2: s("127.0.0.1"),
                    port: 8000,
                    max_conn_cnt: 100_000,
                    cur_conn_cnt: 0,
                    host_name: s("im-host-01"),
                },
            ),
        ),
        (
            "push_to_user_req",
            expect(
                7,
                0x070f,
                0,
                server::ImPushToUserReq {
                    flash: s("张三: 你好"),
                    data: s(r#"{"msg_type":1,"from_id":"1001"}"#),
                    user_token_list: vec![base::UserTokenInfo {
                        user_id: 1002,
                        user_type: ClientType::Ios as i32,
                        token: s(IOS_TOKEN),
                        push_count: 3,
                        push_type: 1,
                    }],
                },
            ),
        ),
        (
            "group_get_shield_req",
            expect(
                7,
                0x0711,
                27,
                server::ImGroupGetShieldReq {
                    group_id: 20,
                    user_id: vec![1002, 1003],
                    attach_data: Some(Bytes::from(hex::decode(INNER_MSG_DATA_HEX).unwrap())),
                },
            ),
        ),
        (
            "file_transfer_rsp",
            expect(
                7,
                0x0732,
                28,
                server::ImFileTransferRsp {
                    result_code: 0,
                    from_user_id: 1001,
                    to_user_id: 1002,
                    file_name: some("报告.pdf"),
                    file_size: None,
                    task_id: some(TASK_ID),
                    trans_mode: Some(base::TransferFileType::FileTypeOnline as i32),
                    attach_data: attach_handle(),
                },
            ),
        ),
        // --- IM.Admin ---------------------------------------------------------------------
        (
            "admin_auth_req",
            expect(
                0x0010,
                0x1001,
                1,
                admin::ImAdminAuthReq {
                    token: some("s3cret-token"),
                    client_name: None,
                },
            ),
        ),
        ("admin_stats_rsp", expect(0x0010, 0x1004, 2, admin_stats())),
        (
            "admin_route_list_rsp",
            expect(
                0x0010,
                0x1006,
                3,
                admin::ImAdminRouteListRsp {
                    result_code: Some(admin::AdminResult::AdminOk as i32),
                    entries: vec![
                        admin::RouteEntry {
                            user_id: Some(1001),
                            locations: vec![
                                admin::UserLocation {
                                    msg_server: some("msg1"),
                                    client_type: Some(ClientType::Android as i32),
                                    connections: Some(1),
                                },
                                admin::UserLocation {
                                    msg_server: some("msg2"),
                                    client_type: Some(ClientType::Windows as i32),
                                    connections: Some(2),
                                },
                            ],
                            wire_status: Some(1),
                        },
                        admin::RouteEntry {
                            user_id: Some(1002),
                            locations: vec![],
                            wire_status: None,
                        },
                    ],
                    next_after_user_id: Some(1002),
                    total_users: Some(2),
                    msg_server_links: Some(2),
                },
            ),
        ),
        (
            "admin_kick_user_rsp",
            expect(
                0x0010,
                0x100a,
                4,
                admin::ImAdminKickUserRsp {
                    result_code: Some(admin::AdminResult::AdminNotFound as i32),
                    result_string: some("用户不在线"),
                    kicked: Some(0),
                },
            ),
        ),
    ]
}

fn admin_stats() -> admin::ImAdminStatsRsp {
    admin::ImAdminStatsRsp {
        result_code: Some(0),
        stats: Some(admin::ServerStats {
            server_kind: some("msg_server"),
            server_name: some("msg1"),
            version: some("0.1.0"),
            uptime_ms: Some((1 << 40) + 5),
            state: Some(admin::ServerState::Draining as i32),
            listen_addr: some("0.0.0.0:8000"),
            connections: vec![
                admin::ClientTypeCount {
                    client_type: Some(1),
                    count: Some(10),
                },
                admin::ClientTypeCount {
                    client_type: Some(0x12),
                    count: Some(0),
                },
            ],
            logins_total: Some(u64::MAX),
            login_failures_total: Some(0),
            msgs_in_total: Some(12345),
            msgs_out_total: None,
            routed_out_total: None,
            routed_in_total: None,
            ack_latency: Some(admin::Latency {
                p50_micros: Some(150),
                p99_micros: Some(2500),
                max_micros: Some(90_000),
                count: Some(12345),
            }),
            outbound_queue_depth: Some(0),
            outbound_queue_max: None,
            slow_consumers: Some(0),
            slow_consumer_disconnects_total: None,
            upstreams: vec![admin::UpstreamLink {
                kind: some("route_server"),
                addr: some("127.0.0.1:8200"),
                state: Some(admin::LinkState::Connected as i32),
                rtt_micros: Some(210),
                pdus_in_total: Some(100),
                pdus_out_total: Some(101),
                reconnects_total: Some(0),
                state_age_ms: Some(60_000),
                queue_depth: Some(0),
            }],
            rss_bytes: None,
            cpu_time_ms: None,
            storage: Some(admin::StorageStats {
                backend: some("sqlite"),
                cache: None,
                write_latency: Some(admin::Latency {
                    p50_micros: Some(40),
                    p99_micros: Some(900),
                    max_micros: None,
                    count: None,
                }),
                read_latency: None,
                pool_in_use: Some(1),
                pool_size: Some(4),
                group_commits_total: None,
                writes_total: Some(u64::MAX - 1),
                writer_busy_micros_total: None,
                write_queue: None,
            }),
            commands: vec![admin::CommandStat {
                command_id: Some(0x0301),
                name: some("CID_MSG_DATA"),
                requests_total: Some(12345),
                errors_total: Some(2),
                latency: Some(admin::Latency {
                    p50_micros: Some(120),
                    p99_micros: Some(3000),
                    max_micros: Some(45_000),
                    count: Some(12345),
                }),
            }],
            metrics: vec![
                admin::Metric {
                    name: some("queue_fill"),
                    value: Some(0.25),
                    monotonic: Some(false),
                },
                admin::Metric {
                    name: some("bytes_in_total"),
                    value: Some(1.5e9),
                    monotonic: Some(true),
                },
            ],
            table_size: Some(3),
        }),
    }
}

/// Every `*.hex` file in the fixture directory, by stem, as raw bytes.
fn load_vectors() -> BTreeMap<String, Vec<u8>> {
    let dir = Path::new(FIXTURES);
    let mut out = BTreeMap::new();
    for entry in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let stem = name
            .strip_suffix(".hex")
            .unwrap_or_else(|| panic!("{name}: unexpected file in fixtures/pdu"));
        let text = std::fs::read_to_string(&path).unwrap();
        let line = text
            .strip_suffix('\n')
            .unwrap_or_else(|| panic!("{name}: no trailing newline"));
        assert!(
            !line.is_empty()
                && line
                    .bytes()
                    .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c)),
            "{name}: not one line of lower-case hex"
        );
        let raw = hex::decode(line).unwrap_or_else(|e| panic!("{name}: {e}"));
        out.insert(stem.to_owned(), raw);
    }
    out
}

fn vector(name: &str) -> Vec<u8> {
    let path = Path::new(FIXTURES).join(format!("{name}.hex"));
    let text = std::fs::read_to_string(&path).unwrap();
    hex::decode(text.trim_end()).unwrap()
}

#[test]
fn every_vector_matches_its_expectation() {
    let vectors = load_vectors();
    assert!(
        vectors.len() >= MIN_VECTORS,
        "only {} vectors in {FIXTURES}; run scripts/gen_pdu_vectors.py",
        vectors.len()
    );

    let mut checks = BTreeMap::new();
    for (name, check) in expectations() {
        assert!(
            checks.insert(name, check).is_none(),
            "duplicate expectation {name}"
        );
    }
    let without_expectation: Vec<_> = vectors
        .keys()
        .filter(|n| !checks.contains_key(n.as_str()))
        .collect();
    let without_file: Vec<_> = checks
        .keys()
        .filter(|n| !vectors.contains_key(**n))
        .collect();
    assert!(
        without_expectation.is_empty() && without_file.is_empty(),
        "vectors without an expectation: {without_expectation:?}; \
         expectations without a vector: {without_file:?}"
    );

    for (name, raw) in &vectors {
        checks[name.as_str()](name, raw);
    }
}

#[test]
fn all_vectors_decode_from_one_stream() {
    // The same frames back to back, as a server would read them from one socket.
    let vectors = load_vectors();
    let mut stream = BytesMut::new();
    for raw in vectors.values() {
        stream.extend_from_slice(raw);
    }
    let mut codec = PduCodec::new(LinkKind::Server);
    let mut frames = Vec::new();
    while let Some(pdu) = codec.decode_eof(&mut stream).unwrap() {
        frames.push(pdu.to_frame());
    }
    let expected: Vec<_> = vectors.values().map(|v| &v[..]).collect();
    let got: Vec<_> = frames.iter().map(|f| &f[..]).collect();
    assert_eq!(got, expected);
}

#[test]
fn rust_cipher_agrees_with_the_python_cipher() {
    let cipher = MessageCipher::default_key();
    for (name, plain, encoded) in [
        (
            "msg_data_single_text",
            SINGLE_TEXT_PLAIN,
            SINGLE_TEXT_CIPHER,
        ),
        ("msg_data_group_text", GROUP_TEXT_PLAIN, GROUP_TEXT_CIPHER),
    ] {
        let raw = vector(name);
        let pdu = PduCodec::new(LinkKind::Client)
            .decode(&mut BytesMut::from(&raw[..]))
            .unwrap()
            .unwrap();
        let msg = pdu.decode::<message::ImMsgData>().unwrap();
        assert_eq!(&msg.msg_data[..], encoded.as_bytes(), "{name}: msg_data");
        let decrypted = cipher.decrypt(&msg.msg_data).unwrap();
        assert_eq!(
            String::from_utf8(decrypted).unwrap(),
            plain,
            "{name}: decrypt"
        );
        assert_eq!(cipher.encrypt(plain.as_bytes()), encoded, "{name}: encrypt");
    }
}

#[test]
fn attach_data_can_carry_a_whole_msg_data_body() {
    let raw = vector("group_get_shield_req");
    let pdu = PduCodec::new(LinkKind::Server)
        .decode(&mut BytesMut::from(&raw[..]))
        .unwrap()
        .unwrap();
    let req = pdu.decode::<server::ImGroupGetShieldReq>().unwrap();
    let attach = req.attach_data.unwrap();
    im_proto::required::check::<message::ImMsgData>(&attach).unwrap();
    assert_eq!(
        message::ImMsgData::decode(attach).unwrap(),
        inner_msg_data()
    );
}
