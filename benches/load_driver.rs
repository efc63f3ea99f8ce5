//! End-to-end load driver (being written).
fn main() {}
