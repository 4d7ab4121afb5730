//! The store: every read and write db_proxy_server (and `imctl`'s admin and migrate commands)
//! performs, as business operations rather than raw SQL, so that each backend can make them
//! transactional and fast in its own way (SQLite: one writer thread with group commit;
//! MySQL: batched transactions, then Redis).
//!
//! Semantics are the original's (STORAGE.md section 4, FLOWS.md sections 6-12) except where
//! WEAKNESSES.md lists a defect, which is fixed; the notes on each method say how.
//!
//! Ordering contract (Decisions 6): every write method submits its work when it is called,
//! before the returned future is first polled (implement them as plain `fn`s that enqueue and
//! then return `async move { reply.await }`, not as `async fn`s). db_proxy can therefore call
//! them in arrival order, spawn the futures, and keep reading: writes are applied in the order
//! of the calls, while replies complete concurrently. Reads have no ordering guarantee beyond
//! seeing every write whose future has completed.
//!
//! Durability contract (Decisions 4 and 5): a write method returns `Ok` only after its effect
//! is durable (committed with the configured durability, SQLite `synchronous=FULL` /
//! `innodb_flush_log_at_trx_commit=1` by default). Writes of one conversation submitted in
//! order are applied in that order (Decisions 6). Multi-step writes are one transaction
//! (WEAKNESSES 28); cache updates (Redis) follow the database commit (Decisions 11).

use std::future::Future;

use crate::error::StorageResult;
use crate::types::*;

