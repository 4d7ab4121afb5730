//! route_server (skeleton; see its issue).
