//! im-cluster (skeleton).
