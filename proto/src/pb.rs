//! Generated protobuf types, one module per proto package (`IM.Message` -> `pb::im::message`).
//!
//! The files under `generated/` are written by `im-proto-codegen`; `tests/codegen.rs` fails when
//! they drift from `pb/*.proto`.

#![allow(missing_docs, clippy::all, clippy::pedantic, clippy::nursery)]

/// The `IM.*` packages.
pub mod im {
    /// `IM.BaseDefine`: ids, enums and shared structures.
    pub mod base_define {
        include!("generated/im.base_define.rs");
    }
    /// `IM.Buddy`: users, sessions, presence, departments.
    pub mod buddy {
        include!("generated/im.buddy.rs");
    }
    /// `IM.Login`: login, logout, kick, device token, push shield.
    pub mod login {
        include!("generated/im.login.rs");
    }
    /// `IM.Message`: messages, acks, unread counters, history.
    pub mod message {
        include!("generated/im.message.rs");
    }
    /// `IM.Group`: groups.
    pub mod group {
        include!("generated/im.group.rs");
    }
    /// `IM.File`: file transfer.
    pub mod file {
        include!("generated/im.file.rs");
    }
    /// `IM.SwitchService`: opaque client-to-client commands.
    pub mod switch_service {
        include!("generated/im.switch_service.rs");
    }
    /// `IM.Other`: the heartbeat.
    pub mod other {
        include!("generated/im.other.rs");
    }
    /// `IM.Server`: server-to-server messages.
    pub mod server {
        include!("generated/im.server.rs");
    }
    /// `IM.Admin`: this project's admin extension (service id 0x0010).
    pub mod admin {
        include!("generated/im.admin.rs");
    }
}
