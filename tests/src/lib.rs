//! End-to-end tests live in tests/tests/; helpers that start the real binaries live here.
