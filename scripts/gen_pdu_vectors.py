#!/usr/bin/env python3
"""Writes the PDU test vectors in fixtures/pdu/ with Google's protobuf implementation.

The Rust side (proto/tests/vectors.rs) decodes every vector, compares it with a message typed
out again in Rust and re-encodes it byte for byte, so these files pin im-proto's prost types,
its header code and its message cipher against an implementation that shares no code with it.

Nothing here uses Rust code: the .proto files are compiled with grpcio-tools' bundled protoc,
bodies are serialised by the `protobuf` package, the 16-byte header is packed with `struct`,
and the text-message cipher is written from FLOWS.md section 18 on top of pycryptodome's AES.

Requirements (once):

    pip install grpcio-tools protobuf pycryptodome

Usage, from anywhere:

    python3 scripts/gen_pdu_vectors.py

Output: one file per PDU, `fixtures/pdu/<name>.hex`, holding the lower-case hex of the whole
PDU (header + body) on one line with a trailing newline. Files in that directory that this
script does not write are deleted, so the directory is exactly the set below. The output is
deterministic: running the script again rewrites the same bytes.
"""

from __future__ import annotations

import base64
import importlib
import struct
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PB_DIR = ROOT / "proto" / "pb"
OUT_DIR = ROOT / "fixtures" / "pdu"

# Header constants (PROTOCOL.md section 2).
PDU_VERSION = 1
HEADER_FORMAT = ">IHHHHHH"  # length, version, flag, service_id, command_id, seq_num, reserved
HEADER_LEN = 16

# Service ids (PROTOCOL.md section 3, IM.Admin.proto for SID_ADMIN).
SID_LOGIN = 0x0001
SID_BUDDY_LIST = 0x0002
SID_MSG = 0x0003
SID_GROUP = 0x0004
SID_FILE = 0x0005
SID_SWITCH_SERVICE = 0x0006
SID_OTHER = 0x0007
SID_ADMIN = 0x0010

# The key every stock client hard-codes (FLOWS.md section 18).
MESSAGE_KEY = b"12345678901234567890123456789012"

# Shared values, repeated literally in proto/tests/vectors.rs.
T0 = 1733356800  # 2024-12-05T00:00:00Z
U32_MAX = 0xFFFFFFFF
U64_MAX = 0xFFFFFFFFFFFFFFFF
# CDbAttachData: type 1 (HANDLE), handle 0xabcd, service_type 0 (PROTOCOL.md section 6).
ATTACH_HANDLE = bytes.fromhex("00000001" "0000abcd" "00000000")
TASK_ID = "0f8fad5b-d9cb-469f-a165-70867728950e"
IOS_TOKEN = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
SINGLE_TEXT_PLAIN = "你好，TeamTalk！&$#@~^@[{:http://127.0.0.1:8700/g0/000/000/1.png:}]&$~@#@"
# 16 bytes: n mod 16 == 0, so the cipher needs an extra block for the length trailer.
GROUP_TEXT_PLAIN = "hello, TeamTalk!"


def die(msg: str) -> None:
    print(f"gen_pdu_vectors: {msg}", file=sys.stderr)
    sys.exit(1)


def compile_protos(tmp: Path) -> dict:
    """Compiles proto/pb/*.proto into `tmp` and imports the generated modules."""
    try:
        from grpc_tools import protoc
    except ImportError:
        die("grpcio-tools is missing: pip install grpcio-tools protobuf")
    protos = sorted(str(p) for p in PB_DIR.glob("*.proto"))
    if not protos:
        die(f"no .proto files in {PB_DIR}")
    rc = protoc.main(["protoc", f"-I{PB_DIR}", f"--python_out={tmp}", *protos])
    if rc != 0:
        die(f"protoc failed with exit code {rc}")
    sys.path.insert(0, str(tmp))
    # `IM.Buddy.proto` becomes `IM/Buddy_pb2.py`.
    names = ["BaseDefine", "Buddy", "Login", "Message", "Group", "File", "SwitchService",
             "Other", "Server", "Admin"]
    return {n: importlib.import_module(f"IM.{n}_pb2") for n in names}


