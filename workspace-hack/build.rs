// A build script makes cargo unify build-dependency features through this crate too.
fn main() {}
