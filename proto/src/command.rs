//! Which message travels under which (service id, command id).
//!
//! Every TeamTalk command has exactly one body message (PROTOCOL.md section 4), so the mapping
//! is a trait on the message type: `Pdu::from_msg(&ImMsgData {..}, seq)` fills in
//! `SID_MSG / CID_MSG_DATA` by itself. The id constants below are taken from the generated proto
//! enums, so they cannot drift from `pb/IM.BaseDefine.proto` and `pb/IM.Admin.proto`.

use crate::pb::im::{
    admin, base_define as base, buddy, file, group, login, message, other, server, switch_service,
};
use crate::required::RequiredFields;

/// A message that is the body of one command.
pub trait Command: prost::Message + Default + RequiredFields + 'static {
    /// Service id written in the header.
    const SERVICE_ID: u16;
    /// Command id written in the header.
    const COMMAND_ID: u16;
    /// TeamTalk's name of the command, e.g. `CID_MSG_DATA`.
    const NAME: &'static str;
}

/// A command that a client sends and whose answer comes back with the same seq_num.
pub trait Request: Command {
    /// The answer's message.
    type Response: Command;
}

/// Generic code over message types, see [`visit_body_type`].
pub trait BodyVisitor {
    /// Called with one message type.
    fn visit<M: Command + std::fmt::Debug>(&mut self);
}

/// Service ids (PROTOCOL.md section 3, plus our `SID_ADMIN`).
pub mod sid {
    use super::{admin, base};

    /// Login, logout, kick, device token, push shield.
    pub const SID_LOGIN: u16 = base::ServiceId::SidLogin as u16;
    /// Recent sessions, users, presence, departments, signature.
    pub const SID_BUDDY_LIST: u16 = base::ServiceId::SidBuddyList as u16;
    /// Messages, acks, unread counters, history.
    pub const SID_MSG: u16 = base::ServiceId::SidMsg as u16;
    /// Groups.
    pub const SID_GROUP: u16 = base::ServiceId::SidGroup as u16;
    /// File transfer.
    pub const SID_FILE: u16 = base::ServiceId::SidFile as u16;
    /// Opaque client-to-client commands.
    pub const SID_SWITCH_SERVICE: u16 = base::ServiceId::SidSwitchService as u16;
    /// Heartbeat and every server-internal command.
    pub const SID_OTHER: u16 = base::ServiceId::SidOther as u16;
    /// Defined by TeamTalk, never used.
    pub const SID_INTERNAL: u16 = base::ServiceId::SidInternal as u16;
    /// Our admin extension (admin ports only).
    pub const SID_ADMIN: u16 = admin::AdminServiceId::SidAdmin as u16;
}

macro_rules! commands {
    ($( $name:ident = $cid:expr, $sid:ident, $msg:ty; )*) => {
        /// Command ids (PROTOCOL.md section 4, plus our admin commands).
        #[allow(missing_docs)]
        pub mod cid {
            use super::*;
            $( pub const $name: u16 = $cid as u16; )*
        }

        $(
            impl Command for $msg {
                const SERVICE_ID: u16 = sid::$sid;
                const COMMAND_ID: u16 = cid::$name;
                const NAME: &'static str = stringify!($name);
            }
        )*

        /// TeamTalk's name of a command id, `None` for ids no command uses.
        pub fn command_name(command_id: u16) -> Option<&'static str> {
            match command_id {
                $( cid::$name => Some(stringify!($name)), )*
                _ => None,
            }
        }

        /// The service id a command belongs to, `None` for unknown ids.
        pub fn service_of(command_id: u16) -> Option<u16> {
            match command_id {
                $( cid::$name => Some(sid::$sid), )*
                _ => None,
            }
        }

        /// Every known command id, in table order (for tests and metrics).
        pub const ALL_COMMANDS: &[u16] = &[ $( cid::$name, )* ];

        /// Calls `visitor.visit::<M>()` with the body type of `command_id`; `false` for ids no
        /// command uses. Lets generic code (fuzzing, debug printing) decode any PDU.
        pub fn visit_body_type<V: BodyVisitor>(command_id: u16, visitor: &mut V) -> bool {
            match command_id {
                $( cid::$name => { visitor.visit::<$msg>(); true } )*
                _ => false,
            }
        }

        /// Calls `visitor.visit::<M>()` for every body type of the table.
        pub fn visit_all_body_types<V: BodyVisitor>(visitor: &mut V) {
            $( visitor.visit::<$msg>(); )*
        }

        #[cfg(test)]
        pub(crate) fn proto_names() -> Vec<(u16, &'static str, &'static str)> {
            vec![ $( (cid::$name, stringify!($name), <$msg as RequiredFields>::SCHEMA.name), )* ]
        }
    };
}

