//! db_proxy_server (skeleton; see its issue).
