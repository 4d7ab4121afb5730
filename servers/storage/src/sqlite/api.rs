//! [`Store`] for [`SqliteStore`]: each method copies its arguments and queues a closure on the
//! writer (writes, at call time) or the reader pool (reads).

use std::future::Future;

use crate::error::StorageResult;
use crate::store::Store;
use crate::types::*;

use super::{SqliteStore, admin, files, groups, messages, sessions, tokens, unread, users};

impl Store for SqliteStore {
    fn credentials(
        &self,
        name: &str,
    ) -> impl Future<Output = StorageResult<Option<Credentials>>> + Send {
        let name = name.to_owned();
        self.read(move |c| users::credentials(c, &name))
    }

    fn set_argon2(
        &self,
        user: UserId,
        phc: &str,
    ) -> impl Future<Output = StorageResult<()>> + Send {
        let phc = phc.to_owned();
        self.write(move |tx| users::set_argon2(tx, user, &phc))
    }

    fn users_by_ids(
        &self,
        ids: &[UserId],
    ) -> impl Future<Output = StorageResult<Vec<User>>> + Send {
        let ids = ids.to_vec();
        self.read(move |c| users::users_by_ids(c, &ids))
    }

    fn changed_users(
        &self,
        since: Timestamp,
    ) -> impl Future<Output = StorageResult<Vec<User>>> + Send {
        self.read(move |c| users::changed_users(c, since))
    }

    fn changed_departments(
        &self,
        since: Timestamp,
    ) -> impl Future<Output = StorageResult<Vec<Department>>> + Send {
        self.read(move |c| users::changed_departments(c, since))
    }

    fn set_sign_info(
        &self,
        user: UserId,
        sign: &str,
    ) -> impl Future<Output = StorageResult<bool>> + Send {
        let sign = sign.to_owned();
        self.write(move |tx| users::set_sign_info(tx, user, &sign))
    }

    fn set_push_shield(
        &self,
        user: UserId,
        on: bool,
    ) -> impl Future<Output = StorageResult<bool>> + Send {
        self.write(move |tx| users::set_push_shield(tx, user, on))
    }

    fn push_shield(
        &self,
        user: UserId,
    ) -> impl Future<Output = StorageResult<Option<bool>>> + Send {
        self.read(move |c| users::push_shield(c, user))
    }

    fn set_device_token(
        &self,
        user: UserId,
        client_type: u32,
        token: &str,
    ) -> impl Future<Output = StorageResult<()>> + Send {
        let token = token.to_owned();
        self.write(move |tx| tokens::set(tx, user, client_type, &token))
    }

    fn device_tokens(
        &self,
        users: &[UserId],
    ) -> impl Future<Output = StorageResult<Vec<DeviceToken>>> + Send {
        let users = users.to_vec();
        self.read(move |c| tokens::get(c, &users))
    }

    fn remove_device_token_if(
        &self,
        user: UserId,
        token: &str,
    ) -> impl Future<Output = StorageResult<bool>> + Send {
        let token = token.to_owned();
        self.write(move |tx| tokens::remove_if(tx, user, &token))
    }

    fn store_message(
        &self,
        msg: NewMessage,
    ) -> impl Future<Output = StorageResult<StoreOutcome>> + Send {
        self.write(move |tx| messages::store(tx, &msg))
    }

    fn history(
        &self,
        user: UserId,
        session_type: SessionType,
        peer: u32,
        msg_id_begin: MsgId,
        count: u32,
    ) -> impl Future<Output = StorageResult<Vec<StoredMessage>>> + Send {
        self.read(move |c| messages::history(c, user, session_type, peer, msg_id_begin, count))
    }

    fn messages_by_ids(
        &self,
        user: UserId,
        session_type: SessionType,
        peer: u32,
        ids: &[MsgId],
    ) -> impl Future<Output = StorageResult<Vec<StoredMessage>>> + Send {
        let ids = ids.to_vec();
        self.read(move |c| messages::by_ids(c, user, session_type, peer, &ids))
    }

    fn latest_msg_id(
        &self,
        user: UserId,
        session_type: SessionType,
        peer: u32,
    ) -> impl Future<Output = StorageResult<MsgId>> + Send {
        self.read(move |c| messages::latest_id(c, user, session_type, peer))
    }

    fn unread(
        &self,
        user: UserId,
    ) -> impl Future<Output = StorageResult<Vec<UnreadSummary>>> + Send {
        self.read(move |c| unread::unread(c, user))
    }

    fn unread_totals(
        &self,
        users: &[UserId],
    ) -> impl Future<Output = StorageResult<Vec<(UserId, u32)>>> + Send {
        let users = users.to_vec();
        self.read(move |c| unread::totals(c, &users))
    }

    fn clear_unread(
        &self,
        user: UserId,
        session_type: SessionType,
        peer: u32,
    ) -> impl Future<Output = StorageResult<()>> + Send {
        self.write(move |tx| unread::clear(tx, user, session_type, peer))
    }

    fn recent_sessions(
        &self,
        user: UserId,
        since: Timestamp,
        limit: u32,
    ) -> impl Future<Output = StorageResult<Vec<SessionSummary>>> + Send {
        self.read(move |c| sessions::recent(c, user, since, limit))
    }