def aes_ecb_encrypt(key: bytes, data: bytes) -> bytes:
    try:
        from Crypto.Cipher import AES
    except ImportError:
        die("pycryptodome is missing (needed for the encrypted-text vectors): "
            "pip install pycryptodome")
    return AES.new(key, AES.MODE_ECB).encrypt(data)


def aes_ecb_decrypt(key: bytes, data: bytes) -> bytes:
    from Crypto.Cipher import AES
    return AES.new(key, AES.MODE_ECB).decrypt(data)


def teamtalk_encrypt(plain: bytes) -> bytes:
    """TeamTalk's message cipher, written from FLOWS.md section 18.

    blocks = ceil(n/16), plus one if n mod 16 == 0 or n mod 16 > 12; zero-filled buffer;
    plaintext at the start; n as u32 big-endian in the last 4 bytes; AES-256-ECB; base64.
    """
    n = len(plain)
    blocks = -(-n // 16)
    if n % 16 == 0 or n % 16 > 12:
        blocks += 1
    buf = bytearray(blocks * 16)
    buf[:n] = plain
    buf[-4:] = struct.pack(">I", n)
    encoded = base64.b64encode(aes_ecb_encrypt(MESSAGE_KEY, bytes(buf)))
    # Self-check with the inverse, so a mistake here cannot hide behind the Rust side.
    raw = aes_ecb_decrypt(MESSAGE_KEY, base64.b64decode(encoded))
    (length,) = struct.unpack(">I", raw[-4:])
    assert raw[:length] == plain, "cipher self-check failed"
    return encoded


def pdu(service_id: int, command_id: int, seq_num: int, msg) -> bytes:
    body = msg.SerializeToString()  # raises if a required field is unset
    header = struct.pack(HEADER_FORMAT, HEADER_LEN + len(body), PDU_VERSION, 0,
                         service_id, command_id, seq_num, 0)
    return header + body


def vectors(pb: dict) -> list[tuple[str, int, int, int, object]]:
    """(name, service_id, command_id, seq_num, message) for every vector."""
    bd = pb["BaseDefine"]
    buddy = pb["Buddy"]
    login = pb["Login"]
    msg = pb["Message"]
    group = pb["Group"]
    file = pb["File"]
    sw = pb["SwitchService"]
    other = pb["Other"]
    server = pb["Server"]
    admin = pb["Admin"]

    def zhangsan():
        return bd.UserInfo(
            user_id=1001, user_gender=1, user_nick_name="小张",
            avatar_url="http://127.0.0.1:8700/g0/000/000/avatar.png", department_id=3,
            email="zhangsan@example.com", user_real_name="张三", user_tel="13800138000",
            user_domain="zhangsan", status=0, sign_info="好好学习，天天向上")

    def lisi():
        # Required strings present but empty; optional sign_info absent.
        return bd.UserInfo(
            user_id=1002, user_gender=2, user_nick_name="", avatar_url="", department_id=0,
            email="", user_real_name="李四", user_tel="", user_domain="lisi", status=3)

    def report_ip():
        return bd.IpAddr(ip="192.168.1.10", port=8600)

    # An IMMsgData body carried inside attach_data (PROTOCOL.md 6, IMGroupGetShieldReq).
    inner_msg = msg.IMMsgData(
        from_user_id=1001, to_session_id=20, msg_id=61, create_time=T0,
        msg_type=bd.MSG_TYPE_GROUP_AUDIO, msg_data=b"\x00\x00\x00\x01A")

    return [
        # --- IM.Other / IM.Message / IM.Login / IM.Server: empty bodies -------------------
        ("heartbeat", SID_OTHER, 0x0701, 0, other.IMHeartBeat()),
        ("logout_req", SID_LOGIN, 0x0105, 7, login.IMLogoutReq()),
        ("client_time_req", SID_MSG, 0x0305, 0xFFFF, msg.IMClientTimeReq()),
        ("file_server_ip_req", SID_OTHER, 0x0733, 0, server.IMFileServerIPReq()),

        # --- IM.Login ------------------------------------------------------------------------
        ("msg_serv_rsp", SID_LOGIN, 0x0102, 1, login.IMMsgServRsp(
            result_code=bd.REFUSE_REASON_NONE, prior_ip="127.0.0.1", backip_ip="192.168.0.2",
            port=8000)),
        ("login_req", SID_LOGIN, 0x0103, 2, login.IMLoginReq(
            user_name="张三", password="e10adc3949ba59abbe56e057f20f883e",
            online_status=bd.USER_STATUS_ONLINE, client_type=bd.CLIENT_TYPE_ANDROID,
            client_version="3.1.0-android")),
        ("login_res_ok", SID_LOGIN, 0x0104, 2, login.IMLoginRes(
            server_time=T0, result_code=bd.REFUSE_REASON_NONE, result_string="成功",
            online_status=bd.USER_STATUS_ONLINE, user_info=zhangsan())),
        ("login_res_refused", SID_LOGIN, 0x0104, 3, login.IMLoginRes(
            server_time=U32_MAX, result_code=bd.REFUSE_REASON_DB_VALIDATE_FAILED)),
        ("kick_user", SID_LOGIN, 0x0107, 0, login.IMKickUser(
            user_id=U32_MAX, kick_reason=bd.KICK_REASON_MOBILE_KICK)),
        ("device_token_req", SID_LOGIN, 0x0108, 0x1234, login.IMDeviceTokenReq(
            user_id=1001, device_token=IOS_TOKEN, client_type=bd.CLIENT_TYPE_IOS,
            attach_data=ATTACH_HANDLE)),
        # Optional shield_status present with value 0: must still be on the wire.
        ("query_push_shield_rsp", SID_LOGIN, 0x010F, 5, login.IMQueryPushShieldRsp(
            user_id=1001, result_code=0, shield_status=0)),

        # --- IM.Buddy ------------------------------------------------------------------------
        ("recent_contact_session_rsp", SID_BUDDY_LIST, 0x0202, 9,
         buddy.IMRecentContactSessionRsp(
             user_id=1001,
             contact_session_list=[
                 bd.ContactSessionInfo(
                     session_id=1002, session_type=bd.SESSION_TYPE_SINGLE,
                     session_status=bd.SESSION_STATUS_OK, updated_time=T0, latest_msg_id=57,
                     latest_msg_data=b"\x00\x00\x00\x02#!AMR\n\xff\xfe\x80",
                     latest_msg_type=bd.MSG_TYPE_SINGLE_AUDIO, latest_msg_from_user_id=1002),
                 bd.ContactSessionInfo(
                     session_id=20, session_type=bd.SESSION_TYPE_GROUP,
                     session_status=bd.SESSION_STATUS_DELETE, updated_time=T0 - 60,
                     latest_msg_id=U32_MAX, latest_msg_data=b"",
                     latest_msg_type=bd.MSG_TYPE_GROUP_TEXT, latest_msg_from_user_id=1003),
             ],
             attach_data=ATTACH_HANDLE)),
        ("user_stat_notify", SID_BUDDY_LIST, 0x0203, 0, buddy.IMUserStatNotify(
            user_stat=bd.UserStat(user_id=1002, status=bd.USER_STATUS_LEAVE))),
        ("users_info_req", SID_BUDDY_LIST, 0x0204, 10, buddy.IMUsersInfoReq(
            user_id=1001, user_id_list=[1002, 0, U32_MAX, 1002])),
        # attach_data present but empty.
        ("users_info_rsp", SID_BUDDY_LIST, 0x0205, 10, buddy.IMUsersInfoRsp(
            user_id=1001, user_info_list=[zhangsan(), lisi()], attach_data=b"")),
        ("remove_session_req", SID_BUDDY_LIST, 0x0206, 11, buddy.IMRemoveSessionReq(
            user_id=1001, session_type=bd.SESSION_TYPE_GROUP, session_id=20)),
        ("users_stat_rsp", SID_BUDDY_LIST, 0x020B, 12, buddy.IMUsersStatRsp(
            user_id=1001,
            user_stat_list=[bd.UserStat(user_id=1002, status=bd.USER_STATUS_ONLINE),
                            bd.UserStat(user_id=1003, status=bd.USER_STATUS_OFFLINE)],
            # CPduAttachData type 1 (HANDLE), pdu_len 0.
            attach_data=bytes.fromhex("00000001" "0000abcd" "00000000" "00000000"))),
        ("pc_login_status_notify", SID_BUDDY_LIST, 0x020E, 0, buddy.IMPCLoginStatusNotify(
            user_id=1001, login_stat=bd.USER_STATUS_OFFLINE)),
        ("department_rsp", SID_BUDDY_LIST, 0x0211, 13, buddy.IMDepartmentRsp(
            user_id=1001, latest_update_time=0,
            dept_list=[
                bd.DepartInfo(dept_id=1, priority=10, dept_name="研发部", parent_dept_id=0,
                              dept_status=bd.DEPT_STATUS_OK),
                bd.DepartInfo(dept_id=2, priority=20, dept_name="测试组", parent_dept_id=1,
                              dept_status=bd.DEPT_STATUS_DELETE),
            ])),
        ("change_sign_info_rsp", SID_BUDDY_LIST, 0x0214, 14, buddy.IMChangeSignInfoRsp(
            user_id=1001, result_code=0, sign_info="今天天气不错 🌤", attach_data=ATTACH_HANDLE)),

        # --- IM.Message ----------------------------------------------------------------------
        ("msg_data_single_text", SID_MSG, 0x0301, 0x0102, msg.IMMsgData(
            from_user_id=1001, to_session_id=1002, msg_id=0, create_time=T0,
            msg_type=bd.MSG_TYPE_SINGLE_TEXT,
            msg_data=teamtalk_encrypt(SINGLE_TEXT_PLAIN.encode("utf-8")))),
        ("msg_data_group_text", SID_MSG, 0x0301, 3, msg.IMMsgData(
            from_user_id=1001, to_session_id=20, msg_id=58, create_time=T0 + 1,
            msg_type=bd.MSG_TYPE_GROUP_TEXT,
            msg_data=teamtalk_encrypt(GROUP_TEXT_PLAIN.encode("utf-8")),
            attach_data=ATTACH_HANDLE)),
        # Audio: 4-byte big-endian duration + every byte value (a two-byte length varint).
        ("msg_data_group_audio", SID_MSG, 0x0301, 0, msg.IMMsgData(
            from_user_id=1003, to_session_id=20, msg_id=59, create_time=T0 + 2,
            msg_type=bd.MSG_TYPE_GROUP_AUDIO,
            msg_data=b"\x00\x00\x00\x05" + bytes(range(256)))),
        ("msg_data_ack", SID_MSG, 0x0302, 0x0102, msg.IMMsgDataAck(
            user_id=1001, session_id=1002, msg_id=58, session_type=bd.SESSION_TYPE_SINGLE)),
        ("client_time_rsp", SID_MSG, 0x0306, 0xFFFF, msg.IMClientTimeRsp(server_time=U32_MAX)),
        ("unread_msg_cnt_rsp", SID_MSG, 0x0308, 16, msg.IMUnreadMsgCntRsp(
            user_id=1001, total_cnt=7,
            unreadinfo_list=[
                bd.UnreadInfo(session_id=1002, session_type=bd.SESSION_TYPE_SINGLE,
                              unread_cnt=5, latest_msg_id=60, latest_msg_data=b"5L2g5aW9",
                              latest_msg_type=bd.MSG_TYPE_SINGLE_TEXT,
                              latest_msg_from_user_id=1002),
                bd.UnreadInfo(session_id=20, session_type=bd.SESSION_TYPE_GROUP,
                              unread_cnt=2, latest_msg_id=9,
                              latest_msg_data=b"\x00\x00\x00\x01\xff",
                              latest_msg_type=bd.MSG_TYPE_GROUP_AUDIO,
                              latest_msg_from_user_id=1003),
            ],
            attach_data=ATTACH_HANDLE)),
        ("get_msg_list_rsp", SID_MSG, 0x030A, 17, msg.IMGetMsgListRsp(
            user_id=1001, session_type=bd.SESSION_TYPE_SINGLE, session_id=1002,
            msg_id_begin=60,
            msg_list=[
                bd.MsgInfo(msg_id=60, from_session_id=1002, create_time=T0,
                           msg_type=bd.MSG_TYPE_SINGLE_TEXT, msg_data=b"U2FsdGVk"),
                bd.MsgInfo(msg_id=59, from_session_id=1001, create_time=T0 - 1,
                           msg_type=bd.MSG_TYPE_SINGLE_AUDIO,
                           msg_data=b"\x00\x00\x00\x02\x80\x81\x82"),
            ])),
        ("get_msg_by_id_req", SID_MSG, 0x030D, 18, msg.IMGetMsgByIdReq(
            user_id=1001, session_type=bd.SESSION_TYPE_GROUP, session_id=20,
            msg_id_list=[1, 2, 300, U32_MAX])),

        # --- IM.Group ------------------------------------------------------------------------
        ("normal_group_list_rsp", SID_GROUP, 0x0402, 19, group.IMNormalGroupListRsp(
            user_id=1001,
            group_version_list=[bd.GroupVersionInfo(group_id=20, version=3),
                                bd.GroupVersionInfo(group_id=21, version=0)],
            attach_data=ATTACH_HANDLE)),
        ("group_info_list_rsp", SID_GROUP, 0x0404, 20, group.IMGroupInfoListRsp(
            user_id=1001,
            group_info_list=[
                bd.GroupInfo(group_id=20, version=3, group_name="技术交流群",
                             group_avatar="http://127.0.0.1:8700/g0/group.png",
                             group_creator_id=1001, group_type=bd.GROUP_TYPE_NORMAL,
                             shield_status=0, group_member_list=[1001, 1002, 1003]),
                bd.GroupInfo(group_id=21, version=1, group_name="tmp", group_avatar="",
                             group_creator_id=0, group_type=bd.GROUP_TYPE_TMP,
                             shield_status=1, group_member_list=[]),
            ],
            # CPduAttachData type 3 (HANDLE_AND_PDU) with a 2-byte payload.
            attach_data=bytes.fromhex("00000003" "0000abcd" "00000000" "00000002" "beef"))),
        ("group_create_req", SID_GROUP, 0x0405, 21, group.IMGroupCreateReq(
            user_id=1001, group_type=bd.GROUP_TYPE_TMP, group_name="周末聚餐",
            group_avatar="", member_id_list=[1001, 1002, 1003])),
        ("group_change_member_notify", SID_GROUP, 0x040B, 0, group.IMGroupChangeMemberNotify(
            user_id=1001, change_type=bd.GROUP_MODIFY_TYPE_DEL, group_id=20,
            cur_user_id_list=[1001, 1003], chg_user_id_list=[1002])),

        # --- IM.File -------------------------------------------------------------------------
        # First enum value (0) in a required field.
        ("file_state_peer_ready", SID_FILE, 0x0503, 22, file.IMFileState(
            state=bd.CLIENT_FILE_PEER_READY, task_id=TASK_ID, user_id=1002)),
        ("file_pull_data_rsp", SID_FILE, 0x0505, 23, file.IMFilePullDataRsp(
            result_code=0, task_id=TASK_ID, user_id=1001, offset=32768,
            file_data=b"\x89PNG\r\n\x1a\n\x00\xff\xfe\xc0\x80")),
        ("file_notify", SID_FILE, 0x0508, 0, file.IMFileNotify(
            from_user_id=1001, to_user_id=1002, file_name="报告.pdf", file_size=U32_MAX,
            task_id=TASK_ID,
            ip_addr_list=[report_ip(), bd.IpAddr(ip="10.0.0.1", port=8601)],
            trans_mode=bd.FILE_TYPE_OFFLINE, offline_ready=1)),
        ("file_has_offline_rsp", SID_FILE, 0x050A, 24, file.IMFileHasOfflineRsp(
            user_id=1002,
            offline_file_list=[bd.OfflineFileInfo(from_user_id=1001, task_id=TASK_ID,
                                                  file_name="报告.pdf", file_size=123456)],
            ip_addr_list=[report_ip()],
            attach_data=ATTACH_HANDLE)),

        # --- IM.SwitchService ----------------------------------------------------------------
        ("p2p_cmd_msg", SID_SWITCH_SERVICE, 0x0601, 25, sw.IMP2PCmdMsg(
            from_user_id=1001, to_user_id=1002,
            cmd_msg_data='{"cmd_id":1,"content":"对方正在输入..."}')),

        # --- IM.Server -----------------------------------------------------------------------
        # Required uint32 with value 0.
        ("stop_receive_packet", SID_OTHER, 0x0702, 0, server.IMStopReceivePacket(result=0)),
        ("validate_rsp", SID_OTHER, 0x0704, 26, server.IMValidateRsp(
            user_name="zhangsan", result_code=0, result_string="成功", user_info=zhangsan(),
            attach_data=ATTACH_HANDLE)),
        ("online_user_info", SID_OTHER, 0x0708, 0, server.IMOnlineUserInfo(
            user_stat_list=[
                bd.ServerUserStat(user_id=1001, status=bd.USER_STATUS_ONLINE,
                                  client_type=bd.CLIENT_TYPE_ANDROID),
                bd.ServerUserStat(user_id=1002, status=bd.USER_STATUS_LEAVE,
                                  client_type=bd.CLIENT_TYPE_WINDOWS),
                bd.ServerUserStat(user_id=U32_MAX, status=bd.USER_STATUS_ONLINE,
                                  client_type=bd.CLIENT_TYPE_MAC),
            ])),
        ("msg_serv_info", SID_OTHER, 0x0709, 0, server.IMMsgServInfo(
            ip1="127.0.0.1", ip2="127.0.0.1", port=8000, max_conn_cnt=100000,
            cur_conn_cnt=0, host_name="im-host-01")),
        ("push_to_user_req", SID_OTHER, 0x070F, 0, server.IMPushToUserReq(
            flash="张三: 你好", data='{"msg_type":1,"from_id":"1001"}',
            user_token_list=[bd.UserTokenInfo(user_id=1002, user_type=bd.CLIENT_TYPE_IOS,
                                              token=IOS_TOKEN, push_count=3, push_type=1)])),
        # attach_data holds a whole serialised IMMsgData body.
        ("group_get_shield_req", SID_OTHER, 0x0711, 27, server.IMGroupGetShieldReq(
            group_id=20, user_id=[1002, 1003], attach_data=inner_msg.SerializeToString())),
        # Optional fields: some present, file_size absent.
        ("file_transfer_rsp", SID_OTHER, 0x0732, 28, server.IMFileTransferRsp(
            result_code=0, from_user_id=1001, to_user_id=1002, file_name="报告.pdf",
            task_id=TASK_ID, trans_mode=bd.FILE_TYPE_ONLINE, attach_data=ATTACH_HANDLE)),

        # --- IM.Admin (SID_ADMIN 0x0010) -------------------------------------------------------
        ("admin_auth_req", SID_ADMIN, 0x1001, 1, admin.IMAdminAuthReq(token="s3cret-token")),
        # Nesting three levels deep: IMAdminStatsRsp > ServerStats > CommandStat > Latency.
        ("admin_stats_rsp", SID_ADMIN, 0x1004, 2, admin.IMAdminStatsRsp(
            result_code=admin.ADMIN_OK,
            stats=admin.ServerStats(
                server_kind="msg_server", server_name="msg1", version="0.1.0",
                uptime_ms=1099511627781, state=admin.SERVER_STATE_DRAINING,
                listen_addr="0.0.0.0:8000",
                connections=[admin.ClientTypeCount(client_type=1, count=10),
                             admin.ClientTypeCount(client_type=0x12, count=0)],
                logins_total=U64_MAX, login_failures_total=0, msgs_in_total=12345,
                ack_latency=admin.Latency(p50_micros=150, p99_micros=2500, max_micros=90000,
                                          count=12345),
                outbound_queue_depth=0, slow_consumers=0,
                upstreams=[admin.UpstreamLink(
                    kind="route_server", addr="127.0.0.1:8200",
                    state=admin.LINK_STATE_CONNECTED, rtt_micros=210, pdus_in_total=100,
                    pdus_out_total=101, reconnects_total=0, state_age_ms=60000,
                    queue_depth=0)],
                storage=admin.StorageStats(
                    backend="sqlite",
                    write_latency=admin.Latency(p50_micros=40, p99_micros=900),
                    pool_in_use=1, pool_size=4, writes_total=U64_MAX - 1),
                commands=[admin.CommandStat(
                    command_id=0x0301, name="CID_MSG_DATA", requests_total=12345,
                    errors_total=2,
                    latency=admin.Latency(p50_micros=120, p99_micros=3000, max_micros=45000,
                                          count=12345))],
                metrics=[admin.Metric(name="queue_fill", value=0.25, monotonic=False),
                         admin.Metric(name="bytes_in_total", value=1.5e9, monotonic=True)],
                table_size=3))),
        ("admin_route_list_rsp", SID_ADMIN, 0x1006, 3, admin.IMAdminRouteListRsp(
            result_code=admin.ADMIN_OK,
            entries=[
                admin.RouteEntry(user_id=1001, wire_status=1, locations=[
                    admin.UserLocation(msg_server="msg1", client_type=bd.CLIENT_TYPE_ANDROID,
                                       connections=1),
                    admin.UserLocation(msg_server="msg2", client_type=bd.CLIENT_TYPE_WINDOWS,
                                       connections=2),
                ]),
                admin.RouteEntry(user_id=1002),
            ],
            next_after_user_id=1002, total_users=2, msg_server_links=2)),
        ("admin_kick_user_rsp", SID_ADMIN, 0x100A, 4, admin.IMAdminKickUserRsp(
            result_code=admin.ADMIN_NOT_FOUND, result_string="用户不在线", kicked=0)),
    ]


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="im-pb-") as tmp:
        pb = compile_protos(Path(tmp))
        all_vectors = vectors(pb)

    names = [v[0] for v in all_vectors]
    if len(set(names)) != len(names):
        die("duplicate vector names")
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    wanted = {f"{n}.hex" for n in names}
    for stale in OUT_DIR.glob("*"):
        if stale.is_file() and stale.name not in wanted:
            stale.unlink()
            print(f"removed stale {stale.relative_to(ROOT)}")

    for name, sid, cid, seq, msg in all_vectors:
        frame = pdu(sid, cid, seq, msg)
        path = OUT_DIR / f"{name}.hex"
        path.write_text(frame.hex() + "\n", encoding="ascii")
        print(f"{path.relative_to(ROOT)}: {msg.DESCRIPTOR.full_name} sid={sid:#06x} "
              f"cid={cid:#06x} seq={seq} {len(frame)} bytes")
    print(f"wrote {len(all_vectors)} vectors to {OUT_DIR.relative_to(ROOT)}")
    print(f"plaintext of msg_data_single_text: {SINGLE_TEXT_PLAIN}")
    print(f"plaintext of msg_data_group_text: {GROUP_TEXT_PLAIN}")


if __name__ == "__main__":
    main()