commands! {
    // SID_LOGIN
    CID_LOGIN_REQ_MSGSERVER = base::LoginCmdId::CidLoginReqMsgserver, SID_LOGIN, login::ImMsgServReq;
    CID_LOGIN_RES_MSGSERVER = base::LoginCmdId::CidLoginResMsgserver, SID_LOGIN, login::ImMsgServRsp;
    CID_LOGIN_REQ_USERLOGIN = base::LoginCmdId::CidLoginReqUserlogin, SID_LOGIN, login::ImLoginReq;
    CID_LOGIN_RES_USERLOGIN = base::LoginCmdId::CidLoginResUserlogin, SID_LOGIN, login::ImLoginRes;
    CID_LOGIN_REQ_LOGINOUT = base::LoginCmdId::CidLoginReqLoginout, SID_LOGIN, login::ImLogoutReq;
    CID_LOGIN_RES_LOGINOUT = base::LoginCmdId::CidLoginResLoginout, SID_LOGIN, login::ImLogoutRsp;
    CID_LOGIN_KICK_USER = base::LoginCmdId::CidLoginKickUser, SID_LOGIN, login::ImKickUser;
    CID_LOGIN_REQ_DEVICETOKEN = base::LoginCmdId::CidLoginReqDevicetoken, SID_LOGIN, login::ImDeviceTokenReq;
    CID_LOGIN_RES_DEVICETOKEN = base::LoginCmdId::CidLoginResDevicetoken, SID_LOGIN, login::ImDeviceTokenRsp;
    CID_LOGIN_REQ_KICKPCCLIENT = base::LoginCmdId::CidLoginReqKickpcclient, SID_LOGIN, login::ImKickPcClientReq;
    CID_LOGIN_RES_KICKPCCLIENT = base::LoginCmdId::CidLoginResKickpcclient, SID_LOGIN, login::ImKickPcClientRsp;
    CID_LOGIN_REQ_PUSH_SHIELD = base::LoginCmdId::CidLoginReqPushShield, SID_LOGIN, login::ImPushShieldReq;
    CID_LOGIN_RES_PUSH_SHIELD = base::LoginCmdId::CidLoginResPushShield, SID_LOGIN, login::ImPushShieldRsp;
    CID_LOGIN_REQ_QUERY_PUSH_SHIELD = base::LoginCmdId::CidLoginReqQueryPushShield, SID_LOGIN, login::ImQueryPushShieldReq;
    CID_LOGIN_RES_QUERY_PUSH_SHIELD = base::LoginCmdId::CidLoginResQueryPushShield, SID_LOGIN, login::ImQueryPushShieldRsp;

    // SID_BUDDY_LIST
    CID_BUDDY_LIST_RECENT_CONTACT_SESSION_REQUEST = base::BuddyListCmdId::CidBuddyListRecentContactSessionRequest, SID_BUDDY_LIST, buddy::ImRecentContactSessionReq;
    CID_BUDDY_LIST_RECENT_CONTACT_SESSION_RESPONSE = base::BuddyListCmdId::CidBuddyListRecentContactSessionResponse, SID_BUDDY_LIST, buddy::ImRecentContactSessionRsp;
    CID_BUDDY_LIST_STATUS_NOTIFY = base::BuddyListCmdId::CidBuddyListStatusNotify, SID_BUDDY_LIST, buddy::ImUserStatNotify;
    CID_BUDDY_LIST_USER_INFO_REQUEST = base::BuddyListCmdId::CidBuddyListUserInfoRequest, SID_BUDDY_LIST, buddy::ImUsersInfoReq;
    CID_BUDDY_LIST_USER_INFO_RESPONSE = base::BuddyListCmdId::CidBuddyListUserInfoResponse, SID_BUDDY_LIST, buddy::ImUsersInfoRsp;
    CID_BUDDY_LIST_REMOVE_SESSION_REQ = base::BuddyListCmdId::CidBuddyListRemoveSessionReq, SID_BUDDY_LIST, buddy::ImRemoveSessionReq;
    CID_BUDDY_LIST_REMOVE_SESSION_RES = base::BuddyListCmdId::CidBuddyListRemoveSessionRes, SID_BUDDY_LIST, buddy::ImRemoveSessionRsp;
    CID_BUDDY_LIST_ALL_USER_REQUEST = base::BuddyListCmdId::CidBuddyListAllUserRequest, SID_BUDDY_LIST, buddy::ImAllUserReq;
    CID_BUDDY_LIST_ALL_USER_RESPONSE = base::BuddyListCmdId::CidBuddyListAllUserResponse, SID_BUDDY_LIST, buddy::ImAllUserRsp;
    CID_BUDDY_LIST_USERS_STATUS_REQUEST = base::BuddyListCmdId::CidBuddyListUsersStatusRequest, SID_BUDDY_LIST, buddy::ImUsersStatReq;
    CID_BUDDY_LIST_USERS_STATUS_RESPONSE = base::BuddyListCmdId::CidBuddyListUsersStatusResponse, SID_BUDDY_LIST, buddy::ImUsersStatRsp;
    CID_BUDDY_LIST_CHANGE_AVATAR_REQUEST = base::BuddyListCmdId::CidBuddyListChangeAvatarRequest, SID_BUDDY_LIST, buddy::ImChangeAvatarReq;
    CID_BUDDY_LIST_CHANGE_AVATAR_RESPONSE = base::BuddyListCmdId::CidBuddyListChangeAvatarResponse, SID_BUDDY_LIST, buddy::ImChangeAvatarRsp;
    CID_BUDDY_LIST_PC_LOGIN_STATUS_NOTIFY = base::BuddyListCmdId::CidBuddyListPcLoginStatusNotify, SID_BUDDY_LIST, buddy::ImpcLoginStatusNotify;
    CID_BUDDY_LIST_REMOVE_SESSION_NOTIFY = base::BuddyListCmdId::CidBuddyListRemoveSessionNotify, SID_BUDDY_LIST, buddy::ImRemoveSessionNotify;
    CID_BUDDY_LIST_DEPARTMENT_REQUEST = base::BuddyListCmdId::CidBuddyListDepartmentRequest, SID_BUDDY_LIST, buddy::ImDepartmentReq;
    CID_BUDDY_LIST_DEPARTMENT_RESPONSE = base::BuddyListCmdId::CidBuddyListDepartmentResponse, SID_BUDDY_LIST, buddy::ImDepartmentRsp;
    CID_BUDDY_LIST_AVATAR_CHANGED_NOTIFY = base::BuddyListCmdId::CidBuddyListAvatarChangedNotify, SID_BUDDY_LIST, buddy::ImAvatarChangedNotify;
    CID_BUDDY_LIST_CHANGE_SIGN_INFO_REQUEST = base::BuddyListCmdId::CidBuddyListChangeSignInfoRequest, SID_BUDDY_LIST, buddy::ImChangeSignInfoReq;
    CID_BUDDY_LIST_CHANGE_SIGN_INFO_RESPONSE = base::BuddyListCmdId::CidBuddyListChangeSignInfoResponse, SID_BUDDY_LIST, buddy::ImChangeSignInfoRsp;
    CID_BUDDY_LIST_SIGN_INFO_CHANGED_NOTIFY = base::BuddyListCmdId::CidBuddyListSignInfoChangedNotify, SID_BUDDY_LIST, buddy::ImSignInfoChangedNotify;

    // SID_MSG
    CID_MSG_DATA = base::MessageCmdId::CidMsgData, SID_MSG, message::ImMsgData;
    CID_MSG_DATA_ACK = base::MessageCmdId::CidMsgDataAck, SID_MSG, message::ImMsgDataAck;
    CID_MSG_READ_ACK = base::MessageCmdId::CidMsgReadAck, SID_MSG, message::ImMsgDataReadAck;
    CID_MSG_READ_NOTIFY = base::MessageCmdId::CidMsgReadNotify, SID_MSG, message::ImMsgDataReadNotify;
    CID_MSG_TIME_REQUEST = base::MessageCmdId::CidMsgTimeRequest, SID_MSG, message::ImClientTimeReq;
    CID_MSG_TIME_RESPONSE = base::MessageCmdId::CidMsgTimeResponse, SID_MSG, message::ImClientTimeRsp;
    CID_MSG_UNREAD_CNT_REQUEST = base::MessageCmdId::CidMsgUnreadCntRequest, SID_MSG, message::ImUnreadMsgCntReq;
    CID_MSG_UNREAD_CNT_RESPONSE = base::MessageCmdId::CidMsgUnreadCntResponse, SID_MSG, message::ImUnreadMsgCntRsp;
    CID_MSG_LIST_REQUEST = base::MessageCmdId::CidMsgListRequest, SID_MSG, message::ImGetMsgListReq;
    CID_MSG_LIST_RESPONSE = base::MessageCmdId::CidMsgListResponse, SID_MSG, message::ImGetMsgListRsp;
    CID_MSG_GET_LATEST_MSG_ID_REQ = base::MessageCmdId::CidMsgGetLatestMsgIdReq, SID_MSG, message::ImGetLatestMsgIdReq;
    CID_MSG_GET_LATEST_MSG_ID_RSP = base::MessageCmdId::CidMsgGetLatestMsgIdRsp, SID_MSG, message::ImGetLatestMsgIdRsp;
    CID_MSG_GET_BY_MSG_ID_REQ = base::MessageCmdId::CidMsgGetByMsgIdReq, SID_MSG, message::ImGetMsgByIdReq;
    CID_MSG_GET_BY_MSG_ID_RES = base::MessageCmdId::CidMsgGetByMsgIdRes, SID_MSG, message::ImGetMsgByIdRsp;

    // SID_GROUP
    CID_GROUP_NORMAL_LIST_REQUEST = base::GroupCmdId::CidGroupNormalListRequest, SID_GROUP, group::ImNormalGroupListReq;
    CID_GROUP_NORMAL_LIST_RESPONSE = base::GroupCmdId::CidGroupNormalListResponse, SID_GROUP, group::ImNormalGroupListRsp;
    CID_GROUP_INFO_REQUEST = base::GroupCmdId::CidGroupInfoRequest, SID_GROUP, group::ImGroupInfoListReq;
    CID_GROUP_INFO_RESPONSE = base::GroupCmdId::CidGroupInfoResponse, SID_GROUP, group::ImGroupInfoListRsp;
    CID_GROUP_CREATE_REQUEST = base::GroupCmdId::CidGroupCreateRequest, SID_GROUP, group::ImGroupCreateReq;
    CID_GROUP_CREATE_RESPONSE = base::GroupCmdId::CidGroupCreateResponse, SID_GROUP, group::ImGroupCreateRsp;
    CID_GROUP_CHANGE_MEMBER_REQUEST = base::GroupCmdId::CidGroupChangeMemberRequest, SID_GROUP, group::ImGroupChangeMemberReq;
    CID_GROUP_CHANGE_MEMBER_RESPONSE = base::GroupCmdId::CidGroupChangeMemberResponse, SID_GROUP, group::ImGroupChangeMemberRsp;
    CID_GROUP_SHIELD_GROUP_REQUEST = base::GroupCmdId::CidGroupShieldGroupRequest, SID_GROUP, group::ImGroupShieldReq;
    CID_GROUP_SHIELD_GROUP_RESPONSE = base::GroupCmdId::CidGroupShieldGroupResponse, SID_GROUP, group::ImGroupShieldRsp;
    CID_GROUP_CHANGE_MEMBER_NOTIFY = base::GroupCmdId::CidGroupChangeMemberNotify, SID_GROUP, group::ImGroupChangeMemberNotify;

    // SID_FILE
    CID_FILE_LOGIN_REQ = base::FileCmdId::CidFileLoginReq, SID_FILE, file::ImFileLoginReq;
    CID_FILE_LOGIN_RES = base::FileCmdId::CidFileLoginRes, SID_FILE, file::ImFileLoginRsp;
    CID_FILE_STATE = base::FileCmdId::CidFileState, SID_FILE, file::ImFileState;
    CID_FILE_PULL_DATA_REQ = base::FileCmdId::CidFilePullDataReq, SID_FILE, file::ImFilePullDataReq;
    CID_FILE_PULL_DATA_RSP = base::FileCmdId::CidFilePullDataRsp, SID_FILE, file::ImFilePullDataRsp;
    CID_FILE_REQUEST = base::FileCmdId::CidFileRequest, SID_FILE, file::ImFileReq;
    CID_FILE_RESPONSE = base::FileCmdId::CidFileResponse, SID_FILE, file::ImFileRsp;
    CID_FILE_NOTIFY = base::FileCmdId::CidFileNotify, SID_FILE, file::ImFileNotify;
    CID_FILE_HAS_OFFLINE_REQ = base::FileCmdId::CidFileHasOfflineReq, SID_FILE, file::ImFileHasOfflineReq;
    CID_FILE_HAS_OFFLINE_RES = base::FileCmdId::CidFileHasOfflineRes, SID_FILE, file::ImFileHasOfflineRsp;
    CID_FILE_ADD_OFFLINE_REQ = base::FileCmdId::CidFileAddOfflineReq, SID_FILE, file::ImFileAddOfflineReq;
    CID_FILE_DEL_OFFLINE_REQ = base::FileCmdId::CidFileDelOfflineReq, SID_FILE, file::ImFileDelOfflineReq;

    // SID_SWITCH_SERVICE
    CID_SWITCH_P2P_CMD = base::SwitchServiceCmdId::CidSwitchP2pCmd, SID_SWITCH_SERVICE, switch_service::Imp2pCmdMsg;

    // SID_OTHER
    CID_OTHER_HEARTBEAT = base::OtherCmdId::CidOtherHeartbeat, SID_OTHER, other::ImHeartBeat;
    CID_OTHER_STOP_RECV_PACKET = base::OtherCmdId::CidOtherStopRecvPacket, SID_OTHER, server::ImStopReceivePacket;
    CID_OTHER_VALIDATE_REQ = base::OtherCmdId::CidOtherValidateReq, SID_OTHER, server::ImValidateReq;
    CID_OTHER_VALIDATE_RSP = base::OtherCmdId::CidOtherValidateRsp, SID_OTHER, server::ImValidateRsp;
    CID_OTHER_GET_DEVICE_TOKEN_REQ = base::OtherCmdId::CidOtherGetDeviceTokenReq, SID_OTHER, server::ImGetDeviceTokenReq;
    CID_OTHER_GET_DEVICE_TOKEN_RSP = base::OtherCmdId::CidOtherGetDeviceTokenRsp, SID_OTHER, server::ImGetDeviceTokenRsp;
    CID_OTHER_ROLE_SET = base::OtherCmdId::CidOtherRoleSet, SID_OTHER, server::ImRoleSet;
    CID_OTHER_ONLINE_USER_INFO = base::OtherCmdId::CidOtherOnlineUserInfo, SID_OTHER, server::ImOnlineUserInfo;
    CID_OTHER_MSG_SERV_INFO = base::OtherCmdId::CidOtherMsgServInfo, SID_OTHER, server::ImMsgServInfo;
    CID_OTHER_USER_STATUS_UPDATE = base::OtherCmdId::CidOtherUserStatusUpdate, SID_OTHER, server::ImUserStatusUpdate;
    CID_OTHER_USER_CNT_UPDATE = base::OtherCmdId::CidOtherUserCntUpdate, SID_OTHER, server::ImUserCntUpdate;
    CID_OTHER_SERVER_KICK_USER = base::OtherCmdId::CidOtherServerKickUser, SID_OTHER, server::ImServerKickUser;
    CID_OTHER_LOGIN_STATUS_NOTIFY = base::OtherCmdId::CidOtherLoginStatusNotify, SID_OTHER, server::ImServerPcLoginStatusNotify;
    CID_OTHER_PUSH_TO_USER_REQ = base::OtherCmdId::CidOtherPushToUserReq, SID_OTHER, server::ImPushToUserReq;
    CID_OTHER_PUSH_TO_USER_RSP = base::OtherCmdId::CidOtherPushToUserRsp, SID_OTHER, server::ImPushToUserRsp;
    CID_OTHER_GET_SHIELD_REQ = base::OtherCmdId::CidOtherGetShieldReq, SID_OTHER, server::ImGroupGetShieldReq;
    CID_OTHER_GET_SHIELD_RSP = base::OtherCmdId::CidOtherGetShieldRsp, SID_OTHER, server::ImGroupGetShieldRsp;
    CID_OTHER_FILE_TRANSFER_REQ = base::OtherCmdId::CidOtherFileTransferReq, SID_OTHER, server::ImFileTransferReq;
    CID_OTHER_FILE_TRANSFER_RSP = base::OtherCmdId::CidOtherFileTransferRsp, SID_OTHER, server::ImFileTransferRsp;
    CID_OTHER_FILE_SERVER_IP_REQ = base::OtherCmdId::CidOtherFileServerIpReq, SID_OTHER, server::ImFileServerIpReq;
    CID_OTHER_FILE_SERVER_IP_RSP = base::OtherCmdId::CidOtherFileServerIpRsp, SID_OTHER, server::ImFileServerIpRsp;

    // SID_ADMIN (ours)
    CID_ADMIN_AUTH_REQ = admin::AdminCmdId::CidAdminAuthReq, SID_ADMIN, admin::ImAdminAuthReq;
    CID_ADMIN_AUTH_RSP = admin::AdminCmdId::CidAdminAuthRsp, SID_ADMIN, admin::ImAdminAuthRsp;
    CID_ADMIN_STATS_REQ = admin::AdminCmdId::CidAdminStatsReq, SID_ADMIN, admin::ImAdminStatsReq;
    CID_ADMIN_STATS_RSP = admin::AdminCmdId::CidAdminStatsRsp, SID_ADMIN, admin::ImAdminStatsRsp;
    CID_ADMIN_ROUTE_LIST_REQ = admin::AdminCmdId::CidAdminRouteListReq, SID_ADMIN, admin::ImAdminRouteListReq;
    CID_ADMIN_ROUTE_LIST_RSP = admin::AdminCmdId::CidAdminRouteListRsp, SID_ADMIN, admin::ImAdminRouteListRsp;
    CID_ADMIN_LOCATE_USER_REQ = admin::AdminCmdId::CidAdminLocateUserReq, SID_ADMIN, admin::ImAdminLocateUserReq;
    CID_ADMIN_LOCATE_USER_RSP = admin::AdminCmdId::CidAdminLocateUserRsp, SID_ADMIN, admin::ImAdminLocateUserRsp;
    CID_ADMIN_KICK_USER_REQ = admin::AdminCmdId::CidAdminKickUserReq, SID_ADMIN, admin::ImAdminKickUserReq;
    CID_ADMIN_KICK_USER_RSP = admin::AdminCmdId::CidAdminKickUserRsp, SID_ADMIN, admin::ImAdminKickUserRsp;
    CID_ADMIN_DRAIN_REQ = admin::AdminCmdId::CidAdminDrainReq, SID_ADMIN, admin::ImAdminDrainReq;
    CID_ADMIN_DRAIN_RSP = admin::AdminCmdId::CidAdminDrainRsp, SID_ADMIN, admin::ImAdminDrainRsp;
    CID_ADMIN_MSG_SERVER_LIST_REQ = admin::AdminCmdId::CidAdminMsgServerListReq, SID_ADMIN, admin::ImAdminMsgServerListReq;
    CID_ADMIN_MSG_SERVER_LIST_RSP = admin::AdminCmdId::CidAdminMsgServerListRsp, SID_ADMIN, admin::ImAdminMsgServerListRsp;
    CID_ADMIN_CONN_LIST_REQ = admin::AdminCmdId::CidAdminConnListReq, SID_ADMIN, admin::ImAdminConnListReq;
    CID_ADMIN_CONN_LIST_RSP = admin::AdminCmdId::CidAdminConnListRsp, SID_ADMIN, admin::ImAdminConnListRsp;
    CID_ADMIN_USER_ADD_REQ = admin::AdminCmdId::CidAdminUserAddReq, SID_ADMIN, admin::ImAdminUserAddReq;
    CID_ADMIN_USER_ADD_RSP = admin::AdminCmdId::CidAdminUserAddRsp, SID_ADMIN, admin::ImAdminUserAddRsp;
    CID_ADMIN_USER_LIST_REQ = admin::AdminCmdId::CidAdminUserListReq, SID_ADMIN, admin::ImAdminUserListReq;
    CID_ADMIN_USER_LIST_RSP = admin::AdminCmdId::CidAdminUserListRsp, SID_ADMIN, admin::ImAdminUserListRsp;
    CID_ADMIN_USER_EDIT_REQ = admin::AdminCmdId::CidAdminUserEditReq, SID_ADMIN, admin::ImAdminUserEditReq;
    CID_ADMIN_USER_EDIT_RSP = admin::AdminCmdId::CidAdminUserEditRsp, SID_ADMIN, admin::ImAdminUserEditRsp;
    CID_ADMIN_DEPT_ADD_REQ = admin::AdminCmdId::CidAdminDeptAddReq, SID_ADMIN, admin::ImAdminDeptAddReq;
    CID_ADMIN_DEPT_ADD_RSP = admin::AdminCmdId::CidAdminDeptAddRsp, SID_ADMIN, admin::ImAdminDeptAddRsp;
    CID_ADMIN_DEPT_LIST_REQ = admin::AdminCmdId::CidAdminDeptListReq, SID_ADMIN, admin::ImAdminDeptListReq;
    CID_ADMIN_DEPT_LIST_RSP = admin::AdminCmdId::CidAdminDeptListRsp, SID_ADMIN, admin::ImAdminDeptListRsp;
    CID_ADMIN_GROUP_CREATE_REQ = admin::AdminCmdId::CidAdminGroupCreateReq, SID_ADMIN, admin::ImAdminGroupCreateReq;
    CID_ADMIN_GROUP_CREATE_RSP = admin::AdminCmdId::CidAdminGroupCreateRsp, SID_ADMIN, admin::ImAdminGroupCreateRsp;
    CID_ADMIN_GROUP_LIST_REQ = admin::AdminCmdId::CidAdminGroupListReq, SID_ADMIN, admin::ImAdminGroupListReq;
    CID_ADMIN_GROUP_LIST_RSP = admin::AdminCmdId::CidAdminGroupListRsp, SID_ADMIN, admin::ImAdminGroupListRsp;
    CID_ADMIN_GROUP_MEMBERS_REQ = admin::AdminCmdId::CidAdminGroupMembersReq, SID_ADMIN, admin::ImAdminGroupMembersReq;
    CID_ADMIN_GROUP_MEMBERS_RSP = admin::AdminCmdId::CidAdminGroupMembersRsp, SID_ADMIN, admin::ImAdminGroupMembersRsp;
    CID_ADMIN_DISCOVERY_LIST_REQ = admin::AdminCmdId::CidAdminDiscoveryListReq, SID_ADMIN, admin::ImAdminDiscoveryListReq;
    CID_ADMIN_DISCOVERY_LIST_RSP = admin::AdminCmdId::CidAdminDiscoveryListRsp, SID_ADMIN, admin::ImAdminDiscoveryListRsp;
    CID_ADMIN_DISCOVERY_ADD_REQ = admin::AdminCmdId::CidAdminDiscoveryAddReq, SID_ADMIN, admin::ImAdminDiscoveryAddReq;
    CID_ADMIN_DISCOVERY_ADD_RSP = admin::AdminCmdId::CidAdminDiscoveryAddRsp, SID_ADMIN, admin::ImAdminDiscoveryAddRsp;
    CID_ADMIN_DISCOVERY_REMOVE_REQ = admin::AdminCmdId::CidAdminDiscoveryRemoveReq, SID_ADMIN, admin::ImAdminDiscoveryRemoveReq;
    CID_ADMIN_DISCOVERY_REMOVE_RSP = admin::AdminCmdId::CidAdminDiscoveryRemoveRsp, SID_ADMIN, admin::ImAdminDiscoveryRemoveRsp;
    CID_ADMIN_SEND_MSG_REQ = admin::AdminCmdId::CidAdminSendMsgReq, SID_ADMIN, admin::ImAdminSendMsgReq;
    CID_ADMIN_SEND_MSG_RSP = admin::AdminCmdId::CidAdminSendMsgRsp, SID_ADMIN, admin::ImAdminSendMsgRsp;
    CID_ADMIN_REMOVE_TOKEN_REQ = admin::AdminCmdId::CidAdminRemoveTokenReq, SID_ADMIN, admin::ImAdminRemoveTokenReq;
    CID_ADMIN_REMOVE_TOKEN_RSP = admin::AdminCmdId::CidAdminRemoveTokenRsp, SID_ADMIN, admin::ImAdminRemoveTokenRsp;
    CID_ADMIN_GROUP_NOTIFY_REQ = admin::AdminCmdId::CidAdminGroupNotifyReq, SID_ADMIN, admin::ImAdminGroupNotifyReq;
    CID_ADMIN_GROUP_NOTIFY_RSP = admin::AdminCmdId::CidAdminGroupNotifyRsp, SID_ADMIN, admin::ImAdminGroupNotifyRsp;
    CID_ADMIN_MSG_SERV_TLS_INFO = admin::AdminCmdId::CidAdminMsgServTlsInfo, SID_ADMIN, admin::ImAdminMsgServTlsInfo;
}

