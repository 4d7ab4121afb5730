//! Domain types of the storage layer: our own, independent of the wire (im-proto) types.
//!
//! Ids are `u32` and times are unix seconds, as in the TeamTalk schema (STORAGE.md 1).

use std::fmt;

/// A user id (`IMUser.id`).
pub type UserId = u32;
/// A group id (`IMGroup.id`).
pub type GroupId = u32;
/// A department id (`IMDepart.id`).
pub type DeptId = u32;
/// A per-conversation message id (1, 2, 3... per user pair or per group).
pub type MsgId = u32;
/// Unix time in seconds.
pub type Timestamp = u32;

/// Message type, the values of `IM.BaseDefine.MsgType` (stored in the `type` columns).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum MsgType {
    /// One-to-one text (encrypted by the client).
    SingleText = 0x01,
    /// One-to-one voice.
    SingleAudio = 0x02,
    /// Group text.
    GroupText = 0x11,
    /// Group voice.
    GroupAudio = 0x12,
}

impl MsgType {
    /// From the stored/wire number.
    pub fn from_u32(v: u32) -> Option<MsgType> {
        match v {
            0x01 => Some(MsgType::SingleText),
            0x02 => Some(MsgType::SingleAudio),
            0x11 => Some(MsgType::GroupText),
            0x12 => Some(MsgType::GroupAudio),
            _ => None,
        }
    }

    /// The number stored and sent.
    pub fn as_u32(self) -> u32 {
        self as u32
    }

    /// Group message types have the high nibble 1.
    pub fn is_group(self) -> bool {
        matches!(self, MsgType::GroupText | MsgType::GroupAudio)
    }

    /// Voice messages.
    pub fn is_audio(self) -> bool {
        matches!(self, MsgType::SingleAudio | MsgType::GroupAudio)
    }
}

/// A conversation kind (`IM.BaseDefine.SessionType`, `IMRecentSession.type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum SessionType {
    /// One-to-one.
    Single = 1,
    /// Group.
    Group = 2,
}

impl SessionType {
    /// From the stored/wire number.
    pub fn from_u32(v: u32) -> Option<SessionType> {
        match v {
            1 => Some(SessionType::Single),
            2 => Some(SessionType::Group),
            _ => None,
        }
    }
}

/// Group kind (`IMGroup.type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum GroupKind {
    /// Fixed group, created by admins; listed by the normal-group list.
    Normal = 1,
    /// Temporary group, the only kind clients may create.
    Temporary = 2,
}

impl GroupKind {
    /// From the stored/wire number.
    pub fn from_u32(v: u32) -> Option<GroupKind> {
        match v {
            1 => Some(GroupKind::Normal),
            2 => Some(GroupKind::Temporary),
            _ => None,
        }
    }
}

/// A user account (`IMUser`), without its password columns.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct User {
    /// `id`.
    pub id: UserId,
    /// `sex`: 1 male, 2 female, 0 unknown.
    pub sex: u8,
    /// `name`: the login name.
    pub name: String,
    /// `domain`: pinyin of the name.
    pub domain: String,
    /// `nick`.
    pub nick: String,
    /// `phone`.
    pub phone: String,
    /// `email`.
    pub email: String,
    /// `avatar` URL.
    pub avatar: String,
    /// `departId`.
    pub depart_id: DeptId,
    /// `status`: 0 active (may log in), 1 probation, 2 regular, 3 left, 4 intern.
    pub status: u8,
    /// `sign_info`: personal signature.
    pub sign_info: String,
    /// `push_shield_status`: night-time push mute.
    pub push_shield: bool,
    /// `created`.
    pub created: Timestamp,
    /// `updated`: the incremental-sync watermark.
    pub updated: Timestamp,
}

/// What a login check needs (`IMUser.password`, `salt`, `status`, plus our optional argon2id
/// side table), and the user's row for the login answer: one query per login.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    /// The user's row (`user.status`: only 0 may log in), read with the password data so
    /// that a login needs a single round trip to the database.
    pub user: User,
    /// `IMUser.password`: md5hex(md5hex(plain) + salt).
    pub legacy_hash: String,
    /// `IMUser.salt`: decimal text 0..9999.
    pub salt: String,
    /// argon2id PHC string over the client digest, when hardening is on and the user has
    /// logged in since.
    pub argon2: Option<String>,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Password material never reaches logs.
        f.debug_struct("Credentials")
            .field("user_id", &self.user.id)
            .field("status", &self.user.status)
            .finish_non_exhaustive()
    }
}

