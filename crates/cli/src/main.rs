//! `portcullis`: the server-side command (broker, tunnel server, admin, dev stack).

#![forbid(unsafe_code)]

use clap::Parser;

/// Portcullis: a post-quantum connection broker for remote desktops and services.
///
/// Subcommands (`dev`, `broker`, `tunnel`, `admin`) arrive as their servers are built; this
/// build only reports its version and the protocol it implements.
#[derive(Debug, Parser)]
#[command(name = "portcullis", version, about, long_about)]
struct Args {}

fn main() {
    let Args {} = Args::parse();
    let mut command = <Args as clap::CommandFactory>::command();
    if command.print_long_help().is_err() {
        std::process::exit(1);
    }
}
