#!/bin/bash
# getfloor.sh: what any server reaches for a small cached answer with wrk
# -t2 -c64 beside it on this machine (issue 4, docs/benchmarks.md "HKP:
# the floor of a cached get"). Alternates ROUNDS rounds of: nginx with 1
# and with 2 worker processes serving a static file, an empty net/http
# handler and a minimal HTTP/1.1 loop in Go (getfloor's main.go), each
# with a body of SIZE bytes; then prints req/s, p50, p99 and the server's
# CPU per request of every run, and the medians.
#
#   testdata/getfloor/getfloor.sh [ROUNDS] [SIZE]     (defaults 3, 1600)
set -eu
ROUNDS=${1:-3}; SIZE=${2:-1600}; DUR=${DUR:-8s}
cd "$(dirname "$0")/../.."
W=$(mktemp -d /tmp/getfloor.XXXXXX)
trap 'rm -rf "$W"' EXIT
go build -o "$W/getfloor" ./testdata/getfloor
mkdir -p "$W/html/pks"
head -c "$SIZE" /dev/zero | tr '\0' 'k' > "$W/html/pks/lookup"
PORT=$((20000 + RANDOM % 20000))
for n in 1 2; do
  cat > "$W/nginx$n.conf" <<CONF
worker_processes $n;
error_log $W/nginx-error.log;
pid $W/nginx$n.pid;
events { worker_connections 1024; }
http { access_log off; server { listen 127.0.0.1:$PORT; root $W/html; location / { default_type application/pgp-keys; } } }
CONF
done
cpu() { local s=0; for p in "$@"; do s=$((s + $(awk '{print $14+$15}' /proc/$p/stat))); done; echo $s; }
run() { # label, then the server's pids
  local label=$1; shift
  sleep 0.5
  wrk -t2 -c64 -d2s "http://127.0.0.1:$PORT/pks/lookup?op=get" >/dev/null
  local c0; c0=$(cpu "$@")
  wrk -t2 -c64 -d"$DUR" --latency "http://127.0.0.1:$PORT/pks/lookup?op=get" > "$W/wrk.txt"
  local c1; c1=$(cpu "$@")
  awk -v l="$label" -v c=$((c1 - c0)) -v t="$(getconf CLK_TCK)" '
    function ms(v) { if (v ~ /us$/) return v/1000; if (v ~ /ms$/) return v+0; if (v ~ /s$/) return v*1000; return v }
    /requests in/ { r = $1 } /Requests\/sec/ { rps = $2 } / 50%/ { p50 = ms($2) } / 99%/ { p99 = ms($2) }
    END { printf "%-10s rps %.0f p50 %.2f p99 %.2f ms srv %.1f us/req\n", l, rps, p50, p99, c / t * 1e6 / r }' "$W/wrk.txt" | tee -a "$W/all.txt"
}
for r in $(seq "$ROUNDS"); do
  for n in 1 2; do
    nginx -c "$W/nginx$n.conf" -p "$W" 2>/dev/null
    sleep 0.3
    run "nginx-$n" $(pgrep -P "$(cat "$W/nginx$n.pid")") "$(cat "$W/nginx$n.pid")"
    kill "$(cat "$W/nginx$n.pid")"; sleep 0.5
  done
  for m in nethttp loop; do
    "$W/getfloor" -mode $m -addr "127.0.0.1:$PORT" -size "$SIZE" & P=$!
    run "go-$m" $P
    kill $P; wait $P 2>/dev/null || true
  done
done
echo "medians of $ROUNDS:"
awk '{ k = $1; n[k]++; rps[k, n[k]] = $3; p50[k, n[k]] = $5; p99[k, n[k]] = $7; cpu[k, n[k]] = $10 }
  function med(a, k, m,   i, j, v, t) { for (i = 1; i <= m; i++) v[i] = a[k, i]
    for (i = 1; i <= m; i++) for (j = i + 1; j <= m; j++) if (v[j] < v[i]) { t = v[i]; v[i] = v[j]; v[j] = t }
    return m % 2 ? v[(m + 1) / 2] : (v[m / 2] + v[m / 2 + 1]) / 2 }
  END { for (k in n) printf "%-10s rps %.0f p50 %.2f p99 %.2f ms srv %.1f us/req\n", k, med(rps, k, n[k]), med(p50, k, n[k]), med(p99, k, n[k]), med(cpu, k, n[k]) }' "$W/all.txt" | sort
