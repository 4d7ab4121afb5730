//! The presence rules of FLOWS.md 11: client classes, connection counts per client type,
//! and which notifies a change of connections causes.

use im_proto::base::{ClientType, UserStatType};

/// Every client type, in the order counts are kept.
pub const CLIENT_TYPES: [ClientType; 4] = [
    ClientType::Windows,
    ClientType::Mac,
    ClientType::Ios,
    ClientType::Android,
];

/// PC class = high nibble 0 (Windows 0x01, Mac 0x02); mobile = 0x1x (FLOWS.md 4.1).
pub fn is_pc(ct: ClientType) -> bool {
    (ct as i32) >> 4 == 0
}

/// Connections per client type.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ClientCounts([u32; 4]);

impl ClientCounts {
    fn slot(ct: ClientType) -> usize {
        match ct {
            ClientType::Windows => 0,
            ClientType::Mac => 1,
            ClientType::Ios => 2,
            ClientType::Android => 3,
        }
    }

    /// Connections of type `ct`.
    pub fn get(&self, ct: ClientType) -> u32 {
        self.0[Self::slot(ct)]
    }

    /// One more connection of type `ct`.
    pub fn add(&mut self, ct: ClientType) {
        let c = &mut self.0[Self::slot(ct)];
        *c = c.saturating_add(1);
    }

    /// One connection of type `ct` less (never below 0).
    pub fn remove(&mut self, ct: ClientType) {
        let c = &mut self.0[Self::slot(ct)];
        *c = c.saturating_sub(1);
    }

    /// PC-class connections.
    pub fn pc(&self) -> u32 {
        self.0[0].saturating_add(self.0[1])
    }

    /// All connections.
    pub fn total(&self) -> u32 {
        self.0.iter().fold(0u32, |a, b| a.saturating_add(*b))
    }

    /// No connection at all.
    pub fn is_empty(&self) -> bool {
        self.0 == [0; 4]
    }

    /// (type, count) for the types with connections.
    pub fn iter(&self) -> impl Iterator<Item = (ClientType, u32)> + '_ {
        CLIENT_TYPES
            .iter()
            .map(|ct| (*ct, self.get(*ct)))
            .filter(|(_, n)| *n > 0)
    }
}

/// What a presence change must tell every msg_server (FLOWS.md 11).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Notices {
    /// IMServerPCLoginStatusNotify.login_status to send (1 a PC client is online, 0 none).
    pub pc_login: Option<u32>,
    /// IMUserStatNotify status to send.
    pub buddy: Option<UserStatType>,
}

impl Notices {
    /// Nothing to send.
    pub fn is_empty(&self) -> bool {
        self.pc_login.is_none() && self.buddy.is_none()
    }

    /// Folds a later change in: the later value of each notify wins, so a batch of changes
    /// announces the state it ends in.
    pub(crate) fn then(&mut self, later: Notices) {
        if later.pc_login.is_some() {
            self.pc_login = later.pc_login;
        }
        if later.buddy.is_some() {
            self.buddy = later.buddy;
        }
    }

    /// One connection of type `ct` came online; the user now has `pc_after` PC connections.
    pub(crate) fn online(ct: ClientType, pc_after: u32) -> Notices {
        Notices {
            pc_login: (pc_after > 0).then_some(1),
            buddy: is_pc(ct).then_some(UserStatType::UserStatusOnline),
        }
    }

    /// The wire presence of a user went from `pc_before` to `pc_after` PC connections in
    /// one step: announced only if it flipped.
    pub(crate) fn presence_change(pc_before: u32, pc_after: u32) -> Notices {
        match (pc_before > 0, pc_after > 0) {
            (true, false) => Notices::offline(ClientType::Windows, 0),
            (false, true) => Notices::online(ClientType::Windows, pc_after),
            _ => Notices::default(),
        }
    }

    /// One connection of type `ct` went away; `pc_after` PC connections remain. Only a PC
    /// connection going counts, and only when it was the last one.
    pub(crate) fn offline(ct: ClientType, pc_after: u32) -> Notices {
        if !is_pc(ct) || pc_after > 0 {
            return Notices::default();
        }
        Notices {
            pc_login: Some(0),
            buddy: Some(UserStatType::UserStatusOffline),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ON: Option<UserStatType> = Some(UserStatType::UserStatusOnline);
    const OFF: Option<UserStatType> = Some(UserStatType::UserStatusOffline);

    fn n(pc_login: Option<u32>, buddy: Option<UserStatType>) -> Notices {
        Notices { pc_login, buddy }
    }

    #[test]
    fn client_classes() {
        assert!(is_pc(ClientType::Windows) && is_pc(ClientType::Mac));
        assert!(!is_pc(ClientType::Ios) && !is_pc(ClientType::Android));
        let mut c = ClientCounts::default();
        c.add(ClientType::Mac);
        c.add(ClientType::Mac);
        c.add(ClientType::Android);
        c.remove(ClientType::Ios); // never below zero
        assert_eq!((c.pc(), c.total(), c.get(ClientType::Mac)), (2, 3, 2));
        assert_eq!(
            c.iter().collect::<Vec<_>>(),
            vec![(ClientType::Mac, 2), (ClientType::Android, 1)]
        );
    }

    #[test]
    fn flows_11_notifies() {
        // ONLINE: login 1 whenever a PC client exists; buddy only for PC updates.
        assert_eq!(Notices::online(ClientType::Windows, 1), n(Some(1), ON));
        assert_eq!(Notices::online(ClientType::Android, 1), n(Some(1), None));
        assert_eq!(Notices::online(ClientType::Ios, 0), n(None, None));
        // OFFLINE: only a PC client leaving, and only the last one.
        assert_eq!(Notices::offline(ClientType::Mac, 0), n(Some(0), OFF));
        assert_eq!(Notices::offline(ClientType::Mac, 1), n(None, None));
        assert_eq!(Notices::offline(ClientType::Android, 0), n(None, None));
        // Re-appearance: news only when the wire presence flipped.
        assert_eq!(Notices::presence_change(2, 1), n(None, None));
        assert_eq!(Notices::presence_change(0, 0), n(None, None));
        assert_eq!(Notices::presence_change(1, 0), n(Some(0), OFF));
        assert_eq!(Notices::presence_change(0, 1), n(Some(1), ON));
        // A batch announces the state it ends in.
        let mut batch = Notices::online(ClientType::Windows, 1);
        batch.then(Notices::online(ClientType::Android, 1));
        assert_eq!(batch, n(Some(1), ON));
        batch.then(Notices::offline(ClientType::Windows, 0));
        assert_eq!(batch, n(Some(0), OFF));
    }
}
