//! `impl Store for MysqlStore`: reads run on the pools directly; writes are queued on the
//! writer when called (the ordering contract) and answered after their commit.

use std::future::Future;

use tokio::sync::oneshot;

use super::batcher::WriteOp;
use super::{MysqlStore, files, groups, members, messages, sessions, tokens, unread, users};
use crate::error::{StorageError, StorageResult};
use crate::store::Store;
use crate::types::*;

impl Store for MysqlStore {
    fn credentials(
        &self,
        name: &str,
    ) -> impl Future<Output = StorageResult<Option<Credentials>>> + Send {
        self.read(users::credentials(&self.inner, name))
    }

    fn set_argon2(
        &self,
        user: UserId,
        phc: &str,
    ) -> impl Future<Output = StorageResult<()>> + Send {
        let phc = phc.to_owned();
        self.write(move |inner| async move { users::set_argon2(&inner, user, &phc).await })
    }

    fn users_by_ids(
        &self,
        ids: &[UserId],
    ) -> impl Future<Output = StorageResult<Vec<User>>> + Send {
        self.read(users::by_ids(&self.inner, ids))
    }

    fn changed_users(
        &self,
        since: Timestamp,
    ) -> impl Future<Output = StorageResult<Vec<User>>> + Send {
        self.read(users::changed(&self.inner, since))
    }

    fn changed_departments(
        &self,
        since: Timestamp,
    ) -> impl Future<Output = StorageResult<Vec<Department>>> + Send {
        self.read(users::changed_departments(&self.inner, since))
    }

    fn set_sign_info(
        &self,
        user: UserId,
        sign: &str,
    ) -> impl Future<Output = StorageResult<bool>> + Send {
        let sign = sign.to_owned();
        self.write(move |inner| async move { users::set_sign_info(&inner, user, &sign).await })
    }

    fn set_push_shield(
        &self,
        user: UserId,
        on: bool,
    ) -> impl Future<Output = StorageResult<bool>> + Send {
        self.write(move |inner| async move { users::set_push_shield(&inner, user, on).await })
    }

    fn push_shield(
        &self,
        user: UserId,
    ) -> impl Future<Output = StorageResult<Option<bool>>> + Send {
        self.read(users::push_shield(&self.inner, user))
    }

    fn set_device_token(
        &self,
        user: UserId,
        client_type: u32,
        token: &str,
    ) -> impl Future<Output = StorageResult<()>> + Send {
        let token = token.to_owned();
        self.write(move |inner| async move { tokens::set(&inner, user, client_type, &token).await })
    }

    fn device_tokens(
        &self,
        users: &[UserId],
    ) -> impl Future<Output = StorageResult<Vec<DeviceToken>>> + Send {
        self.read(tokens::get(&self.inner, users))
    }

    fn remove_device_token_if(
        &self,
        user: UserId,
        token: &str,
    ) -> impl Future<Output = StorageResult<bool>> + Send {
        let token = token.to_owned();
        self.write(move |inner| async move { tokens::remove_if(&inner, user, &token).await })
    }

    fn store_message(
        &self,
        msg: NewMessage,
    ) -> impl Future<Output = StorageResult<StoreOutcome>> + Send {
        let (tx, rx) = oneshot::channel();
        let queued = self.enqueue(WriteOp::Message(msg, tx));
        async move {
            if !queued {
                return Err(StorageError::Closed);
            }
            rx.await.unwrap_or(Err(StorageError::Closed))
        }
    }

    fn history(
        &self,
        user: UserId,
        session_type: SessionType,
        peer: u32,
        msg_id_begin: MsgId,
        count: u32,
    ) -> impl Future<Output = StorageResult<Vec<StoredMessage>>> + Send {
        self.read(messages::history(
            &self.inner,
            user,
            session_type,
            peer,
            msg_id_begin,
            count,
        ))
    }

    fn messages_by_ids(
        &self,
        user: UserId,
        session_type: SessionType,
        peer: u32,
        ids: &[MsgId],
    ) -> impl Future<Output = StorageResult<Vec<StoredMessage>>> + Send {
        self.read(messages::by_ids(&self.inner, user, session_type, peer, ids))
    }

    fn latest_msg_id(
        &self,
        user: UserId,
        session_type: SessionType,
        peer: u32,
    ) -> impl Future<Output = StorageResult<MsgId>> + Send {
        self.read(messages::latest_id(&self.inner, user, session_type, peer))
    }

    fn unread(
        &self,
        user: UserId,
    ) -> impl Future<Output = StorageResult<Vec<UnreadSummary>>> + Send {
        self.read(unread::unread(&self.inner, user))
    }

    fn unread_totals(
        &self,
        users: &[UserId],
    ) -> impl Future<Output = StorageResult<Vec<(UserId, u32)>>> + Send {
        self.read(unread::totals(&self.inner, users))
    }

    fn clear_unread(
        &self,
        user: UserId,
        session_type: SessionType,
        peer: u32,
    ) -> impl Future<Output = StorageResult<()>> + Send {
        let (reply, rx) = oneshot::channel();
        let queued = self.enqueue(WriteOp::ClearUnread {
            user,
            session_type,
            peer,
            reply,
        });
        async move {
            if !queued {
                return Err(StorageError::Closed);
            }
            rx.await.unwrap_or(Err(StorageError::Closed))
        }
    }

