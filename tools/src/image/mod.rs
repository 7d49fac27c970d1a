//! `ckpt image inspect|validate|extract|diff|repack|core|check-host`:
//! read, compare and rewrite images offline.

pub mod check_host;
pub mod core;
pub mod diff;
pub mod extract;
pub mod inspect;
pub mod memory;
pub mod progress;
pub mod repack;
pub mod validate;

use clap::{Args, Subcommand};
use std::path::PathBuf;

/// `ckpt image ...`
#[derive(Args, Debug)]
pub struct ImageArgs {
    #[command(subcommand)]
    pub cmd: ImageCmd,
}

#[derive(Subcommand, Debug)]
pub enum ImageCmd {
    /// Show what an image holds: header, process, threads, memory map, fds.
    Inspect {
        /// The image file, or `-` for stdin.
        image: PathBuf,
        /// Machine-readable output (schema in spec/tools-json.md).
        #[arg(long)]
        json: bool,
    },
    /// Check images completely (every CRC, every rule); `-` reads a stream
    /// from stdin. Exit 0 valid, 1 invalid, 2 unreadable.
    Validate {
        /// Image files, or `-` for stdin.
        #[arg(required = true)]
        images: Vec<PathBuf>,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Write the raw bytes of memory regions as the restored process sees
    /// them: stored pages, a by-reference file's pages from this host's
    /// file (when it is the same file), zeros elsewhere.
    Extract {
        /// The image file, or `-` for stdin.
        image: PathBuf,
        /// A region by index (`3`) or by an address inside it (`0x7f...`).
        #[arg(long, conflicts_with_all = ["all", "range", "name"], required_unless_present_any = ["all", "range", "name"])]
        region: Option<String>,
        /// An address range `START-END` (hex), which may span regions;
        /// unmapped gaps are written as zeros.
        #[arg(long, conflicts_with_all = ["all", "name"])]
        range: Option<String>,
        /// Regions by mapping name: `[heap]`, `[stack]`, or a file's
        /// basename (`libc.so.6`); several matches are written in order.
        #[arg(long, conflicts_with = "all")]
        name: Option<String>,
        /// Output file for --region, --range or --name (default: stdout).
        #[arg(short = 'o', long, conflicts_with = "all")]
        output: Option<PathBuf>,
        /// Write every region into this directory.
        #[arg(long)]
        all: Option<PathBuf>,
        /// Print what was written as JSON on stdout (needs -o or --all).
        #[arg(long)]
        json: bool,
    },
    /// Re-encode an image: other compression, chunk sizes, file storage.
    /// Written to OUT.tmp, validated, then renamed to OUT. `-` reads the
    /// input from stdin (held in memory: repack needs random access).
    Repack {
        /// Input image, or `-` for stdin.
        input: PathBuf,
        /// Output image.
        output: PathBuf,
        /// none, zstd or zstd:LEVEL (default: keep each chunk's encoding).
        #[arg(long)]
        compress: Option<repack::Compression>,
        /// Largest chunk in pages: contiguous pages merged, longer chunks split.
        #[arg(long)]
        chunk_pages: Option<u32>,
        /// Store the pages of by-reference files, read from this host.
        #[arg(long, conflicts_with = "by_reference")]
        embed_files: bool,
        /// Drop stored pages of private file mappings equal to the file.
        #[arg(long)]
        by_reference: bool,
        /// Write format 1.N (1.0 to the newest this build knows); default:
        /// the oldest that can express the image. Refused when the image
        /// holds what 1.N cannot express.
        #[arg(long, value_name = "1.N", value_parser = repack::parse_format_version)]
        format_version: Option<u16>,
        /// Print the summary as JSON on stdout.
        #[arg(long)]
        json: bool,
    },
    /// What differs between two images. Exit 0 identical, 1 different,
    /// 2 on error. One of them may be `-` (stdin, held in memory).
    Diff {
        /// First image.
        a: PathBuf,
        /// Second image.
        b: PathBuf,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Would this image restart on this host? Exit 0 yes, 1 no, 2 unreadable.
    CheckHost {
        /// The image file, or `-` for stdin.
        image: PathBuf,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Write an ELF core file gdb opens with the program binary.
    Core {
        /// The image file, or `-` for stdin.
        image: PathBuf,
        /// The core file to write.
        #[arg(short = 'o', long)]
        output: PathBuf,
        /// Print what was written as JSON on stdout.
        #[arg(long)]
        json: bool,
    },
}

/// Runs an image subcommand; returns the process exit status.
pub fn run(args: ImageArgs) -> anyhow::Result<i32> {
    match args.cmd {
        ImageCmd::Inspect { image, json } => inspect::run(&image, json),
        ImageCmd::Validate { images, json } => Ok(validate::run(&images, json)),
        ImageCmd::Extract {
            image,
            region,
            range,
            name,
            output,
            all,
            json,
        } => {
            let sel = match (&region, &range, &name, &all) {
                (Some(r), ..) => extract::Selection::Region(r),
                (_, Some(r), ..) => extract::Selection::Range(r),
                (_, _, Some(n), _) => extract::Selection::Name(n),
                (.., Some(d)) => extract::Selection::All(d),
                _ => anyhow::bail!("give --region, --range, --name or --all"),
            };
            extract::run(&image, sel, output.as_deref(), json)
        }
        ImageCmd::Repack {
            input,
            output,
            compress,
            chunk_pages,
            embed_files,
            by_reference,
            format_version,
            json,
        } => {
            let opts = repack::RepackOptions {
                compress,
                chunk_pages,
                embed_files,
                by_reference,
                format_minor: format_version,
            };
            repack::run(&input, &output, &opts, json)
        }
        ImageCmd::Diff { a, b, json } => Ok(diff::run(&a, &b, json)),
        ImageCmd::CheckHost { image, json } => Ok(check_host::run(&image, json)),
        ImageCmd::Core {
            image,
            output,
            json,
        } => self::core::run(&image, &output, json),
    }
}
