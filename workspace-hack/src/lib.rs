//! Empty: this crate exists for its dependency list (see `.config/hakari.toml`).
