#[no_mangle]
pub extern "C" fn ckpt_hello() -> i32 { std::process::id() as i32 }
