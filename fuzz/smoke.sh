#!/bin/sh
# smoke.sh — builds the libFuzzer targets with clang in a temp build dir and
# runs each for FUZZ_SECONDS (default 10) from its committed seeds in
# fuzz/corpus/<target>/, FUZZ_JOBS (default 2) targets at a time, then prints
# the executions each ran and their total. The whole run (build included)
# takes about a minute and a half on two cores.
#
# Exits non-zero when a target crashes (sanitizer report, abort, timeout or
# leak); the crashing input is kept in FUZZ_ARTIFACTS (default: the current
# directory) so it can be replayed with `<target> <file>`. FUZZ_TARGETS
# (default: all) picks targets, FUZZ_CC the compiler.
set -eu

src=$(cd "$(dirname "$0")/.." && pwd)
seconds=${FUZZ_SECONDS:-10}
jobs=${FUZZ_JOBS:-2}
artifacts=${FUZZ_ARTIFACTS:-$(pwd)}
targets=${FUZZ_TARGETS:-"fuzz_event fuzz_ingest fuzz_logread fuzz_query fuzz_jsonl fuzz_csv
    fuzz_state fuzz_engine_load fuzz_auth fuzz_endpoints fuzz_web"}
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

echo "smoke.sh: building $targets with $cc in $work"
cmake -S "$src" -B "$work/build" -DCMAKE_C_COMPILER="$cc" -DTALLY_FUZZ=ON \
    -DCMAKE_BUILD_TYPE=RelWithDebInfo >"$work/configure.log" 2>&1 || {
    cat "$work/configure.log" >&2
    exit 1
}
# shellcheck disable=SC2086 # targets is a list
make -C "$work/build" -j2 $targets >"$work/build.log" 2>&1 || {
    cat "$work/build.log" >&2
    exit 1
}

# Longest input of a target: the query service refuses a request over
# TLY_QUERY_REQUEST_BYTES_MAX (64 KiB) unread, so its inputs may pass it.
max_len() {
    case $1 in
    fuzz_query) echo 70000 ;;
    *) echo 65536 ;;
    esac
}

# Runs one target; its exit status goes to $work/$1.rc, its output to .log.
run_one() {
    mkdir -p "$work/corpus-$1"
    rc=0
    # TMPDIR: fuzz_endpoints' and fuzz_web's data directories go with
    # $work, crash or not.
    TMPDIR="$work" "$work/build/fuzz/$1" -max_total_time="$seconds" -timeout=10 \
        -rss_limit_mb=2048 -max_len="$(max_len "$1")" -print_final_stats=1 \
        -artifact_prefix="$artifacts/$1-" \
        "$work/corpus-$1" "$src/fuzz/corpus/$1" >"$work/$1.log" 2>&1 || rc=$?
    echo "$rc" >"$work/$1.rc"
}

echo "smoke.sh: running each target for ${seconds}s, $jobs at a time"
# shellcheck disable=SC2086 # targets is a list
set -- $targets
while [ $# -gt 0 ]; do
    pids=""
    n=0
    while [ $# -gt 0 ] && [ "$n" -lt "$jobs" ]; do
        run_one "$1" &
        pids="$pids $!"
        n=$((n + 1))
        shift
    done
    for p in $pids; do wait "$p" || true; done
done

status=0
total=0
for t in $targets; do
    rc=$(cat "$work/$t.rc" 2>/dev/null || echo 1)
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$work/$t.log" | tail -n 1)
    units=$(sed -n 's/^stat::new_units_added: *//p' "$work/$t.log" | tail -n 1)
    if [ "$rc" != 0 ]; then
        tail -n 60 "$work/$t.log" >&2
        echo "smoke.sh: $t FAILED (exit $rc; artifact in $artifacts)" >&2
        status=1
    fi
    echo "smoke.sh: $t: ${execs:-0} executions in ${seconds}s, ${units:-0} new inputs, exit $rc"
    total=$((total + ${execs:-0}))
done
echo "smoke.sh: $total executions in all"
exit $status