    fn recent_sessions(
        &self,
        user: UserId,
        since: Timestamp,
        limit: u32,
    ) -> impl Future<Output = StorageResult<Vec<SessionSummary>>> + Send {
        self.read(sessions::recent(&self.inner, user, since, limit))
    }

    fn remove_session(
        &self,
        user: UserId,
        session_type: SessionType,
        peer: u32,
    ) -> impl Future<Output = StorageResult<bool>> + Send {
        self.write(
            move |inner| async move { sessions::remove(&inner, user, session_type, peer).await },
        )
    }

    fn sync_group_sessions(
        &self,
        since: Timestamp,
    ) -> impl Future<Output = StorageResult<Timestamp>> + Send {
        self.write(move |inner| async move { sessions::sync_groups(&inner, since).await })
    }

    fn normal_groups(
        &self,
        user: UserId,
    ) -> impl Future<Output = StorageResult<Vec<(GroupId, u32)>>> + Send {
        self.read(groups::normal_groups(&self.inner, user))
    }

    fn groups(&self, ids: &[GroupId]) -> impl Future<Output = StorageResult<Vec<Group>>> + Send {
        self.read(groups::groups(&self.inner, ids))
    }

    fn create_group(&self, group: NewGroup) -> impl Future<Output = StorageResult<GroupId>> + Send {
        self.write(move |inner| async move { groups::create(&inner, group).await })
    }

    fn change_members(
        &self,
        requester: UserId,
        group: GroupId,
        change: MemberChange,
        users: &[UserId],
    ) -> impl Future<Output = StorageResult<ChangeOutcome>> + Send {
        let users = users.to_vec();
        self.write(move |inner| async move {
            groups::change(&inner, requester, group, change, &users).await
        })
    }

    fn group_members(
        &self,
        group: GroupId,
    ) -> impl Future<Output = StorageResult<Option<Vec<GroupMember>>>> + Send {
        self.read(members::members(&self.inner, group))
    }

    fn set_group_shield(
        &self,
        user: UserId,
        group: GroupId,
        on: bool,
    ) -> impl Future<Output = StorageResult<ShieldOutcome>> + Send {
        self.write(move |inner| async move { groups::set_shield(&inner, user, group, on).await })
    }

    fn group_shields(
        &self,
        group: GroupId,
        users: &[UserId],
    ) -> impl Future<Output = StorageResult<Option<Vec<(UserId, bool)>>>> + Send {
        self.read(groups::shields(&self.inner, group, users))
    }

    fn offline_files(
        &self,
        user: UserId,
    ) -> impl Future<Output = StorageResult<Vec<OfflineFile>>> + Send {
        self.read(files::pending(&self.inner, user))
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
        self.write(move |inner| async move {
            files::add(&inner, from, to, &task_id, &file_name, size).await
        })
    }

    fn delete_offline_file(
        &self,
        from: UserId,
        to: UserId,
        task_id: &str,
    ) -> impl Future<Output = StorageResult<bool>> + Send {
        let task_id = task_id.to_owned();
        self.write(move |inner| async move { files::delete(&inner, from, to, &task_id).await })
    }

    fn expire_offline_files(
        &self,
        before: Timestamp,
    ) -> impl Future<Output = StorageResult<Vec<OfflineFile>>> + Send {
        self.write(move |inner| async move { files::expire(&inner, before).await })
    }

    fn add_user(&self, user: NewUser) -> impl Future<Output = StorageResult<UserId>> + Send {
        self.write(move |inner| async move { users::add(&inner, user).await })
    }

    fn update_user(
        &self,
        id: UserId,
        patch: UserPatch,
    ) -> impl Future<Output = StorageResult<bool>> + Send {
        self.write(move |inner| async move { users::update(&inner, id, patch).await })
    }

    fn list_users(
        &self,
        after_id: UserId,
        limit: u32,
    ) -> impl Future<Output = StorageResult<Vec<User>>> + Send {
        self.read(users::list(&self.inner, after_id, limit))
    }

    fn add_department(
        &self,
        name: &str,
        parent_id: DeptId,
        priority: u32,
    ) -> impl Future<Output = StorageResult<DeptId>> + Send {
        let name = name.to_owned();
        self.write(move |inner| async move {
            users::add_department(&inner, &name, parent_id, priority).await
        })
    }

    fn list_departments(&self) -> impl Future<Output = StorageResult<Vec<Department>>> + Send {
        self.read(users::departments(&self.inner))
    }

    fn list_groups(
        &self,
        after_id: GroupId,
        limit: u32,
    ) -> impl Future<Output = StorageResult<Vec<Group>>> + Send {
        self.read(groups::list(&self.inner, after_id, limit))
    }

    fn discovery(&self) -> impl Future<Output = StorageResult<Vec<DiscoveryItem>>> + Send {
        self.read(users::discovery(&self.inner))
    }

    fn add_discovery(
        &self,
        name: &str,
        url: &str,
        priority: u32,
    ) -> impl Future<Output = StorageResult<u32>> + Send {
        let (name, url) = (name.to_owned(), url.to_owned());
        self.write(
            move |inner| async move { users::add_discovery(&inner, &name, &url, priority).await },
        )
    }

    fn remove_discovery(&self, id: u32) -> impl Future<Output = StorageResult<bool>> + Send {
        self.write(move |inner| async move { users::remove_discovery(&inner, id).await })
    }
}
