//! `ckpt`: transparent checkpoint/restart for Linux programs.

use ckpt_tools::{command, coordinator, demo, launch, restart, secret};

use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;

#[derive(Parser)]
#[command(
    name = "ckpt",
    version,
    about = "Transparent checkpoint/restart for Linux programs"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

/// Where the coordinator is.
#[derive(Args, Debug, Clone)]
struct CoordArgs {
    /// Coordinator host.
    #[arg(long, env = "CKPT_COORD_HOST", default_value = "127.0.0.1")]
    coord_host: String,
    /// Coordinator port.
    #[arg(long, env = "CKPT_COORD_PORT", default_value_t = ckpt_protocol::DEFAULT_PORT)]
    coord_port: u16,
    /// Runtime directory (secret files, logs); default /tmp/ckpt-$USER.
    #[arg(long, env = "CKPT_TMPDIR")]
    tmpdir: Option<PathBuf>,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run a coordinator (with an interactive console unless --daemon).
    Coordinator {
        /// Port to listen on (0: any free port; see --port-file).
        #[arg(long, env = "CKPT_COORD_PORT", default_value_t = ckpt_protocol::DEFAULT_PORT)]
        port: u16,
        /// Write the port actually used to this file.
        #[arg(long)]
        port_file: Option<PathBuf>,
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1")]
        listen: String,
        /// Run in the background (no console; output to $CKPT_TMPDIR/ckpt-coordinator-<port>.log).
        #[arg(long)]
        daemon: bool,
        /// Exit when the last process disconnects.
        #[arg(long)]
        exit_on_last: bool,
        /// Checkpoint every S seconds (0: off).
        #[arg(long, default_value_t = 0)]
        interval: u64,
        /// Directory the images go to (default: each process's CKPT_DIR).
        #[arg(long, env = "CKPT_DIR")]
        ckpt_dir: Option<PathBuf>,
        /// Store page data uncompressed.
        #[arg(long)]
        no_compress: bool,
        /// Store the contents of open regular files.
        #[arg(long)]
        ckpt_open_files: bool,
        /// Keep the newest N generations of images (in ckpt_gen_<G>/ beside them).
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..))]
        keep: u64,
        /// Print nothing but errors.
        #[arg(long)]
        quiet: bool,
        /// Log every connection and command.
        #[arg(long)]
        debug: bool,
        /// Runtime directory; default /tmp/ckpt-$USER.
        #[arg(long, env = "CKPT_TMPDIR")]
        tmpdir: Option<PathBuf>,
    },
    /// Run PROGRAM under checkpoint control (starts a coordinator if none runs).
    Launch {
        #[command(flatten)]
        coord: CoordArgs,
        /// Directory the images go to (default: the current directory).
        #[arg(long, env = "CKPT_DIR")]
        ckpt_dir: Option<PathBuf>,
        /// Checkpoint every S seconds.
        #[arg(long)]
        interval: Option<u64>,
        /// Generations a coordinator started here keeps (default 1).
        #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
        keep: Option<u64>,
        /// Store page data uncompressed.
        #[arg(long)]
        no_compress: bool,
        /// Store the contents of open regular files.
        #[arg(long)]
        ckpt_open_files: bool,
        /// Say nothing about the coordinator.
        #[arg(long)]
        quiet: bool,
        /// Verbose logs under CKPT_TMPDIR (CKPT_DEBUG=1).
        #[arg(long)]
        debug: bool,
        /// The program.
        program: String,
        /// Its arguments.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Send a command to the coordinator.
    #[command(
        after_help = "Exit codes: 0 ok; 1 failed, or (status) no process connected; \
                            2 coordinator unreachable or refused; 3 checkpoint failed."
    )]
    Command {
        #[command(flatten)]
        coord: CoordArgs,
        /// Print the reply as JSON.
        #[arg(long)]
        json: bool,
        /// Print nothing but errors (the exit code tells the rest).
        #[arg(long)]
        quiet: bool,
        /// Checkpoint all processes, return at once.
        #[arg(long, group = "op")]
        checkpoint: bool,
        /// Checkpoint all processes, return when the images are complete.
        #[arg(long, group = "op")]
        bcheckpoint: bool,
        /// Status (exit 0 while a process is connected, 1 otherwise).
        #[arg(long, group = "op")]
        status: bool,
        /// List the processes.
        #[arg(long, group = "op")]
        list: bool,
        /// Kill all processes.
        #[arg(long, group = "op")]
        kill: bool,
        /// Kill all processes and stop the coordinator.
        #[arg(long, group = "op")]
        quit: bool,
        /// Set the checkpoint interval in seconds (0: off).
        #[arg(long, group = "op", value_name = "N")]
        interval: Option<u64>,
        /// Short form: c, bc, s, l, k, q, i N.
        #[arg(num_args = 0..=2)]
        short: Vec<String>,
    },
    /// Restart a process from its image (default: the manifest in CKPT_DIR or the current directory).
    Restart {
        #[command(flatten)]
        coord: CoordArgs,
        /// Directory of the manifest and new images (default: the current directory).
        #[arg(long, env = "CKPT_DIR")]
        ckpt_dir: Option<PathBuf>,
        /// Say nothing about the coordinator.
        #[arg(long)]
        quiet: bool,
        /// Verbose logs under CKPT_TMPDIR (CKPT_DEBUG=1).
        #[arg(long)]
        debug: bool,
        /// Files under OLD are under NEW now (a path prefix, whole components; repeatable).
        #[arg(long = "map-path", value_name = "OLD=NEW")]
        map_path: Vec<String>,
        /// Set NAME to VALUE in the restored program's environment (repeatable).
        #[arg(long = "set-env", value_name = "NAME=VALUE")]
        set_env: Vec<String>,
        /// Image files.
        images: Vec<PathBuf>,
    },
    /// Read images offline: inspect, validate, extract.
    Image(ckpt_tools::image::ImageArgs),
    /// Show checkpoint and restart on a bundled counting program.
    Demo,
}

