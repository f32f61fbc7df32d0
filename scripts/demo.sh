#!/bin/sh
# The main job, end to end, on one machine: installs what is missing, builds
# Tally, starts the whole stack (`tally up`) on a fresh data directory with
# the embedded defaults, generates a realistic data set (`tally gen`), sends
# it through the ledger (`tally send`), waits until every shard has folded
# it, prints the finance summary and the finance pack (each program's period
# report, the largest balances its next close expires, one partner statement
# as PDF and HTML with the paths printed), verifies the audit chain, then
# stops the stack cleanly.
#
# Environment: TALLY_DEMO_EVENTS (default 50000), TALLY_DEMO_SEED (default 7).
set -eu
cd "$(dirname "$0")/.."
sh scripts/deps.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j "$(nproc)" >/dev/null
TALLY="$PWD/build/tally"
WORK=$(mktemp -d /tmp/tally-demo-XXXXXX)
DATA="$WORK/data"
EVENTS=${TALLY_DEMO_EVENTS:-50000}
SEED=${TALLY_DEMO_SEED:-7}

UP_PID=""
cleanup() {
    if [ -n "$UP_PID" ] && kill -0 "$UP_PID" 2>/dev/null; then
        kill -TERM "$UP_PID" 2>/dev/null || true
        wait "$UP_PID" 2>/dev/null || true
    fi
}
trap cleanup EXIT INT TERM

echo "== starting the stack: tally up --data $DATA (log in $WORK/up.log)"
"$TALLY" up --data "$DATA" >"$WORK/up.log" 2>&1 &
UP_PID=$!

echo "== generating $EVENTS events (seed $SEED)"
"$TALLY" gen --seed "$SEED" --events "$EVENTS" >"$WORK/events.jsonl"

echo "== sending them through the ledger"
"$TALLY" send "$WORK/events.jsonl" || true

HEAD=$("$TALLY" status --data "$DATA" --json | sed -n 's/.*"head": *\([0-9]*\).*/\1/p')
echo "== waiting until every shard has applied seq $HEAD"
"$TALLY" wait --seq "$HEAD" --timeout 120

echo
echo "== finance summary"
"$TALLY" summary --data "$DATA"

echo
echo "== finance pack"
PROGRAMS=$("$TALLY" liabilities --data "$DATA" --json |
    grep -o '"program": *"[^"]*"' | sed 's/.*"\([^"]*\)"$/\1/')
for PROGRAM in $PROGRAMS; do
    echo
    echo "-- period report of $PROGRAM"
    "$TALLY" report --data "$DATA" --program "$PROGRAM"
done
for PROGRAM in $PROGRAMS; do
    echo
    echo "-- the largest balances the next close of $PROGRAM expires"
    # The heading block, the program's line, the column headings, ten rows.
    "$TALLY" expiring --data "$DATA" --program "$PROGRAM" | head -n 14
done
# ---- finance pack: partner statement (issue 11 item 6) -------------------
# The top partner by available MDF, its latest rebate period; `tally
# statement` prints each path it wrote.
PARTNER=$("$TALLY" summary --data "$DATA" --json |
    sed -n 's/.*"top":\[{"partner":"\([^"]*\)".*/\1/p')
PERIOD=$("$TALLY" rebate "$PARTNER" --data "$DATA" --json |
    sed -n 's/.*"period":"\([^"]*\)".*/\1/p')
echo
echo "-- the statement of $PARTNER for $PERIOD"
for ext in pdf html; do
    "$TALLY" statement "$PARTNER" --period "$PERIOD" --data "$DATA" \
        --out "$WORK/statement-$PARTNER-$PERIOD.$ext"
done
# ---- end of the statement's spot ------------------------------------------

echo
echo "== audit"
"$TALLY" audit verify --data "$DATA"

echo
echo "== stopping the stack"
kill -TERM "$UP_PID"
wait "$UP_PID"
UP_PID=""
echo "stopped cleanly; data left in $DATA"