macro_rules! requests {
    ($( $req:ty => $rsp:ty; )*) => {
        $( impl Request for $req { type Response = $rsp; } )*
    };
}

requests! {
    // Client -> login_server (legacy TCP) and client -> msg_server.
    login::ImMsgServReq => login::ImMsgServRsp;
    login::ImLoginReq => login::ImLoginRes;
    login::ImLogoutReq => login::ImLogoutRsp;
    login::ImDeviceTokenReq => login::ImDeviceTokenRsp;
    login::ImKickPcClientReq => login::ImKickPcClientRsp;
    login::ImPushShieldReq => login::ImPushShieldRsp;
    login::ImQueryPushShieldReq => login::ImQueryPushShieldRsp;
    buddy::ImRecentContactSessionReq => buddy::ImRecentContactSessionRsp;
    buddy::ImUsersInfoReq => buddy::ImUsersInfoRsp;
    buddy::ImRemoveSessionReq => buddy::ImRemoveSessionRsp;
    buddy::ImAllUserReq => buddy::ImAllUserRsp;
    buddy::ImUsersStatReq => buddy::ImUsersStatRsp;
    buddy::ImChangeAvatarReq => buddy::ImChangeAvatarRsp;
    buddy::ImDepartmentReq => buddy::ImDepartmentRsp;
    buddy::ImChangeSignInfoReq => buddy::ImChangeSignInfoRsp;
    // The sender's "stored" ack comes back with the seq of its IMMsgData.
    message::ImMsgData => message::ImMsgDataAck;
    message::ImClientTimeReq => message::ImClientTimeRsp;
    message::ImUnreadMsgCntReq => message::ImUnreadMsgCntRsp;
    message::ImGetMsgListReq => message::ImGetMsgListRsp;
    message::ImGetLatestMsgIdReq => message::ImGetLatestMsgIdRsp;
    message::ImGetMsgByIdReq => message::ImGetMsgByIdRsp;
    group::ImNormalGroupListReq => group::ImNormalGroupListRsp;
    group::ImGroupInfoListReq => group::ImGroupInfoListRsp;
    group::ImGroupCreateReq => group::ImGroupCreateRsp;
    group::ImGroupChangeMemberReq => group::ImGroupChangeMemberRsp;
    group::ImGroupShieldReq => group::ImGroupShieldRsp;
    file::ImFileReq => file::ImFileRsp;
    file::ImFileHasOfflineReq => file::ImFileHasOfflineRsp;
    file::ImFileLoginReq => file::ImFileLoginRsp;
    // The heartbeat is echoed with the same seq by msg_server, file_server and push_server.
    other::ImHeartBeat => other::ImHeartBeat;
    // Server -> db_proxy / file_server / push_server requests.
    server::ImValidateReq => server::ImValidateRsp;
    server::ImGetDeviceTokenReq => server::ImGetDeviceTokenRsp;
    server::ImGroupGetShieldReq => server::ImGroupGetShieldRsp;
    server::ImFileTransferReq => server::ImFileTransferRsp;
    server::ImFileServerIpReq => server::ImFileServerIpRsp;
    server::ImPushToUserReq => server::ImPushToUserRsp;
    // Admin extension.
    admin::ImAdminAuthReq => admin::ImAdminAuthRsp;
    admin::ImAdminStatsReq => admin::ImAdminStatsRsp;
    admin::ImAdminRouteListReq => admin::ImAdminRouteListRsp;
    admin::ImAdminLocateUserReq => admin::ImAdminLocateUserRsp;
    admin::ImAdminKickUserReq => admin::ImAdminKickUserRsp;
    admin::ImAdminDrainReq => admin::ImAdminDrainRsp;
    admin::ImAdminMsgServerListReq => admin::ImAdminMsgServerListRsp;
    admin::ImAdminConnListReq => admin::ImAdminConnListRsp;
    admin::ImAdminUserAddReq => admin::ImAdminUserAddRsp;
    admin::ImAdminUserListReq => admin::ImAdminUserListRsp;
    admin::ImAdminUserEditReq => admin::ImAdminUserEditRsp;
    admin::ImAdminDeptAddReq => admin::ImAdminDeptAddRsp;
    admin::ImAdminDeptListReq => admin::ImAdminDeptListRsp;
    admin::ImAdminGroupCreateReq => admin::ImAdminGroupCreateRsp;
    admin::ImAdminGroupListReq => admin::ImAdminGroupListRsp;
    admin::ImAdminGroupMembersReq => admin::ImAdminGroupMembersRsp;
    admin::ImAdminDiscoveryListReq => admin::ImAdminDiscoveryListRsp;
    admin::ImAdminDiscoveryAddReq => admin::ImAdminDiscoveryAddRsp;
    admin::ImAdminDiscoveryRemoveReq => admin::ImAdminDiscoveryRemoveRsp;
    admin::ImAdminSendMsgReq => admin::ImAdminSendMsgRsp;
    admin::ImAdminRemoveTokenReq => admin::ImAdminRemoveTokenRsp;
    admin::ImAdminGroupNotifyReq => admin::ImAdminGroupNotifyRsp;
}

