//! `CKPT_DUMP=IMAGE cargo test -p ckpt-writer --test dump -- --nocapture`:
//! prints an image's threads and regions (a debugging aid; no-op otherwise).

#[test]
fn dump_image() {
    let Some(p) = std::env::var_os("CKPT_DUMP") else {
        return;
    };
    let img = ckpt_format::MappedImage::open(p).expect("open");
    println!("{:?}", img.process());
    for t in img.threads() {
        let mut t = t.clone();
        println!("xsave {} bytes", t.xsave.len());
        t.xsave.truncate(0);
        println!("{t:?}");
    }
    for (i, r) in img.regions().iter().enumerate() {
        let pages: u32 = img
            .chunks()
            .iter()
            .filter(|c| c.meta.region == i as u32)
            .map(|c| c.meta.pages)
            .sum();
        println!(
            "{i:3} {:#x}-{:#x} {:?} prot {} shared {} {} pages {pages} {:?}",
            r.start.0,
            r.end.0,
            r.kind,
            r.prot.0,
            r.shared,
            String::from_utf8_lossy(&r.name),
            r.backing.as_ref().map(|b| (b.offset, b.storage))
        );
    }
}
