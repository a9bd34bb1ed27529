//! One apalis handler per file.

pub mod provision_instance;
