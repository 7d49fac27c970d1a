//! Compiles writer/src/execl.c (execl, execle, execlp: C variadic
//! functions) into libckpt_writer.so and exports them (exports.map).

fn main() {
    println!("cargo:rerun-if-changed=src/execl.c");
    println!("cargo:rerun-if-changed=exports.map");
    cc::Build::new()
        .file("src/execl.c")
        // Nothing in Rust refers to them: keep the whole object.
        .link_lib_modifier("+whole-archive")
        .warnings(true)
        .compile("ckpt_execl");
    let dir = std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    println!("cargo:rustc-cdylib-link-arg=-Wl,--version-script={dir}/exports.map");
}