/// A department (`IMDepart`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Department {
    /// `id`.
    pub id: DeptId,
    /// `departName`.
    pub name: String,
    /// `priority`: display order.
    pub priority: u32,
    /// `parentId`: 0 = top level.
    pub parent_id: DeptId,
    /// `status`: 0 ok, 1 deleted.
    pub status: u8,
    /// `created`.
    pub created: Timestamp,
    /// `updated`: the sync watermark.
    pub updated: Timestamp,
}

/// Stored content of a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MessageContent {
    /// Text as the client sent it (base64 of the AES cipher text), stored as is.
    Text(Vec<u8>),
    /// A voice message: an `IMAudio` row; the bytes live in msfs at `path`.
    Audio(AudioRef),
}

/// An `IMAudio` row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AudioRef {
    /// `IMAudio.id` (the message row's `content` holds it as decimal text).
    pub id: u32,
    /// `path`: the msfs URL of the audio bytes.
    pub path: String,
    /// `size`: audio byte count.
    pub size: u32,
    /// `duration` in seconds.
    pub duration: u32,
}

/// Content of a message being stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NewContent {
    /// Text bytes as sent by the client.
    Text(Vec<u8>),
    /// Voice already uploaded to msfs: an `IMAudio` row is inserted in the same transaction.
    Audio {
        /// msfs URL.
        path: String,
        /// Audio byte count.
        size: u32,
        /// Duration in seconds.
        duration: u32,
    },
}

/// Identifies a store request so that a retry is never stored twice (Decisions 4): the
/// requesting msg_server's instance id and its own request counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RequestId {
    /// Random id of the msg_server process (stable for its lifetime).
    pub origin: u64,
    /// Monotonic counter within that process.
    pub seq: u64,
}

/// A message to store (single or group, by its type).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewMessage {
    /// Sender (the authenticated user).
    pub from_id: UserId,
    /// Receiver user id (single types) or group id (group types).
    pub to_id: u32,
    /// Type; decides single/group and text/voice.
    pub msg_type: MsgType,
    /// Content.
    pub content: NewContent,
    /// Creation time set by msg_server.
    pub created: Timestamp,
    /// De-duplication key for retried requests.
    pub request_id: Option<RequestId>,
}

/// Result of storing a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreOutcome {
    /// Durably stored with this id.
    Stored(MsgId),
    /// A retry of a request stored earlier; this is the id it got then (nothing stored now).
    Duplicate(MsgId),
    /// Group message to a group that does not exist.
    NoSuchGroup,
    /// Group message from a user who is not a member.
    NotMember,
}

/// A message as read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredMessage {
    /// Per-conversation id.
    pub msg_id: MsgId,
    /// Sender.
    pub from_id: UserId,
    /// Creation time.
    pub created: Timestamp,
    /// Type.
    pub msg_type: MsgType,
    /// Content (voice as a reference; db_proxy fetches the bytes from msfs).
    pub content: MessageContent,
}

/// One entry of a user's recent-session list, with the conversation's newest message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionSummary {
    /// Peer user id or group id.
    pub peer_id: u32,
    /// Single or group.
    pub session_type: SessionType,
    /// `IMRecentSession.updated`.
    pub updated: Timestamp,
    /// Newest visible message of the conversation.
    pub last: StoredMessage,
}

/// One session with unread messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnreadSummary {
    /// Peer user id or group id.
    pub peer_id: u32,
    /// Single or group.
    pub session_type: SessionType,
    /// Unread count.
    pub count: u32,
    /// Newest message of the conversation.
    pub last: StoredMessage,
}

/// Platform of a push token, from the stored `ios:`/`android:` prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TokenKind {
    /// Apple (APNs).
    Ios,
    /// Android (FCM).
    Android,
    /// Stored without a known prefix (other client types); never pushed by the original.
    Other,
}

/// A user's device token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceToken {
    /// Owner.
    pub user_id: UserId,
    /// Platform.
    pub kind: TokenKind,
    /// The token itself (hex for iOS).
    pub token: String,
}

