//! placeholder
pub fn run(_a: &std::path::Path, _j: bool) -> i32 {
    2
}
