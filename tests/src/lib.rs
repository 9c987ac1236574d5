//! Harness for clickstamp's end-to-end tests (see `tests/e2e/`).
