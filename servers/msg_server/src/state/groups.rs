//! Group member lists, cached by group with the group's version (Decisions 10), so that a
//! group message costs no db_proxy round trip in the steady state (the original asked for
//! every message on every msg_server, WEAKNESSES 37).
//!
//! An entry is a once-cell: the first user fills it from db_proxy and concurrent users wait
//! for that one answer. A member-change notify removes the entry (the next message fetches
//! the new list); a fetch that was already running then fills only the removed cell, so a
//! stale list is never stored. A GroupInfo with a higher version than the cached one (seen in
//! a client's group-info answer) replaces the entry at once.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use im_proto::base::GroupInfo;
use tokio::sync::OnceCell;

/// A group's members at one version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Members {
    /// GroupInfo.version.
    pub version: u32,
    /// Member user ids.
    pub ids: Vec<u32>,
}

impl Members {
    /// The members of a GroupInfo.
    pub fn of(info: &GroupInfo) -> Self {
        Members {
            version: info.version,
            ids: info.group_member_list.clone(),
        }
    }
}

/// A cache slot, filled at most once.
pub type Slot = Arc<OnceCell<Arc<Members>>>;

/// Groups cached at most; above it the cache starts over (member lists are cheap to fetch
/// again, and a server with this many active groups has memory for the next round).
const MAX_GROUPS: usize = 200_000;

/// The member cache.
#[derive(Debug, Default)]
pub struct GroupCache {
    slots: Mutex<HashMap<u32, Slot>>,
}

impl GroupCache {
    /// An empty cache.
    pub fn new() -> Self {
        GroupCache::default()
    }

    /// The slot of `group` (created empty if absent).
    pub fn slot(&self, group: u32) -> Slot {
        let mut m = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        if m.len() >= MAX_GROUPS && !m.contains_key(&group) {
            m.clear();
        }
        m.entry(group).or_default().clone()
    }

    /// The cached members, if known.
    pub fn get(&self, group: u32) -> Option<Arc<Members>> {
        let m = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        m.get(&group).and_then(|s| s.get().cloned())
    }

    /// Forgets `group` (its members changed).
    pub fn invalidate(&self, group: u32) {
        let mut m = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        m.remove(&group);
    }

    /// A GroupInfo from db_proxy: replaces the cached entry when its version is higher.
    pub fn seen(&self, info: &GroupInfo) {
        let mut m = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        let newer = match m.get(&info.group_id).and_then(|s| s.get()) {
            Some(cur) => info.version > cur.version,
            None => false,
        };
        if newer {
            let cell = OnceCell::new_with(Some(Arc::new(Members::of(info))));
            m.insert(info.group_id, Arc::new(cell));
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn info(id: u32, version: u32, members: &[u32]) -> GroupInfo {
        GroupInfo {
            group_id: id,
            version,
            group_member_list: members.to_vec(),
            ..Default::default()
        }
    }

    #[tokio::test]
    async fn fill_once_replace_on_newer_version_forget_on_invalidate() {
        let c = GroupCache::new();
        assert_eq!(c.get(1), None);
        let slot = c.slot(1);
        slot.get_or_init(|| async { Arc::new(Members::of(&info(1, 2, &[1, 2]))) })
            .await;
        assert_eq!(c.get(1).unwrap().ids, vec![1, 2]);
        // Older or equal versions do not replace.
        c.seen(&info(1, 2, &[9]));
        c.seen(&info(1, 1, &[9]));
        assert_eq!(c.get(1).unwrap().ids, vec![1, 2]);
        c.seen(&info(1, 3, &[1, 2, 3]));
        assert_eq!(c.get(1).unwrap().version, 3);
        // A fetch running across an invalidation fills only the old slot.
        let old = c.slot(1);
        c.invalidate(1);
        assert_eq!(c.get(1), None);
        assert!(old.get().is_some());
        let fresh = c.slot(1);
        assert!(fresh.get().is_none());
        // seen() does not create entries for groups nobody asked about.
        c.seen(&info(7, 5, &[1]));
        assert_eq!(c.get(7), None);
    }
}
