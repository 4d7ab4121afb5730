//! The storage conformance suite: every backend runs these cases and must pass all of them.
//!
//! # Using it from a backend's test file
//!
//! ```ignore
//! #[macro_use]
//! mod conformance;
//!
//! /// A store for one case, plus whatever must live as long as it (a temp dir, a database).
//! async fn fresh() -> (MyStore, impl Sized) { ... }
//!
//! conformance_cases!(fresh);
//! ```
//!
//! `conformance_cases!` generates one `#[tokio::test]` per case (so they run in parallel and
//! fail one by one); each calls `fresh().await` and then `conformance::<case>(&store).await`.
//! Every case is also a plain `pub async fn <case><S: Store>(store: &S)` for a backend that
//! wants to call them another way. The list of cases lives only in the macro, so a case
//! added here runs for every backend.
//!
//! Cases use random user ids ([`Ids`]) and names, and create their own groups, so they also
//! pass on a shared, non-empty database. Times: the store stamps `updated`/join times with its
//! own clock; cases set message `created` from the test's clock (same machine) and sleep just
//! over a second where an order of `updated` values must be observed.
//!
//! Expectations the trait leaves open and this suite pins down (a backend that disagrees
//! should say so rather than special-case the test): the group `current` member list of
//! `ChangeOutcome` and `groups()` members are compared as sets; discovery items are in
//! ascending priority; `device_tokens` returns the bare token (without `ios:`/`android:`);
//! `add_user` with an empty name is `Invalid`; a single message to oneself is an error.

#![allow(dead_code)]

mod accounts;
mod groups;
mod messages;
mod sessions;

pub use accounts::*;
pub use groups::*;
pub use messages::*;
pub use sessions::*;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use im_storage::{
    GroupId, GroupKind, MsgId, MsgType, NewContent, NewGroup, NewMessage, NewUser, RequestId,
    StoreOutcome, Timestamp, UserId,
};
use rand::Rng;

/// Generates one `#[tokio::test]` per conformance case; `$fresh` is an async fn returning
/// `(store, guard)`. Needs `mod conformance;` in the calling test crate.
macro_rules! conformance_cases {
    ($fresh:path) => {
        conformance_cases!(@each $fresh;
            credentials_and_passwords,
            users_and_sync,
            departments,
            admin_users,
            discovery_items,
            device_tokens,
            single_message_ids,
            request_dedup,
            content_round_trip,
            history_paging,
            messages_by_ids,
            audio_messages,
            group_messages,
            group_history_join_time,
            unread_counts,
            unread_cleared_by_member_change,
            recent_sessions,
            remove_session,
            sync_group_sessions,
            groups_and_members,
            change_members_rules,
            group_shields,
            offline_files,
            concurrent_ids,
            call_order,
        );
    };
    (@each $fresh:path; $($case:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                let (store, _guard) = $fresh().await;
                conformance::$case(&store).await;
            }
        )*
    };
}

/// Random ids for one case: users `base+1..`, far from any other case's.
#[derive(Debug, Clone, Copy)]
pub struct Ids {
    base: u32,
}

impl Ids {
    /// A fresh random base in 10,000,000..2,000,000,000.
    pub fn new() -> Ids {
        Ids {
            base: rand::rng().random_range(1_000..200_000u32) * 10_000,
        }
    }

    /// User number `n` (1..9999) of this case.
    pub fn user(&self, n: u32) -> UserId {
        self.base + n
    }

    /// A name unique to this case.
    pub fn name(&self, what: &str) -> String {
        format!("{what}_{}", self.base)
    }
}

/// Unix time now (the test's clock).
pub fn now() -> Timestamp {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as Timestamp)
        .unwrap()
}

/// Sleeps until the wall-clock second has changed at least once, so that `updated` values
/// written after this are larger than those written before.
pub async fn next_second() {
    tokio::time::sleep(Duration::from_millis(1_100)).await;
}

/// A single text message `from` -> `to` created `created`.
pub fn text_at(from: UserId, to: UserId, body: &str, created: Timestamp) -> NewMessage {
    NewMessage {
        from_id: from,
        to_id: to,
        msg_type: MsgType::SingleText,
        content: NewContent::Text(body.as_bytes().to_vec()),
        created,
        request_id: None,
    }
}

/// A single text message created now.
pub fn text(from: UserId, to: UserId, body: &str) -> NewMessage {
    text_at(from, to, body, now())
}

/// A group text message created `created`.
pub fn group_text_at(from: UserId, group: GroupId, body: &str, created: Timestamp) -> NewMessage {
    NewMessage {
        msg_type: MsgType::GroupText,
        ..text_at(from, group, body, created)
    }
}

/// A group text message created now.
pub fn group_text(from: UserId, group: GroupId, body: &str) -> NewMessage {
    group_text_at(from, group, body, now())
}

/// A request id with a random origin.
pub fn request_id(seq: u64) -> RequestId {
    RequestId {
        origin: rand::rng().random(),
        seq,
    }
}

/// The id of a message that must have been stored.
pub fn stored(outcome: StoreOutcome) -> MsgId {
    match outcome {
        StoreOutcome::Stored(id) => id,
        other => panic!("expected Stored, got {other:?}"),
    }
}

/// Stores and returns the new id.
pub async fn send<S: im_storage::Store>(store: &S, msg: NewMessage) -> MsgId {
    stored(store.store_message(msg).await.unwrap())
}

/// Creates a group and returns its id.
pub async fn new_group<S: im_storage::Store>(
    store: &S,
    creator: UserId,
    kind: GroupKind,
    members: &[UserId],
) -> GroupId {
    store
        .create_group(NewGroup {
            creator,
            name: format!("group of {creator}"),
            avatar: String::new(),
            kind,
            members: members.to_vec(),
        })
        .await
        .unwrap()
}

/// A user to add, with a unique name.
pub fn new_user(ids: &Ids, tag: &str, password: &str) -> NewUser {
    NewUser {
        name: ids.name(tag),
        password: password.into(),
        nick: format!("nick {tag}"),
        sex: 1,
        domain: tag.into(),
        phone: "13800000000".into(),
        email: format!("{tag}@example.invalid"),
        avatar: String::new(),
        depart_id: 1,
        status: 0,
    }
}

/// Sorted copy, for set comparisons.
pub fn sorted(mut v: Vec<UserId>) -> Vec<UserId> {
    v.sort_unstable();
    v
}
