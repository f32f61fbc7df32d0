#!/bin/sh
# nats-cluster.sh: a local NATS JetStream cluster of three nats-server
# processes on loopback, for the tests, the demo and `tally bench ingest
# --replicate` (SPEC section 12, issue 13 item 5).
#
#   nats-cluster.sh start DIR       starts n1, n2, n3 (one cluster, JetStream
#                                   on, config and store under DIR/nN), waits
#                                   until JetStream has a meta leader, prints
#                                   the client URLs (comma-separated) on stdout
#                                   and writes them to DIR/urls
#   nats-cluster.sh stop DIR        stops the three (SIGTERM, then SIGKILL)
#   nats-cluster.sh kill DIR N      kill -9 node N (1..3), for fault tests
#   nats-cluster.sh start-node DIR N  starts node N again on its own ports
#   nats-cluster.sh urls DIR        prints the client URLs
#   nats-cluster.sh init DIR        only writes the configuration (prints the
#                                   URLs): a test starts `nats-server -c
#                                   DIR/nN.conf` itself, tied to its life
#   nats-cluster.sh wait DIR        waits until JetStream is ready on the three
#
# Ports are chosen free on 127.0.0.1 when the cluster is created and kept in
# DIR/nN.conf, so a node restarted later takes the same ones. Exit 0 on
# success, 1 on failure (the nodes' logs are in DIR/nN.log), 2 on usage.
set -eu

NODES="1 2 3"
# How long start waits for JetStream (seconds): a cold 3-node cluster elects
# its meta leader in a few seconds; a loaded 2-core machine takes longer.
READY_TIMEOUT_S=60
# The largest message the servers take: a record is at most a 4 MiB event
# plus its envelope (ledger/ledger_repl.h, TLY_REPL_RECORD_BYTES_MAX).
MAX_PAYLOAD=8MB

usage() {
    echo "usage: nats-cluster.sh start|stop|urls|init|wait DIR | kill|start-node DIR N" >&2
    exit 2
}

free_ports() { # N: prints N free loopback TCP ports, one per line
    python3 - "$1" <<'EOF'
import socket, sys
socks = []
for _ in range(int(sys.argv[1])):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    socks.append(s)
for s in socks:
    print(s.getsockname()[1])
EOF
}

write_configs() { # DIR
    dir=$1
    set -- $(free_ports 9)
    c1=$1 c2=$2 c3=$3 r1=$4 r2=$5 r3=$6 m1=$7 m2=$8 m3=$9
    routes="nats-route://127.0.0.1:$r1, nats-route://127.0.0.1:$r2, nats-route://127.0.0.1:$r3"
    for n in $NODES; do
        eval "cp=\$c$n rp=\$r$n mp=\$m$n"
        mkdir -p "$dir/n$n"
        cat >"$dir/n$n.conf" <<EOF
server_name: n$n
listen: 127.0.0.1:$cp
http: 127.0.0.1:$mp
max_payload: $MAX_PAYLOAD
jetstream {
    store_dir: "$dir/n$n"
    max_memory_store: 64MB
    max_file_store: 20GB
}
cluster {
    name: tally
    listen: 127.0.0.1:$rp
    routes: [$routes]
}
EOF
        echo "$cp" >"$dir/n$n.port"
        echo "$mp" >"$dir/n$n.http"
    done
    echo "nats://127.0.0.1:$c1,nats://127.0.0.1:$c2,nats://127.0.0.1:$c3" >"$dir/urls"
}

start_node() { # DIR N
    nats-server -c "$1/n$2.conf" >>"$1/n$2.log" 2>&1 &
    echo $! >"$1/n$2.pid"
}

node_alive() { # DIR N
    [ -f "$1/n$2.pid" ] && kill -0 "$(cat "$1/n$2.pid")" 2>/dev/null
}

# True when node N answers /jsz with a meta leader known.
node_ready() { # DIR N
    curl -fsS "http://127.0.0.1:$(cat "$1/n$2.http")/jsz" 2>/dev/null |
        grep -q '"leader": *"n[0-9]'
}

wait_ready() { # DIR NODES...
    dir=$1
    shift
    t=0
    while [ "$t" -lt $((READY_TIMEOUT_S * 10)) ]; do
        ok=1
        for n in "$@"; do
            if [ -f "$dir/n$n.pid" ] && ! node_alive "$dir" "$n"; then
                echo "node n$n exited: see $dir/n$n.log" >&2
                return 1
            fi
            node_ready "$dir" "$n" || ok=0
        done
        [ "$ok" = 1 ] && return 0
        sleep 0.1
        t=$((t + 1))
    done
    echo "JetStream not ready after ${READY_TIMEOUT_S}s: see $dir/n*.log" >&2
    return 1
}

stop_node() { # DIR N SIG
    node_alive "$1" "$2" || return 0
    pid=$(cat "$1/n$2.pid")
    kill "-$3" "$pid" 2>/dev/null || true
    t=0
    while kill -0 "$pid" 2>/dev/null && [ "$t" -lt 100 ]; do
        sleep 0.1
        t=$((t + 1))
    done
    kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null || true
    rm -f "$1/n$2.pid"
}

[ $# -ge 2 ] || usage
cmd=$1
dir=$2
command -v nats-server >/dev/null || { echo "nats-server is not installed (scripts/deps.sh)" >&2; exit 1; }
case $cmd in
start)
    mkdir -p "$dir"
    dir=$(cd "$dir" && pwd)
    [ -f "$dir/n1.conf" ] || write_configs "$dir"
    for n in $NODES; do node_alive "$dir" "$n" || start_node "$dir" "$n"; done
    wait_ready "$dir" $NODES
    cat "$dir/urls"
    ;;
stop)
    for n in $NODES; do stop_node "$dir" "$n" TERM; done
    ;;
kill)
    [ $# -eq 3 ] || usage
    stop_node "$dir" "$3" KILL
    ;;
start-node)
    [ $# -eq 3 ] || usage
    dir=$(cd "$dir" && pwd)
    node_alive "$dir" "$3" || start_node "$dir" "$3"
    ;;
urls)
    cat "$dir/urls"
    ;;
init)
    mkdir -p "$dir"
    dir=$(cd "$dir" && pwd)
    [ -f "$dir/n1.conf" ] || write_configs "$dir"
    cat "$dir/urls"
    ;;
wait)
    wait_ready "$dir" $NODES
    ;;
*)
    usage
    ;;
esac
