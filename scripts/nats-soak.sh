#!/bin/sh
# nats-soak.sh [KILLS] [DIR]: fault test (a) and (e) of issue 13, too long
# for CI: a replicated writer and a standby on a local three-node cluster,
# three producers sending without pause (`tally send --ingest W,S`), and
# KILLS times (default 50) the current writer killed with SIGKILL at a
# random moment; the standby takes over, the killed one comes back as the
# standby. Afterwards every event the producers were acknowledged is in the
# log exactly once (each send exits 0 only when all its events are
# acknowledged, and the log holds exactly as many records as distinct
# events were sent), each at the seq it was acknowledged with (every send
# writes --receipts, checked against the log), the chain verifies on the
# last writer, on the standby and on the stream (read back by a fresh
# ledger), a consumer that read the stream (`tally consume --nats`) through
# every kill ends with the views of a replay of the log (equal digests),
# and the take-over time, from the kill to the new writer's first
# acknowledgement, is printed as p50 and max. Needs a built tree
# (build/tally). Exit 0 when all holds.
#
# With WHAT = nodes (the third argument; default writers) the writer stays
# and one of the three JetStream servers is killed instead, KILLS times at
# random (kill -9, back after 0.5-3 s): the loss of a machine of the
# cluster under load, where a batch in flight may be cut off mid-way (the
# ledger's own publishing connection with it); the same checks hold.
set -eu

KILLS=${1:-50}
DIR=${2:-$(mktemp -d /tmp/tally-soak-XXXXXX)}
WHAT=${3:-writers}
case $WHAT in writers | nodes) ;; *) echo "usage: nats-soak.sh [KILLS] [DIR] [writers|nodes]" >&2; exit 2 ;; esac
ROOT=$(cd "$(dirname "$0")/.." && pwd)
TALLY=${TALLY_BIN:-$ROOT/build/tally}
# Events per producer file: a round of a producer; rounds go on until the
# kills are done.
ROUND_EVENTS=20000
PRODUCERS=3
TAKEOVER_S=1

mkdir -p "$DIR"
URLS=$(sh "$ROOT/scripts/nats-cluster.sh" start "$DIR/nats")
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
for n in a b c; do
    for s in ingest events logread; do eval "${n}_$s=tcp://127.0.0.1:$(port)"; done
done

start() { # NAME [--standby]
    n=$1
    shift
    eval "ing=\$${n}_ingest ev=\$${n}_events lr=\$${n}_logread"
    "$TALLY" ledger --data "$DIR/$n" --ingest "$ing" --events "$ev" --log-read "$lr" \
        --replicate "$URLS" --name "$n" --takeover-after $TAKEOVER_S "$@" >>"$DIR/$n.log" 2>&1 &
    echo $! >"$DIR/$n.pid"
}

cleanup() {
    touch "$DIR/stop"
    for n in a b c cons; do [ -f "$DIR/$n.pid" ] && kill "$(cat "$DIR/$n.pid")" 2>/dev/null || true; done
    sh "$ROOT/scripts/nats-cluster.sh" stop "$DIR/nats" || true
}
trap cleanup EXIT

start a
sleep 1
start b --standby
sleep 1
# A consumer on the stream through every kill [N6].
"$TALLY" consume --nats "$URLS" --data "$DIR/cons" --shard 0/1 >>"$DIR/cons.log" 2>&1 &
echo $! >"$DIR/cons.pid"

producer() { # P: rounds of ROUND_EVENTS until DIR/stop exists
    p=$1
    r=0
    while [ ! -f "$DIR/stop" ]; do
        python3 - "$DIR/p$p-$r.jsonl" "p$p-r$r" $ROUND_EVENTS <<'EOF'
import json, sys
path, prefix, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
with open(path, "w") as f:
    for i in range(n):
        f.write(json.dumps({"type": "sale", "id": "%s-%d" % (prefix, i), "at": 1735693342313,
                            "partner": "acme", "sku": "SKU-1", "qty": 1, "amount": 100 + i % 900,
                            "currency": "USD"}) + "\n")
EOF
        if "$TALLY" send --ingest "$a_ingest,$b_ingest" --ack-timeout-ms 1000 --source "dist-$p" \
            --receipts "$DIR/p$p-$r.receipts" "$DIR/p$p-$r.jsonl" >"$DIR/p$p-$r.out" \
            2>"$DIR/p$p-$r.err"; then
            echo "$r" >>"$DIR/p$p.done"
        else
            echo "producer $p round $r failed: $(tail -n 2 "$DIR/p$p-$r.err")" >&2
            echo "$r" >>"$DIR/p$p.failed"
        fi
        r=$((r + 1))
    done
}
for p in $(seq 1 $PRODUCERS); do producer "$p" & done

writer=a
standby=b
for k in $(seq 1 "$KILLS"); do
    sleep "$(python3 -c 'import random; print(round(random.uniform(0.3, 2.0), 2))')"
    if [ "$WHAT" = nodes ]; then
        n=$(python3 -c 'import random; print(random.randint(1, 3))')
        sh "$ROOT/scripts/nats-cluster.sh" kill "$DIR/nats" "$n"
        sleep "$(python3 -c 'import random; print(round(random.uniform(0.5, 3.0), 2))')"
        sh "$ROOT/scripts/nats-cluster.sh" start-node "$DIR/nats" "$n"
        sh "$ROOT/scripts/nats-cluster.sh" wait "$DIR/nats" ||
            { echo "kill $k: node $n's JetStream not ready again" >&2; exit 1; }
        echo "kill $k/$KILLS done: node $n back"
        continue
    fi
    before=$(grep -c "first acknowledgement as the writer" "$DIR/$standby.log" || true)
    date -u +%Y-%m-%dT%H:%M:%S.%3NZ >>"$DIR/kills"
    kill -9 "$(cat "$DIR/$writer.pid")"
    t=0
    while [ "$(grep -c "first acknowledgement as the writer" "$DIR/$standby.log" || true)" -le "$before" ]; do
        sleep 0.05
        t=$((t + 1))
        [ $t -lt 1200 ] || { echo "kill $k: no take-over within 60 s" >&2; exit 1; }
    done
    grep "first acknowledgement as the writer" "$DIR/$standby.log" | tail -n 1 | cut -c1-24 >>"$DIR/acks"
    start $writer --standby
    tmp=$writer
    writer=$standby
    standby=$tmp
    echo "kill $k/$KILLS done: writer now $writer"
