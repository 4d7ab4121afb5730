//! push_server (skeleton; see its issue).
