//! login_server (skeleton; see its issue).
