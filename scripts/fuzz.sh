#!/usr/bin/env bash
# Runs every fuzz target of fuzz/ for a number of seconds each, on the stable toolchain.
#
#   bash scripts/fuzz.sh [SECONDS] [TARGET...]    # default 60 s, every target
#   UPDATE_CORPUS=1 bash scripts/fuzz.sh 60        # also merge new inputs into fuzz/corpus
#
# The targets are ordinary cargo-fuzz targets (`cargo fuzz run handshake` works on a
# nightly toolchain). This script builds them with the same coverage instrumentation that
# cargo-fuzz uses, minus AddressSanitizer: Portcullis forbids `unsafe`, so what the fuzzers
# hunt for here is panics, overflows and runaway allocation, which the instrumented release
# build with debug assertions and overflow checks catches. It exits non-zero on a finding;
# the input that triggered it is kept under fuzz/artifacts/TARGET/.
set -euo pipefail
cd "$(dirname "$0")/.."

seconds="${1:-60}"
shift || true
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
    mapfile -t targets < <(sed -n 's/^name = "\(.*\)"$/\1/p' fuzz/Cargo.toml | grep -v '^portcullis-fuzz$')
fi

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/portcullis/target}/fuzz"
export RUSTFLAGS="-Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4 \
-Cllvm-args=-sanitizer-coverage-inline-8bit-counters -Cllvm-args=-sanitizer-coverage-pc-table \
-Cllvm-args=-sanitizer-coverage-trace-compares --cfg fuzzing -Cdebug-assertions -Coverflow-checks"

# An explicit --target keeps RUSTFLAGS off build scripts, as cargo-fuzz does.
host=$(rustc -vV | sed -n 's/^host: //p')
bin_dir="$CARGO_TARGET_DIR/$host/release"

echo "==> building fuzz targets: ${targets[*]}"
(cd fuzz && cargo build --release --locked --bins --target "$host")

status=0
for target in "${targets[@]}"; do
    scratch="$CARGO_TARGET_DIR/corpus/$target"
    mkdir -p "$scratch" "fuzz/corpus/$target" "fuzz/artifacts/$target"
    echo "==> fuzzing $target for $seconds s"
    if ! "$bin_dir/$target" "$scratch" "fuzz/corpus/$target" \
        -max_total_time="$seconds" -max_len=70000 -rss_limit_mb=2048 \
        -artifact_prefix="fuzz/artifacts/$target/" -print_final_stats=1 2>"$CARGO_TARGET_DIR/$target.log"; then
        tail -n 40 "$CARGO_TARGET_DIR/$target.log" >&2
        echo "error: fuzz target $target found a failing input (see fuzz/artifacts/$target/)" >&2
        status=1
        continue
    fi
    grep -E 'stat::number_of_executed_units|stat::new_units_added' "$CARGO_TARGET_DIR/$target.log" \
        | sed "s/^/    $target: /"
    if [ "${UPDATE_CORPUS:-0}" = 1 ]; then
        "$bin_dir/$target" -merge=1 "fuzz/corpus/$target" "$scratch" \
            2>>"$CARGO_TARGET_DIR/$target.log"
    fi
done
exit $status
