//! msg_server (skeleton; see its issue).
