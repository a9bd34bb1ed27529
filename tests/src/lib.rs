//! End-to-end tests of the API live in `tests/`; their harness is the `testkit` crate.
