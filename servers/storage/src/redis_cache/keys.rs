//! The original TeamTalk key names (STORAGE.md 5), with the configured prefix.
//!
//! Standalone mode uses the names unchanged. Cluster mode (Decisions 11) wraps the group id of
//! the two group counter keys in a hash tag, `{<G>}_im_group_msg` and `<U>_{<G>}_im_user_group`,
//! because the scripts that copy the group count onto a user's mark touch both keys at once and
//! a cluster runs a script only when all its keys share one slot. Every other command touches
//! one key (MGET is split per slot by the cluster client).

/// Builds key names.
#[derive(Debug, Clone)]
pub struct Keys {
    prefix: String,
    cluster: bool,
}

impl Keys {
    /// Key names with `prefix` (empty in a real deployment); `cluster` adds the hash tags.
    pub fn new(prefix: &str, cluster: bool) -> Keys {
        Keys {
            prefix: prefix.to_owned(),
            cluster,
        }
    }

    /// The prefix every key starts with.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// `unread_<U>`: hash peer id -> unread count (pool `unread`).
    pub fn unread(&self, user: u32) -> String {
        format!("{}unread_{user}", self.prefix)
    }

    /// `msg_id_<relateId>`: last message id of a user pair (pool `unread`).
    pub fn msg_id(&self, relate_id: u32) -> String {
        format!("{}msg_id_{relate_id}", self.prefix)
    }

    /// `group_msg_id_<G>`: last message id of a group (pool `unread`).
    pub fn group_msg_id(&self, group: u32) -> String {
        format!("{}group_msg_id_{group}", self.prefix)
    }

    /// `<G>_im_group_msg`: hash field `count` = messages ever sent in the group (pool
    /// `unread`).
    pub fn group_count(&self, group: u32) -> String {
        if self.cluster {
            format!("{}{{{group}}}_im_group_msg", self.prefix)
        } else {
            format!("{}{group}_im_group_msg", self.prefix)
        }
    }

    /// `<U>_<G>_im_user_group`: hash field `count` = the group count when the user last caught
    /// up (pool `unread`).
    pub fn user_group(&self, user: u32, group: u32) -> String {
        if self.cluster {
            format!("{}{user}_{{{group}}}_im_user_group", self.prefix)
        } else {
            format!("{}{user}_{group}_im_user_group", self.prefix)
        }
    }

    /// `total_user_update`: time of the last user change (pool `unread`).
    pub fn total_user_update(&self) -> String {
        format!("{}total_user_update", self.prefix)
    }

    /// `device_<U>`: `ios:<token>`, `android:<token>` or a bare token (pool `token`).
    pub fn device_of_user(&self, user: u32) -> String {
        format!("{}device_{user}", self.prefix)
    }

    /// `device_<token>`: the user id owning a token (pool `token`).
    pub fn device_owner(&self, token: &str) -> String {
        format!("{}device_{token}", self.prefix)
    }

    /// `group_member_<G>`: hash user id -> join time (pool `group_member`).
    pub fn group_member(&self, group: u32) -> String {
        format!("{}group_member_{group}", self.prefix)
    }

    /// `group_set_<G>`: hash `<U>_<setting>` -> value (pool `group_set`).
    pub fn group_set(&self, group: u32) -> String {
        format!("{}group_set_{group}", self.prefix)
    }

    /// The `group_set` field of the push-mute setting (setting type 1).
    pub fn push_mute_field(user: u32) -> String {
        format!("{user}_1")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::redis_cache::slot::slot;

    #[test]
    fn original_names_in_standalone_mode() {
        let k = Keys::new("", false);
        assert_eq!(k.unread(7), "unread_7");
        assert_eq!(k.msg_id(3), "msg_id_3");
        assert_eq!(k.group_msg_id(9), "group_msg_id_9");
        assert_eq!(k.group_count(9), "9_im_group_msg");
        assert_eq!(k.user_group(7, 9), "7_9_im_user_group");
        assert_eq!(k.device_of_user(7), "device_7");
        assert_eq!(k.device_owner("abc"), "device_abc");
        assert_eq!(k.group_member(9), "group_member_9");
        assert_eq!(k.group_set(9), "group_set_9");
        assert_eq!(Keys::push_mute_field(7), "7_1");
        assert_eq!(k.total_user_update(), "total_user_update");
    }

    #[test]
    fn cluster_tags_keep_group_counters_in_one_slot() {
        let k = Keys::new("t:", true);
        assert_eq!(k.group_count(9), "t:{9}_im_group_msg");
        assert_eq!(k.user_group(7, 9), "t:7_{9}_im_user_group");
        assert_eq!(
            slot(k.group_count(9).as_bytes()),
            slot(k.user_group(7, 9).as_bytes())
        );
        assert_eq!(k.unread(7), "t:unread_7");
    }
}
