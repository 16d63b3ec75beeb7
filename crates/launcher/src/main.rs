//! `portcullis-launcher`: the handler of `udssv2://` links on end-user machines.

#![forbid(unsafe_code)]

use clap::Parser;

/// Opens Portcullis connections from `udssv2://` links.
///
/// The launcher fetches its connection instructions from the broker end-to-end encrypted
/// under an ephemeral ML-KEM-768 key, verifies the operator's ML-DSA-65 signature on them
/// and runs the signed launcher script. This build knows the protocol (`--version`) but
/// does not handle links yet.
#[derive(Debug, Parser)]
#[command(name = "portcullis-launcher", version, about, long_about)]
struct Args {}

fn main() {
    let Args {} = Args::parse();
    let mut command = <Args as clap::CommandFactory>::command();
    // Nothing to run without a link handler: show what the program is.
    if command.print_long_help().is_err() {
        std::process::exit(1);
    }
}
