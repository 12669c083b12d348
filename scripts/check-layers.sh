#!/usr/bin/env bash
# No import cycles between the files of a crate: for every source file of the crates below,
# collect the sibling modules it names (`crate::MODULE`, `crate::{MODULE, ...}`) and fail when
# two files name each other. lib.rs is the root that declares the modules: not counted.
# Also: crates/control depends on no HTTP crate. Grep-based on purpose (no extra tool to
# install); comment lines are skipped.
set -euo pipefail
cd "$(dirname "$0")/.."

CRATES=(crates/gateway crates/control)

# Prints "FILE MODULE" for every sibling module FILE names.
uses() {
    local src=$1 f base
    for f in "$src"/*.rs; do
        base=$(basename "$f" .rs)
        [ "$base" = lib ] && continue
        grep -v '^\s*//' "$f" |
            grep -oE 'crate::(\{[^}]*\}|[a-z_][a-z0-9_]*)' |
            sed -E 's/^crate:://; s/[{}]//g; s/::[^,]*//g' |
            tr ',' '\n' | sed -E 's/^\s+//; s/\s+$//' |
            grep -E '^[a-z_][a-z0-9_]*$' |
            while read -r m; do
                if [ "$m" != "$base" ] && [ -f "$src/$m.rs" ]; then echo "$base $m"; fi
            done || true # a file that names no sibling is fine
    done | sort -u
}

status=0
for crate in "${CRATES[@]}"; do
    edges=$(uses "$crate/src")
    while read -r a b; do
        [ -z "$a" ] && continue
        if grep -qx "$b $a" <<<"$edges" && [[ "$a" < "$b" ]]; then
            echo "import cycle in $crate: $a.rs and $b.rs use each other" >&2
            status=1
        fi
    done <<<"$edges"
done
# The control plane is not HTTP: the gateway translates requests into calls on it.
if grep -qE '^(axum|hyper|hyper-util|http|http-body|http-body-util|tusk-gateway)[ .=]' crates/control/Cargo.toml; then
    echo "crates/control depends on an HTTP crate or on the gateway; it must not" >&2
    status=1
fi
if [ "$status" -eq 0 ]; then
    echo "check-layers: no import cycle between files in ${CRATES[*]}; crates/control has no HTTP dependency"
fi
exit "$status"
