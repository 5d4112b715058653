#!/usr/bin/env bash
# What recording metrics costs per delivered frame, in instructions (BENCHMARKS.md "Metrics
# on and off"). Wall-clock pairs on a small shared machine vary by more than the 3 % asked
# for; instruction counts do not depend on the machine's load. The shipped bench drives a
# node with metrics on under callgrind at two message counts; the difference between the two
# profiles is the marginal cost, free of startup and registration (argon2). Metrics code is
# chatnode::metrics::* and prometheus_client::* (self cost, plus Metrics::request inclusive)
# and the clock reads they add. Needs valgrind and a release build; takes a few minutes.
#   scripts/metrics-cost.sh [bench args...]   (default: the headline shape, 1000 and 3000)
set -euo pipefail
target="${CARGO_TARGET_DIR:-target}/release"
small="${SMALL:-1000}" large="${LARGE:-3000}"
shape=("$@")
[ ${#shape[@]} -gt 0 ] || shape=(--rooms 10 --receivers 50 --senders 10 --message-bytes 100)
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
cat > "$work/node.sh" <<EOF
#!/bin/sh
exec valgrind --tool=callgrind --callgrind-out-file="$work/out.\$CG_TAG" \
  --log-file="$work/vg.\$CG_TAG" "$(realpath "$target/chatnode")" "\$@"
EOF
chmod +x "$work/node.sh"
ulimit -n "$(ulimit -Hn)"

# One profile of `mode` (on|off) at `n` messages: "<total> <metrics> <clock> <deliveries>".
profile() {
  local mode=$1 n=$2 tag="$1.$2" extra=()
  [ "$mode" = on ] && extra=(--spawn-metrics)
  CG_TAG=$tag CHATNODE_BENCH_NODE_BIN="$work/node.sh" "$target/chatnode-bench" --spawn \
    "${extra[@]}" "${shape[@]}" --messages "$n" --json > "$work/bench.$tag.json"
  local deliveries
  deliveries=$(tail -n1 "$work/bench.$tag.json" | grep -o '"deliveries":[0-9]*' | head -n1 | cut -d: -f2)
  callgrind_annotate --threshold=100 "$work/out.$tag" > "$work/self.$tag"
  callgrind_annotate --inclusive=yes --threshold=100 "$work/out.$tag" > "$work/inc.$tag"
  awk -v d="$deliveries" -v inc="$work/inc.$tag" '
    function n(s) { gsub(",", "", s); return s + 0 }
    /PROGRAM TOTALS/ { total = n($1) }
    /clock_gettime/ && $1 ~ /^[0-9,]+$/ { clock += n($1) }
    /chatnode::metrics::|prometheus_client::/ && !/routes::|Metrics::request|Profiled/ {
      metrics += n($1) }
    END {
      while ((getline line < inc) > 0)
        if (line ~ /chatnode::metrics::Metrics::request /) { split(line, f, " "); metrics += n(f[1]) }
      print total, metrics, clock, d }' "$work/self.$tag"
}

read -r off_small_total _ off_small_clock off_small_d <<< "$(profile off "$small")"
read -r off_large_total _ off_large_clock off_large_d <<< "$(profile off "$large")"
read -r _ on_small_metrics on_small_clock _ <<< "$(profile on "$small")"
read -r _ on_large_metrics on_large_clock _ <<< "$(profile on "$large")"
awk -v t0="$off_small_total" -v t1="$off_large_total" -v d0="$off_small_d" -v d1="$off_large_d" \
  -v m0="$on_small_metrics" -v m1="$on_large_metrics" \
  -v c0="$off_small_clock" -v c1="$off_large_clock" -v k0="$on_small_clock" -v k1="$on_large_clock" '
  BEGIN {
    deliveries = d1 - d0
    base = (t1 - t0) / deliveries
    metrics = ((m1 - m0) + ((k1 - k0) - (c1 - c0))) / deliveries
    printf "instructions per delivery, metrics off: %.0f\n", base
    printf "of which metrics would add:             %.0f (%.2f %%)\n", metrics, 100 * metrics / base
  }'
