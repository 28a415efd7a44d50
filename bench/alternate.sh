#!/usr/bin/env bash
# Run one benchmark in several trees, alternating, so every tree sees the same machine.
#
#   bench/alternate.sh ROUNDS REV[=ENV] [REV[=ENV] ...] -- COMMAND [ARGS ...]
#   bench/alternate.sh 3 4b5c72e e47e4f8 HEAD -- bench/capacity.py --engine none --levels 50
#   bench/alternate.sh 2 HEAD HEAD=BATCH_MS=100 -- bench/capacity.py --engine google --levels 50
#
# Each REV is checked out once in a worktree under $ALTERNATE_DIR (default /tmp/alternate) that
# shares this checkout's .venv; COMMAND runs there with .venv/bin/python, under `flock
# /tmp/bench.lock` so no other benchmark runs beside it. `REV=NAME=VALUE` runs that tree's
# server with NAME=VALUE (passed as `--server-env`, which pacing, capacity and fidelity take).
# Every trial starts with a line naming the round, the tree and the load average: compare
# trees within one run, never across runs (the machine is shared).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
rounds=$1
shift
specs=()
while [ $# -gt 0 ] && [ "$1" != "--" ]; do
  specs+=("$1")
  shift
done
[ $# -gt 1 ] || { echo "usage: $0 ROUNDS REV[=ENV] ... -- COMMAND [ARGS ...]" >&2; exit 2; }
shift
base=${ALTERNATE_DIR:-/tmp/alternate}
mkdir -p "$base"

tree_of() {  # the worktree holding REV, made on first use
  local rev commit dir
  rev=$1
  commit=$(git rev-parse --short "$rev^{commit}")
  dir=$base/$commit
  if [ ! -d "$dir" ]; then
    git worktree add --detach -q "$dir" "$commit"
    ln -s "$root/.venv" "$dir/.venv"
  fi
  echo "$dir"
}

for round in $(seq 1 "$rounds"); do
  for spec in "${specs[@]}"; do
    rev=${spec%%=*}
    env=""
    [ "$spec" != "$rev" ] && env=${spec#*=}
    dir=$(tree_of "$rev")
    extra=()
    [ -n "$env" ] && extra=(--server-env "$env")
    echo "=== round $round: $rev ($(git -C "$dir" rev-parse --short HEAD))${env:+ $env}" \
      "$(date -u +%FT%TZ) load $(cut -d' ' -f1-3 /proc/loadavg)"
    (cd "$dir" && flock /tmp/bench.lock .venv/bin/python "$@" "${extra[@]}")
  done
done