fn target(c: &CoordArgs, interval: Option<u64>, quiet: bool, debug: bool) -> launch::CoordTarget {
    launch::CoordTarget {
        host: c.coord_host.clone(),
        port: c.coord_port,
        tmpdir: secret::tmpdir(c.tmpdir.as_deref()),
        interval,
        keep: None,
        quiet,
        debug,
    }
}

#[allow(clippy::too_many_arguments)]
fn command_op(
    checkpoint: bool,
    bcheckpoint: bool,
    status: bool,
    list: bool,
    kill: bool,
    quit: bool,
    interval: Option<u64>,
    short: &[String],
) -> Result<ckpt_protocol::Command, String> {
    use ckpt_protocol::Command as C;
    let flags = [
        (checkpoint, C::Checkpoint),
        (bcheckpoint, C::BlockingCheckpoint),
        (status, C::Status),
        (list, C::List),
        (kill, C::Kill),
        (quit, C::Quit),
    ];
    let long = flags
        .into_iter()
        .find(|f| f.0)
        .map(|f| f.1)
        .or(interval.map(C::Interval));
    match (long, short) {
        (Some(c), []) => Ok(c),
        (Some(_), _) => Err("give either a long option or a short command, not both".into()),
        (None, []) => Err("no command given (c, bc, s, l, k, q, i N)".into()),
        (None, [s]) => match s.as_str() {
            "c" => Ok(C::Checkpoint),
            "bc" => Ok(C::BlockingCheckpoint),
            "s" => Ok(C::Status),
            "l" => Ok(C::List),
            "k" => Ok(C::Kill),
            "q" => Ok(C::Quit),
            "i" => Err("i needs the interval in seconds: i N".into()),
            other => Err(format!(
                "unknown command '{other}' (c, bc, s, l, k, q, i N)"
            )),
        },
        (None, [i, n]) if i == "i" => n
            .parse()
            .map(C::Interval)
            .map_err(|_| format!("not a number of seconds: {n}")),
        (None, _) => Err(format!("unknown command '{}'", short.join(" "))),
    }
}

fn main() {
    let cli = Cli::parse();
    if matches!(cli.cmd, Cmd::Command { .. } | Cmd::Image(_)) {
        ckpt_tools::sys::default_sigpipe();
    }
    let result = match cli.cmd {
        Cmd::Coordinator {
            port,
            port_file,
            listen,
            daemon,
            exit_on_last,
            interval,
            ckpt_dir,
            no_compress,
            ckpt_open_files,
            keep,
            quiet,
            debug,
            tmpdir,
        } => {
            let ckpt_dir = ckpt_dir.map(|d| std::fs::canonicalize(&d).unwrap_or(d));
            coordinator::run(coordinator::Opts {
                port,
                port_file,
                listen,
                daemon,
                exit_on_last,
                interval,
                ckpt_dir,
                quiet,
                tmpdir: secret::tmpdir(tmpdir.as_deref()),
                compress: !no_compress,
                open_files: ckpt_open_files,
                keep,
                debug,
            })
        }
        Cmd::Launch {
            coord,
            ckpt_dir,
            interval,
            keep,
            no_compress,
            ckpt_open_files,
            quiet,
            debug,
            program,
            args,
        } => launch::run(launch::Opts {
            target: launch::CoordTarget {
                keep,
                ..target(&coord, interval, quiet, debug)
            },
            ckpt_dir,
            no_compress,
            open_files: ckpt_open_files,
            program,
            args,
        }),
        Cmd::Command {
            coord,
            json,
            quiet,
            checkpoint,
            bcheckpoint,
            status,
            list,
            kill,
            quit,
            interval,
            short,
        } => {
            match command_op(
                checkpoint,
                bcheckpoint,
                status,
                list,
                kill,
                quit,
                interval,
                &short,
            ) {
                Ok(op) => {
                    let t = target(&coord, None, true, false);
                    Ok(command::run(&t.host, t.port, &t.tmpdir, op, json, quiet))
                }
                Err(e) => {
                    eprintln!("ckpt command: {e}");
                    std::process::exit(64);
                }
            }
        }
        Cmd::Restart {
            coord,
            ckpt_dir,
            quiet,
            debug,
            map_path,
            set_env,
            images,
        } => restart::run(restart::Opts {
            target: target(&coord, None, quiet, debug),
            ckpt_dir,
            images,
            map_paths: map_path,
            set_env,
        }),
        Cmd::Image(args) => ckpt_tools::image::run(args),
        Cmd::Demo => demo::run(),
    };
    match result {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            eprintln!("ckpt: {e:#}");
            std::process::exit(1);
        }
    }
}
