#!/bin/sh
# smoke.sh — builds the libFuzzer targets with clang in a temp build dir and
# runs each for FUZZ_SECONDS (default 20) from the committed seed corpus.
# Exits non-zero when a target crashes (sanitizer report, abort, timeout or
# leak); the crashing input is kept in FUZZ_ARTIFACTS (default: the current
# directory) so it can be replayed with `<target> <file>`.
set -eu

src=$(cd "$(dirname "$0")/.." && pwd)
seconds=${FUZZ_SECONDS:-20}
artifacts=${FUZZ_ARTIFACTS:-$(pwd)}
cc=${FUZZ_CC:-}
if [ -z "$cc" ]; then
    for c in clang clang-14; do
        if command -v "$c" >/dev/null 2>&1; then cc=$c; break; fi
    done
fi
if [ -z "$cc" ]; then
    echo "smoke.sh: clang not found" >&2
    exit 1
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/tally-fuzz-XXXXXX")
trap 'rm -rf "$work"' EXIT INT TERM

echo "smoke.sh: building fuzz targets with $cc in $work"
cmake -S "$src" -B "$work/build" -DCMAKE_C_COMPILER="$cc" -DTALLY_FUZZ=ON \
    -DCMAKE_BUILD_TYPE=RelWithDebInfo >"$work/configure.log" 2>&1 || {
    cat "$work/configure.log" >&2
    exit 1
}
make -C "$work/build" -j2 fuzz_event fuzz_ingest >"$work/build.log" 2>&1 || {
    cat "$work/build.log" >&2
    exit 1
}

status=0
for target in fuzz_event fuzz_ingest; do
    mkdir -p "$work/corpus-$target"
    echo "smoke.sh: running $target for ${seconds}s"
    if ! "$work/build/fuzz/$target" -max_total_time="$seconds" -timeout=10 \
        -rss_limit_mb=2048 -max_len=65536 -print_final_stats=1 \
        -artifact_prefix="$artifacts/$target-" \
        "$work/corpus-$target" "$src/fuzz/corpus/$target" >"$work/$target.log" 2>&1; then
        tail -n 60 "$work/$target.log" >&2
        echo "smoke.sh: $target FAILED (artifact in $artifacts)" >&2
        status=1
    else
        grep -E 'stat::number_of_executed_units|Done' "$work/$target.log" || true
    fi
done
exit $status
