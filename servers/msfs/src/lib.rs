//! msfs (skeleton; see its issue).
