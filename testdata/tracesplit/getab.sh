#!/bin/bash
# getab.sh: one measurement of cached op=get at 64 connections, for
# alternating A/B runs of two grapevine binaries (docs/benchmarks.md, get6).
#
#   [EXTRAENV="GOMAXPROCS=3 ..."] getab.sh BIN LABEL STORE PATHS OUT [trace|prof]
#
# STORE is an imported basedir (its sksconf is overwritten), PATHS a file
# of /pks/lookup paths (grapevine-bench's 1,000 get paths), OUT a directory
# for the logs. The daemon is started on STORE, warmed 5 s by wrk -t2 -c64,
# then measured 10 s; printed: req/s and wrk's percentiles, the daemon's
# utime+stime and wrk's per request, GC cycles per 100k requests (from
# GODEBUG=gctrace=1). "trace" takes a 3 s execution trace into OUT
# (tracesplit reads it), "prof" CPU and allocation profiles.
set -u
BIN=$1; LABEL=$2; ST=$3; PATHS=$4; OUT=$5; MODE=${6:-}
mkdir -p "$OUT"
HP=$((20000 + RANDOM % 20000)); MP=$((HP+1)); RP=$((HP+2))
CONF=$(printf 'hostname: 127.0.0.254\nhkp_address: 127.0.0.1\nhkp_port: %d\nrecon_address: 127.0.0.1\nrecon_port: %d\ndontgossip:\n' $HP $RP)
[ -n "$MODE" ] && CONF="$CONF"$'\n'"grapevine_metrics_address: 127.0.0.1:$MP"
echo "$CONF" > "$ST/sksconf"
cat > "$OUT/get.lua" <<LUA
local paths = {}
for line in io.lines("$PATHS") do paths[#paths + 1] = line end
local n = 0
function setup(thread) n = n + 1; thread:set("id", n) end
local i = 0
function init(args) i = ((id or 1) * 7919) % #paths end
function request()
  i = i % #paths + 1
  return wrk.format("GET", paths[i])
end
function done(summary, latency, requests)
  io.write(string.format("RESULT reqs %d dur_us %d p50 %d p90 %d p99 %d p999 %d max %d errs %d\n", summary.requests, summary.duration,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency:percentile(99.9), latency.max,
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.status + summary.errors.timeout))
end
LUA
LOG=$OUT/serve-$LABEL.log
env GRAPEVINE_PPROF=1 GODEBUG=gctrace=1 ${EXTRAENV:-} "$BIN" serve --basedir "$ST" > "$LOG" 2>&1 &
SP=$!
for i in $(seq 100); do curl -sf "http://127.0.0.1:$HP/pks/health" >/dev/null && break; sleep 0.2; done
wrk -t2 -c64 -d5s -s "$OUT/get.lua" "http://127.0.0.1:$HP" >/dev/null
cpu() { awk '{print $14+$15}' /proc/$1/stat; }
G0=$(grep -c '^gc ' "$LOG"); C0=$(cpu $SP)
PIDS=""
if [ "$MODE" = trace ]; then (sleep 3; curl -s -o "$OUT/trace-$LABEL.out" "http://127.0.0.1:$MP/debug/pprof/trace?seconds=3") & PIDS="$PIDS $!"; fi
if [ "$MODE" = prof ]; then
  (sleep 1; curl -s -o "$OUT/cpu-$LABEL.pprof" "http://127.0.0.1:$MP/debug/pprof/profile?seconds=8") & PIDS="$PIDS $!"
  (sleep 1; curl -s -o "$OUT/allocs-$LABEL.pprof" "http://127.0.0.1:$MP/debug/pprof/allocs?seconds=8") & PIDS="$PIDS $!"
fi
/usr/bin/time -f "WRKCPU %U %S" wrk -t2 -c64 -d10s -s "$OUT/get.lua" "http://127.0.0.1:$HP" > "$OUT/wrk-$LABEL.txt" 2>&1
C1=$(cpu $SP); G1=$(grep -c '^gc ' "$LOG")
[ -n "$PIDS" ] && wait $PIDS
kill $SP; wait $SP 2>/dev/null
set -- $(grep RESULT "$OUT/wrk-$LABEL.txt"); REQS=$3; DUR=$5; P50=$7; P99=${11}; P999=${13}; MAX=${15}; ERR=${17}
set -- $(grep WRKCPU "$OUT/wrk-$LABEL.txt"); WU=$2; WS=$3
awk -v l="$LABEL" -v r=$REQS -v d=$DUR -v p50=$P50 -v p99=$P99 -v p999=$P999 -v mx=$MAX -v e=$ERR -v c=$((C1-C0)) -v t=$(getconf CLK_TCK) \
  -v wu=$WU -v ws=$WS -v g=$((G1-G0)) -v ld="$(cut -d' ' -f1 /proc/loadavg)" \
  'BEGIN{printf "%s rps %.0f p50 %.2f p99 %.2f p99.9 %.2f max %.1f ms; srv %.1f us/req wrk %.1f us/req; gc/100k %.1f; err %d; load %s\n", l, r/(d/1e6), p50/1000, p99/1000, p999/1000, mx/1000, c/t*1e6/r, (wu+ws)*1e6/r, g*1e5/r, e, ld}'
