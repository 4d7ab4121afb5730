//! file_server (skeleton; see its issue).
