//! Support code for the process-level tests in `tests/` (starting binaries, fake clients).
