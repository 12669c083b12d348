#!/usr/bin/env bash
# Smoke check of the cargo-fuzz targets in fuzz/: builds every target, replays its committed
# corpus (fuzz/corpus/<target>) and fuzzes it for a few seconds. Exits non-zero if any target
# crashes, hangs or fails an invariant; the input that did it is left in
# fuzz/artifacts/<target>/ (replay it with `cargo +nightly fuzz run -O <target> <file>`).
#
# FUZZ_SECONDS (default 5) sets the time per target; FUZZ_TARGETS a space-separated subset.
# Needs the nightly toolchain (installed with rustup when missing) and cargo-fuzz (installed
# from crates.io when missing).
set -euo pipefail
cd "$(dirname "$0")/.."

seconds="${FUZZ_SECONDS:-5}"

if ! cargo +nightly --version >/dev/null 2>&1; then
    echo "==> installing the nightly toolchain (cargo-fuzz needs it for -Zsanitizer)"
    if ! rustup toolchain install nightly --profile minimal; then
        # A machine without nightly (and without the network to fetch it) cannot run
        # libFuzzer targets; say so loudly rather than fail the whole suite.
        echo "fuzz-smoke: SKIPPED, no nightly toolchain here (rustup toolchain install nightly)" >&2
        exit 0
    fi
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "==> installing cargo-fuzz"
    cargo install cargo-fuzz --locked
fi

cd fuzz
targets="${FUZZ_TARGETS:-$(cargo +nightly fuzz list)}"
echo "==> building fuzz targets: $(echo $targets)"
build() {
    # cargo fuzz builds one target or all of them.
    if [ -n "${FUZZ_TARGETS:-}" ]; then
        for t in $targets; do cargo +nightly fuzz build -O "$t" || return 1; done
    else
        cargo +nightly fuzz build -O
    fi
}
build >/dev/null 2>build.log || {
    tail -n 40 build.log >&2
    echo "fuzz-smoke: building the fuzz targets failed (full log: fuzz/build.log)" >&2
    exit 1
}
rm -f build.log

bin="target/$(rustc +nightly -vV | sed -n 's/^host: //p')/release"
scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT
failed=()
for t in $targets; do
    mkdir -p "artifacts/$t" "$scratch/$t"
    args=(-max_total_time="$seconds" -rss_limit_mb=2048 -timeout=10 -print_final_stats=1
          -artifact_prefix="artifacts/$t/")
    [ -f "dict/$t.dict" ] && args+=(-dict="dict/$t.dict")
    # New inputs go to the scratch directory; the committed corpus is only read.
    if "$bin/$t" "${args[@]}" "$scratch/$t" "corpus/$t" >"$scratch/$t.log" 2>&1; then
        execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$scratch/$t.log")
        seeds=$(find "corpus/$t" -type f | wc -l)
        echo "fuzz $t: ok, ${execs:-?} runs in ${seconds}s over $seeds committed inputs"
    else
        failed+=("$t")
        grep -E 'panicked|ERROR: libFuzzer|SUMMARY|Test unit written' "$scratch/$t.log" | head -n 8 >&2 || true
        echo "fuzz $t: FAILED (input in fuzz/artifacts/$t/)"
    fi
done
if [ "${#failed[@]}" -gt 0 ]; then
    echo "fuzz-smoke: ${#failed[@]} target(s) failed: ${failed[*]}" >&2
    exit 1
fi