/// Storage operations, implemented by the SQLite and the MySQL(+Redis) backends;
/// db_proxy_server picks one from its `[storage]` config.
pub trait Store: Send + Sync + 'static {
    // ---- accounts and login -------------------------------------------------------------

    /// Password data of the user whose login name is `name` (any status; the caller checks
    /// that status is 0). When several rows share a name (the schema does not forbid it),
    /// the active one with the lowest id.
    fn credentials(
        &self,
        name: &str,
    ) -> impl Future<Output = StorageResult<Option<Credentials>>> + Send;

    /// Stores (or replaces) the argon2id hash of a user (optional hardening, Decisions 9).
    fn set_argon2(&self, user: UserId, phc: &str)
    -> impl Future<Output = StorageResult<()>> + Send;

    /// Users by id, any status; unknown ids are skipped. Order not specified.
    fn users_by_ids(&self, ids: &[UserId])
    -> impl Future<Output = StorageResult<Vec<User>>> + Send;

    /// Incremental user sync (FLOWS.md 10): `since == 0` -> every user with status != 3;
    /// otherwise every user with `updated >= since` (any status, so clients learn who left).
    /// No in-memory gate: admin edits that bump `updated` are always seen (WEAKNESSES 32).
    fn changed_users(
        &self,
        since: Timestamp,
    ) -> impl Future<Output = StorageResult<Vec<User>>> + Send;

    /// Departments with `updated > since` and status 0 or 1 (deleted ones included).
    fn changed_departments(
        &self,
        since: Timestamp,
    ) -> impl Future<Output = StorageResult<Vec<Department>>> + Send;

    /// Sets the signature and bumps `updated`; `false` if the user does not exist. The
    /// caller enforces the 128-byte limit.
    fn set_sign_info(
        &self,
        user: UserId,
        sign: &str,
    ) -> impl Future<Output = StorageResult<bool>> + Send;

    /// Sets `push_shield_status` and bumps `updated`; `false` if the user does not exist.
    fn set_push_shield(
        &self,
        user: UserId,
        on: bool,
    ) -> impl Future<Output = StorageResult<bool>> + Send;

    /// `push_shield_status`, `None` if the user does not exist.
    fn push_shield(&self, user: UserId)
    -> impl Future<Output = StorageResult<Option<bool>>> + Send;

    // ---- push tokens ---------------------------------------------------------------------

    /// Registers `token` for `user` (FLOWS.md 15.4); the kind comes from `client_type`
    /// (0x11 iOS -> `ios:` prefix, 0x12 Android -> `android:`, others bare). An empty token
    /// clears the user's token (logout). The previous token's reverse entry is blanked.
    fn set_device_token(
        &self,
        user: UserId,
        client_type: u32,
        token: &str,
    ) -> impl Future<Output = StorageResult<()>> + Send;

    /// Tokens of these users (users without a token are omitted).
    fn device_tokens(
        &self,
        users: &[UserId],
    ) -> impl Future<Output = StorageResult<Vec<DeviceToken>>> + Send;

    /// Removes `user`'s token only if it still equals `token` (a dead token reported by APNs
    /// or FCM must never remove a newer one). `true` if removed.
    fn remove_device_token_if(
        &self,
        user: UserId,
        token: &str,
    ) -> impl Future<Output = StorageResult<bool>> + Send;

    // ---- messages --------------------------------------------------------------------------

    /// Stores a single or group message (by `msg_type`), durably, and returns its id.
    ///
    /// Single (FLOWS.md 6 step 3): both recent sessions active and touched, the user pair's
    /// relation created if missing (never duplicated, WEAKNESSES 26), the next id of the pair,
    /// the row in `IMMessage_<relateId % 8>` (voice: `IMAudio` row first, content = its id),
    /// the receiver's unread count +1. Group (FLOWS.md 12.6 step 2): the group must exist and
    /// the sender be a member (else `NoSuchGroup` / `NotMember`), the sender's group session,
    /// the next id of the group, the row in `IMGroupMessage_<groupId % 8>`, `lastChated`, the
    /// group's message count +1, the sender's read mark set to it.
    ///
    /// Ids are per conversation, start at 1, increase by one, and are never reused, even
    /// after a cache loss (they resume above the highest stored id, WEAKNESSES 24). A
    /// `request_id` seen before returns `Duplicate` with the first id and stores nothing.
    fn store_message(
        &self,
        msg: NewMessage,
    ) -> impl Future<Output = StorageResult<StoreOutcome>> + Send;

    /// History of one conversation of `user`, newest first, at most `count` messages, only
    /// ids `<= msg_id_begin` when it is not 0. Single: the pair's messages (empty if the pair
    /// never talked; the relation is not created). Group: empty unless `user` is a member;
    /// only messages created at or after the user's join time.
    ///
    /// Newest first is the original's (created desc, row id desc), except for single
    /// conversations on SQLite, which are in message id order (desc): the index their
    /// shards have (see `sqlite/messages.rs`). The two differ only where a message's
    /// `created` is older than an earlier message's.
    fn history(
        &self,
        user: UserId,
        session_type: SessionType,
        peer: u32,
        msg_id_begin: MsgId,
        count: u32,
    ) -> impl Future<Output = StorageResult<Vec<StoredMessage>>> + Send;

    /// The messages with these ids, newest first as [`Store::history`] orders them, at most
    /// 100; same visibility rules.
    fn messages_by_ids(
        &self,
        user: UserId,
        session_type: SessionType,
        peer: u32,
        ids: &[MsgId],
    ) -> impl Future<Output = StorageResult<Vec<StoredMessage>>> + Send;

    /// Id of the newest message of a conversation, 0 if none. Groups: 0 unless `user` is a
    /// member (the original answers non-members, WEAKNESSES 11).
    fn latest_msg_id(
        &self,
        user: UserId,
        session_type: SessionType,
        peer: u32,
    ) -> impl Future<Output = StorageResult<MsgId>> + Send;

    /// Sessions with unread messages (FLOWS.md 7): single ones first, then groups the user is
    /// an active member of; each with its newest message. Entries whose newest message cannot
    /// be found are skipped.
    fn unread(
        &self,
        user: UserId,
    ) -> impl Future<Output = StorageResult<Vec<UnreadSummary>>> + Send;

    /// Total unread (single + group) per user, for push badges; every requested user appears.
    fn unread_totals(
        &self,
        users: &[UserId],
    ) -> impl Future<Output = StorageResult<Vec<(UserId, u32)>>> + Send;

    /// Read ack: clears the whole unread count of that session for `user` (single: the peer's
    /// counter; group: the user's mark becomes the group's count).
    fn clear_unread(
        &self,
        user: UserId,
        session_type: SessionType,
        peer: u32,
    ) -> impl Future<Output = StorageResult<()>> + Send;

    // ---- recent sessions -------------------------------------------------------------------

    /// Active sessions of `user` with `updated > since`, newest first, at most `limit`, each
    /// with its conversation's newest message; sessions without one are dropped.
    fn recent_sessions(
        &self,
        user: UserId,
        since: Timestamp,
        limit: u32,
    ) -> impl Future<Output = StorageResult<Vec<SessionSummary>>> + Send;

    /// Hides a session (status 1, updated now) and clears its unread count; `false` if there
    /// was no active session.
    fn remove_session(
        &self,
        user: UserId,
        session_type: SessionType,
        peer: u32,
    ) -> impl Future<Output = StorageResult<bool>> + Send;

    /// The periodic group-session sync (STORAGE.md 4.6, FLOWS.md 8): for every group with
    /// status 0 and `lastChated >= since` (and != 0), each member's group session gets
    /// `updated = lastChated` (a removed one stays removed), a missing one is created active.
    /// Returns the watermark to pass next time.
    fn sync_group_sessions(
        &self,
        since: Timestamp,
    ) -> impl Future<Output = StorageResult<Timestamp>> + Send;

    // ---- groups ------------------------------------------------------------------------------

    /// Normal (type 1) groups `user` is an active member of, with their versions, ordered
    /// by `updated` desc (FLOWS.md 12.1).
    fn normal_groups(
        &self,
        user: UserId,
    ) -> impl Future<Output = StorageResult<Vec<(GroupId, u32)>>> + Send;

    /// Groups by id with their current members; unknown ids skipped; ordered by `updated`
    /// desc.
    fn groups(&self, ids: &[GroupId]) -> impl Future<Output = StorageResult<Vec<Group>>> + Send;

    /// Creates a group (FLOWS.md 12.3): version 1, members active with join time now, the
    /// group's message counter at 0. Errors with `StorageError::Invalid` on an empty name or
    /// member list.
    fn create_group(&self, group: NewGroup) -> impl Future<Output = StorageResult<GroupId>> + Send;

    /// Adds or removes members (FLOWS.md 12.4). Permission: requester 0 (admin) always;
    /// temporary group + add: members only (the original lets anyone, WEAKNESSES 11);
    /// otherwise only the creator. Add: existing members are dropped from the request
    /// (`NothingToChange` if none remain), old rows reactivated, new ones inserted, join time
    /// now. Remove: rows set to status 1, the removed users' group sessions hidden. On
    /// success the version is bumped and the changed users' unread counts for the group are
    /// cleared.
    fn change_members(
        &self,
        requester: UserId,
        group: GroupId,
        change: MemberChange,
        users: &[UserId],
    ) -> impl Future<Output = StorageResult<ChangeOutcome>> + Send;

    /// Current members with join times; `None` if the group does not exist.
    fn group_members(
        &self,
        group: GroupId,
    ) -> impl Future<Output = StorageResult<Option<Vec<GroupMember>>>> + Send;

    /// Sets whether `user` mutes push for `group` (`group_set_<G>` field `<U>_1`).
    fn set_group_shield(
        &self,
        user: UserId,
        group: GroupId,
        on: bool,
    ) -> impl Future<Output = StorageResult<ShieldOutcome>> + Send;

    /// Push mute per requested user (false when never set); `None` if the group does not
    /// exist.
    fn group_shields(
        &self,
        group: GroupId,
        users: &[UserId],
    ) -> impl Future<Output = StorageResult<Option<Vec<(UserId, bool)>>>> + Send;

    // ---- offline files ---------------------------------------------------------------------

    /// Pending offline files addressed to `user`, oldest first.
    fn offline_files(
        &self,
        user: UserId,
    ) -> impl Future<Output = StorageResult<Vec<OfflineFile>>> + Send;

    /// Records a finished offline upload.
    fn add_offline_file(
        &self,
        from: UserId,
        to: UserId,
        task_id: &str,
        file_name: &str,
        size: u32,
    ) -> impl Future<Output = StorageResult<()>> + Send;

    /// Deletes the record of a downloaded offline file; `true` if one was deleted.
    fn delete_offline_file(
        &self,
        from: UserId,
        to: UserId,
        task_id: &str,
    ) -> impl Future<Output = StorageResult<bool>> + Send;

    /// Removes and returns offline file records created before `before` (expiry).
    fn expire_offline_files(
        &self,
        before: Timestamp,
    ) -> impl Future<Output = StorageResult<Vec<OfflineFile>>> + Send;

    // ---- administration (imctl) ----------------------------------------------------------

    /// Creates a user with a fresh salt; `StorageError::Conflict` if an active user (status
    /// != 3) already has that name.
    fn add_user(&self, user: NewUser) -> impl Future<Output = StorageResult<UserId>> + Send;

    /// Applies a profile change and bumps `updated`; `false` if the user does not exist.
    fn update_user(
        &self,
        id: UserId,
        patch: UserPatch,
    ) -> impl Future<Output = StorageResult<bool>> + Send;

    /// Users ordered by id, after `after_id`, at most `limit`.
    fn list_users(
        &self,
        after_id: UserId,
        limit: u32,
    ) -> impl Future<Output = StorageResult<Vec<User>>> + Send;

    /// Creates a department.
    fn add_department(
        &self,
        name: &str,
        parent_id: DeptId,
        priority: u32,
    ) -> impl Future<Output = StorageResult<DeptId>> + Send;

    /// Every department, ordered by id.
    fn list_departments(&self) -> impl Future<Output = StorageResult<Vec<Department>>> + Send;

    /// Groups ordered by id, after `after_id`, at most `limit` (with members).
    fn list_groups(
        &self,
        after_id: GroupId,
        limit: u32,
    ) -> impl Future<Output = StorageResult<Vec<Group>>> + Send;

    /// Visible discovery items (status 0), by priority.
    fn discovery(&self) -> impl Future<Output = StorageResult<Vec<DiscoveryItem>>> + Send;

    /// Adds a discovery item.
    fn add_discovery(
        &self,
        name: &str,
        url: &str,
        priority: u32,
    ) -> impl Future<Output = StorageResult<u32>> + Send;

    /// Hides a discovery item; `false` if unknown.
    fn remove_discovery(&self, id: u32) -> impl Future<Output = StorageResult<bool>> + Send;
}