    fn remove_session(
        &self,
        user: UserId,
        session_type: SessionType,
        peer: u32,
    ) -> impl Future<Output = StorageResult<bool>> + Send {
        self.write(move |tx| sessions::remove(tx, user, session_type, peer))
    }

    fn sync_group_sessions(
        &self,
        since: Timestamp,
    ) -> impl Future<Output = StorageResult<Timestamp>> + Send {
        self.write(move |tx| sessions::sync_groups(tx, since))
    }

    fn normal_groups(
        &self,
        user: UserId,
    ) -> impl Future<Output = StorageResult<Vec<(GroupId, u32)>>> + Send {
        self.read(move |c| groups::normal_groups(c, user))
    }

    fn groups(&self, ids: &[GroupId]) -> impl Future<Output = StorageResult<Vec<Group>>> + Send {
        let ids = ids.to_vec();
        self.read(move |c| groups::groups(c, &ids))
    }

    fn create_group(&self, group: NewGroup) -> impl Future<Output = StorageResult<GroupId>> + Send {
        self.write(move |tx| groups::create(tx, &group))
    }

    fn change_members(
        &self,
        requester: UserId,
        group: GroupId,
        change: MemberChange,
        users: &[UserId],
    ) -> impl Future<Output = StorageResult<ChangeOutcome>> + Send {
        let users = users.to_vec();
        self.write(move |tx| groups::change_members(tx, requester, group, change, &users))
    }

    fn group_members(
        &self,
        group: GroupId,
    ) -> impl Future<Output = StorageResult<Option<Vec<GroupMember>>>> + Send {
        self.read(move |c| groups::group_members(c, group))
    }

    fn set_group_shield(
        &self,
        user: UserId,
        group: GroupId,
        on: bool,
    ) -> impl Future<Output = StorageResult<ShieldOutcome>> + Send {
        self.write(move |tx| groups::set_shield(tx, user, group, on))
    }

    fn group_shields(
        &self,
        group: GroupId,
        users: &[UserId],
    ) -> impl Future<Output = StorageResult<Option<Vec<(UserId, bool)>>>> + Send {
        let users = users.to_vec();
        self.read(move |c| groups::shields(c, group, &users))
    }

    fn offline_files(
        &self,
        user: UserId,
    ) -> impl Future<Output = StorageResult<Vec<OfflineFile>>> + Send {
        self.read(move |c| files::pending(c, user))
    }

    fn add_offline_file(
        &self,
        from: UserId,
        to: UserId,
        task_id: &str,
        file_name: &str,
        size: u32,
    ) -> impl Future<Output = StorageResult<()>> + Send {
        let (task_id, file_name) = (task_id.to_owned(), file_name.to_owned());
        self.write(move |tx| files::add(tx, from, to, &task_id, &file_name, size))
    }

    fn delete_offline_file(
        &self,
        from: UserId,
        to: UserId,
        task_id: &str,
    ) -> impl Future<Output = StorageResult<bool>> + Send {
        let task_id = task_id.to_owned();
        self.write(move |tx| files::delete(tx, from, to, &task_id))
    }

    fn expire_offline_files(
        &self,
        before: Timestamp,
    ) -> impl Future<Output = StorageResult<Vec<OfflineFile>>> + Send {
        self.write(move |tx| files::expire(tx, before))
    }

    fn add_user(&self, user: NewUser) -> impl Future<Output = StorageResult<UserId>> + Send {
        self.write(move |tx| admin::add_user(tx, &user))
    }

    fn update_user(
        &self,
        id: UserId,
        patch: UserPatch,
    ) -> impl Future<Output = StorageResult<bool>> + Send {
        self.write(move |tx| admin::update_user(tx, id, &patch))
    }

    fn list_users(
        &self,
        after_id: UserId,
        limit: u32,
    ) -> impl Future<Output = StorageResult<Vec<User>>> + Send {
        self.read(move |c| admin::list_users(c, after_id, limit))
    }

    fn add_department(
        &self,
        name: &str,
        parent_id: DeptId,
        priority: u32,
    ) -> impl Future<Output = StorageResult<DeptId>> + Send {
        let name = name.to_owned();
        self.write(move |tx| admin::add_department(tx, &name, parent_id, priority))
    }

    fn list_departments(&self) -> impl Future<Output = StorageResult<Vec<Department>>> + Send {
        self.read(admin::list_departments)
    }

    fn list_groups(
        &self,
        after_id: GroupId,
        limit: u32,
    ) -> impl Future<Output = StorageResult<Vec<Group>>> + Send {
        self.read(move |c| groups::list_groups(c, after_id, limit))
    }

    fn discovery(&self) -> impl Future<Output = StorageResult<Vec<DiscoveryItem>>> + Send {
        self.read(admin::discovery)
    }

    fn add_discovery(
        &self,
        name: &str,
        url: &str,
        priority: u32,
    ) -> impl Future<Output = StorageResult<u32>> + Send {
        let (name, url) = (name.to_owned(), url.to_owned());
        self.write(move |tx| admin::add_discovery(tx, &name, &url, priority))
    }

    fn remove_discovery(&self, id: u32) -> impl Future<Output = StorageResult<bool>> + Send {
        self.write(move |tx| admin::remove_discovery(tx, id))
    }
}