done
touch "$DIR/stop"
wait_producers() {
    while pgrep -f "tally send --ingest $a_ingest" >/dev/null; do sleep 0.5; done
}
sleep 1
wait_producers
sleep $((TAKEOVER_S + 2))

failed=$(cat "$DIR"/p*.failed 2>/dev/null | wc -l)
rounds=$(cat "$DIR"/p*.done 2>/dev/null | wc -l)
# Rounds cut short by the stop are not counted: only completed sends.
expect=$(( (rounds + failed) * ROUND_EVENTS ))
kill "$(cat "$DIR/a.pid")" "$(cat "$DIR/b.pid")"
sleep 2
ha=$("$TALLY" status --data "$DIR/a" 2>/dev/null | awk '/Ledger head/ {print $3}')
hb=$("$TALLY" status --data "$DIR/b" 2>/dev/null | awk '/Ledger head/ {print $3}')
"$TALLY" audit verify --data "$DIR/a" >"$DIR/verify-a" 2>&1 && va=ok || va=FAIL
"$TALLY" audit verify --data "$DIR/b" >"$DIR/verify-b" 2>&1 && vb=ok || vb=FAIL
# The stream itself, read into a fresh log by a third ledger (a standby).
start c --standby
t=0
while [ "$("$TALLY" status --data "$DIR/c" 2>/dev/null | awk '/Ledger head/ {print $3}')" != "$expect" ] &&
    [ $t -lt 600 ]; do
    sleep 0.1
    t=$((t + 1))
done
kill "$(cat "$DIR/c.pid")"
sleep 1
hc=$("$TALLY" status --data "$DIR/c" 2>/dev/null | awk '/Ledger head/ {print $3}')
"$TALLY" audit verify --data "$DIR/c" >"$DIR/verify-c" 2>&1 && vc=ok || vc=FAIL
# Every receipt's seq is the seq the log holds that (source, id) at.
"$TALLY" audit export --data "$DIR/c" >"$DIR/export.jsonl"
if python3 - "$DIR" >"$DIR/receipts-check" <<'EOF'
import glob, json, os, sys
d = sys.argv[1]
seq = {}
for line in open(os.path.join(d, "export.jsonl")):
    r = json.loads(line)
    seq[(r["source"], r["event"]["id"])] = r["seq"]
n = bad = 0
for path in glob.glob(os.path.join(d, "p*-*.receipts")):
    source = "dist-" + os.path.basename(path)[1:].split("-")[0]
    for line in open(path):
        _, eid, s, _ = line.split()
        n += 1
        if seq.get((source, eid)) != int(s):
            bad += 1
            if bad <= 5:
                print("receipt %s %s seq %s, log %s" % (source, eid, s, seq.get((source, eid))))
print("receipts %d, at another seq than the log's %d" % (n, bad))
sys.exit(1 if bad or n == 0 else 0)
EOF
then vr=ok; else vr=FAIL; fi
# The consumer that read the stream through the kills, brought to the head,
# holds the views of a replay of the log.
kill "$(cat "$DIR/cons.pid")" 2>/dev/null || true
sleep 1
"$TALLY" consume --nats "$URLS" --data "$DIR/cons" --shard 0/1 --exit-at-head >>"$DIR/cons.log" 2>&1
"$TALLY" audit digest --views "$DIR/cons/views" >"$DIR/digest-cons" 2>&1
"$TALLY" audit replay --data "$DIR/c" --out "$DIR/replay" >"$DIR/digest-replay" 2>&1
cmp -s "$DIR/digest-cons" "$DIR/digest-replay" && vd=ok || vd=FAIL
echo "kills $KILLS, producer rounds completed $rounds, failed $failed; events sent $expect"
echo "log heads: a $ha, b $hb, stream (c) $hc; audit verify: a $va, b $vb, c $vc"
echo "$(tail -n 1 "$DIR/receipts-check"): $vr; consumer on the stream = replay: $vd ($(head -n 1 "$DIR/digest-cons"))"
[ "$WHAT" = nodes ] || python3 - "$DIR/kills" "$DIR/acks" <<'EOF'
import sys, datetime
def read(p):
    return [datetime.datetime.strptime(l.strip()[:23], "%Y-%m-%dT%H:%M:%S.%f") for l in open(p)]
ks, acks = read(sys.argv[1]), read(sys.argv[2])
d = sorted((a - k).total_seconds() * 1000 for k, a in zip(ks, acks))
if d:
    print("take-over, kill to first acknowledgement: n %d, p50 %.0f ms, max %.0f ms"
          % (len(d), d[len(d) // 2], d[-1]))
EOF
[ "$failed" = 0 ] && [ "$va$vb$vc$vr$vd" = okokokokok ] && [ "$ha" = "$expect" ] &&
    [ "$hb" = "$expect" ] &&
    [ "$hc" = "$expect" ]
