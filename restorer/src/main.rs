//! ckpt-restore: reads a ckpt image and becomes the process again.
fn main() {
    eprintln!("ckpt-restore: not built yet");
    std::process::exit(2);
}
