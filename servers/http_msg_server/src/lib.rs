//! http_msg_server (skeleton; see its issue).
