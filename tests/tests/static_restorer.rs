//! `ckpt-restore` is a static executable: no program interpreter, no
//! shared library (it replaces its own address space with the image's, so
//! nothing of a dynamic loader or libc.so may be left behind).

use ckpt_tests::bin_dir;
use std::process::Command;

#[test]
fn restorer_has_no_interpreter_and_ldd_says_static() {
    let path = bin_dir().join("ckpt-restore");
    let elf = std::fs::read(&path).expect("reading ckpt-restore");
    assert_eq!(&elf[..4], b"\x7fELF", "not an ELF file");
    let u16at = |o: usize| u16::from_le_bytes([elf[o], elf[o + 1]]) as usize;
    let u32at = |o: usize| u32::from_le_bytes(elf[o..o + 4].try_into().unwrap());
    let phoff = u64::from_le_bytes(elf[0x20..0x28].try_into().unwrap()) as usize;
    let (phentsize, phnum) = (u16at(0x36), u16at(0x38));
    let types: Vec<u32> = (0..phnum).map(|i| u32at(phoff + i * phentsize)).collect();
    const PT_INTERP: u32 = 3;
    const PT_DYNAMIC: u32 = 2;
    assert!(
        !types.contains(&PT_INTERP),
        "ckpt-restore asks for a program interpreter"
    );
    // A static-pie has a PT_DYNAMIC for its own relocations but no DT_NEEDED;
    // ldd tells which.
    let out = Command::new("ldd").arg(&path).output().expect("ldd");
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(
        text.contains("statically linked") || text.contains("not a dynamic executable"),
        "ldd says: {text} (program headers {types:?}, PT_DYNAMIC={PT_DYNAMIC})"
    );
    assert!(
        !text.contains("=>"),
        "ckpt-restore needs shared libraries: {text}"
    );
}