/// True when a client type is of the mobile class (high nibble 1: iOS 0x11, Android 0x12).
pub const fn is_mobile_client(client_type: u32) -> bool {
    client_type & 0x10 != 0
}

/// True when two client types are of the same class (PC or mobile), FLOWS.md 4.1.
pub const fn same_client_class(a: u32, b: u32) -> bool {
    (a ^ b) >> 4 == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_is_complete_and_unique() {
        let names = proto_names();
        // 95 TeamTalk commands + 45 admin commands.
        assert_eq!(names.len(), 95 + 45);
        let mut ids: Vec<u16> = names.iter().map(|n| n.0).collect();
        ids.sort_unstable();
        ids.dedup();
        assert_eq!(ids.len(), names.len(), "duplicate command id");
    }

    #[test]
    fn names_match_the_proto_enums() {
        for (id, name, _) in proto_names() {
            let proto_name = base::LoginCmdId::try_from(i32::from(id))
                .map(|e| e.as_str_name())
                .or_else(|_| base::BuddyListCmdId::try_from(i32::from(id)).map(|e| e.as_str_name()))
                .or_else(|_| base::MessageCmdId::try_from(i32::from(id)).map(|e| e.as_str_name()))
                .or_else(|_| base::GroupCmdId::try_from(i32::from(id)).map(|e| e.as_str_name()))
                .or_else(|_| base::FileCmdId::try_from(i32::from(id)).map(|e| e.as_str_name()))
                .or_else(|_| {
                    base::SwitchServiceCmdId::try_from(i32::from(id)).map(|e| e.as_str_name())
                })
                .or_else(|_| base::OtherCmdId::try_from(i32::from(id)).map(|e| e.as_str_name()))
                .or_else(|_| admin::AdminCmdId::try_from(i32::from(id)).map(|e| e.as_str_name()));
            assert_eq!(proto_name, Ok(name), "command {id:#06x}");
        }
    }

    #[test]
    fn service_is_the_high_byte_except_admin() {
        for &id in ALL_COMMANDS {
            let sid = service_of(id).unwrap_or(0);
            if sid == sid::SID_ADMIN {
                assert_eq!(id >> 8, 0x10);
            } else {
                assert_eq!(id >> 8, sid, "command {id:#06x}");
            }
        }
    }

    #[test]
    fn body_messages_follow_protocol_md() {
        // Spot checks of section 4's Body column, including the irregular names.
        let find = |cid: u16| proto_names().into_iter().find(|n| n.0 == cid).map(|n| n.2);
        assert_eq!(find(cid::CID_MSG_DATA), Some("IM.Message.IMMsgData"));
        assert_eq!(
            find(cid::CID_OTHER_GET_SHIELD_REQ),
            Some("IM.Server.IMGroupGetShieldReq")
        );
        assert_eq!(
            find(cid::CID_OTHER_FILE_TRANSFER_REQ),
            Some("IM.Server.IMFileTransferReq")
        );
        assert_eq!(cid::CID_OTHER_FILE_TRANSFER_REQ, 0x0731);
        assert_eq!(
            find(cid::CID_OTHER_LOGIN_STATUS_NOTIFY),
            Some("IM.Server.IMServerPCLoginStatusNotify")
        );
        assert_eq!(
            find(cid::CID_BUDDY_LIST_PC_LOGIN_STATUS_NOTIFY),
            Some("IM.Buddy.IMPCLoginStatusNotify")
        );
        assert_eq!(command_name(0x070c), None);
    }

    #[test]
    fn client_classes() {
        assert!(!is_mobile_client(0x01) && !is_mobile_client(0x02));
        assert!(is_mobile_client(0x11) && is_mobile_client(0x12));
        assert!(same_client_class(0x01, 0x02) && same_client_class(0x11, 0x12));
        assert!(!same_client_class(0x01, 0x11));
    }
}