/// A group with its members.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Group {
    /// `id`.
    pub id: GroupId,
    /// `name`.
    pub name: String,
    /// `avatar`.
    pub avatar: String,
    /// `creator` (0 when created by an admin / http_msg_server).
    pub creator: UserId,
    /// `type`.
    pub kind: GroupKind,
    /// `version`: +1 on every membership change.
    pub version: u32,
    /// `status`: 0 normal, 1 deleted.
    pub status: u8,
    /// `lastChated`.
    pub last_chated: Timestamp,
    /// `created`.
    pub created: Timestamp,
    /// `updated`.
    pub updated: Timestamp,
    /// Current members with their join times (unordered).
    pub members: Vec<GroupMember>,
}

/// A current member of a group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GroupMember {
    /// Member.
    pub user_id: UserId,
    /// Time the user (re)joined; group history is visible from here on.
    pub joined: Timestamp,
}

/// A group to create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewGroup {
    /// Creator (0 for admin-created groups). Not added as a member unless listed.
    pub creator: UserId,
    /// Name (non-empty).
    pub name: String,
    /// Avatar URL (may be empty).
    pub avatar: String,
    /// Kind.
    pub kind: GroupKind,
    /// Initial members (non-empty; duplicates ignored).
    pub members: Vec<UserId>,
}

/// Add or remove members.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemberChange {
    /// `GROUP_MODIFY_TYPE_ADD`.
    Add,
    /// `GROUP_MODIFY_TYPE_DEL`.
    Remove,
}

/// Result of a membership change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChangeOutcome {
    /// Done.
    Changed {
        /// Members after the change.
        current: Vec<UserId>,
        /// Ids actually added, or the ids asked to be removed.
        changed: Vec<UserId>,
        /// The group's new version.
        version: u32,
    },
    /// No such group.
    NoSuchGroup,
    /// The requester may not do this (FLOWS.md 12.4 permission rules).
    Denied,
    /// Everyone asked to be added already is a member.
    NothingToChange,
}

/// Result of a per-user group setting change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShieldOutcome {
    /// Stored.
    Done,
    /// The user is not a member.
    NotMember,
    /// No such group.
    NoSuchGroup,
}

/// An offline file record (`IMTransmitFile`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OfflineFile {
    /// `id`.
    pub id: u32,
    /// Uploader.
    pub from_id: UserId,
    /// Receiver.
    pub to_id: UserId,
    /// File name.
    pub file_name: String,
    /// Size in bytes.
    pub size: u32,
    /// file_server task id (UUID text).
    pub task_id: String,
    /// `created`.
    pub created: Timestamp,
}

/// A "discovery" link (`IMDiscovery`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiscoveryItem {
    /// `id`.
    pub id: u32,
    /// `itemName`.
    pub name: String,
    /// `itemUrl`.
    pub url: String,
    /// `itemPriority`.
    pub priority: u32,
    /// `status`: 0 visible.
    pub status: u8,
}

/// A user to create (admin).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NewUser {
    /// Login name (unique among users that are not `status` 3).
    pub name: String,
    /// Plain password; stored in the original format md5hex(md5hex(plain) + salt).
    pub password: String,
    /// Nickname.
    pub nick: String,
    /// 0 unknown, 1 male, 2 female.
    pub sex: u8,
    /// Pinyin / domain name.
    pub domain: String,
    /// Phone.
    pub phone: String,
    /// E-mail.
    pub email: String,
    /// Avatar URL.
    pub avatar: String,
    /// Department.
    pub depart_id: DeptId,
    /// Status (0 = may log in).
    pub status: u8,
}

/// Profile changes (admin); `None` leaves a column as it is. Every change bumps `updated`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct UserPatch {
    /// New nickname.
    pub nick: Option<String>,
    /// New sex.
    pub sex: Option<u8>,
    /// New domain.
    pub domain: Option<String>,
    /// New phone.
    pub phone: Option<String>,
    /// New e-mail.
    pub email: Option<String>,
    /// New avatar URL.
    pub avatar: Option<String>,
    /// New department.
    pub depart_id: Option<DeptId>,
    /// New status (3 = disabled / left).
    pub status: Option<u8>,
    /// New plain password (re-hashed with the existing salt, as the original admin does).
    pub password: Option<String>,
}
