//! im-storage (skeleton).
