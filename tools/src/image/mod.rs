//! `ckpt image inspect|validate|extract`: read images offline.

pub mod extract;
pub mod inspect;
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
        /// The image file.
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
    /// Write the raw bytes of memory regions (pages not stored read as zeros).
    Extract {
        /// The image file.
        image: PathBuf,
        /// A region by index (`3`) or by an address inside it (`0x7f...`).
        #[arg(long, conflicts_with = "all", required_unless_present = "all")]
        region: Option<String>,
        /// Output file for --region (default: stdout).
        #[arg(short = 'o', long, requires = "region")]
        output: Option<PathBuf>,
        /// Write every region into this directory.
        #[arg(long)]
        all: Option<PathBuf>,
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
            output,
            all,
        } => extract::run(&image, region.as_deref(), output.as_deref(), all.as_deref()),
    }
}
