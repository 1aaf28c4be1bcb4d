#!/usr/bin/env bash
# Build the xphyda training corpus: jcm SPEEDY T31, 2 independent trajectories run as 2 parallel
# processes, 360 days of spin-up each (discarded), 6 years of 6-hourly states in total (3 per trajectory),
# 12 pressure levels.  Output STORE/traj{0,1}.zarr; logs in STORE/logs/.  Resumable: re-run the same
# command after an interruption and each trajectory continues after its last complete 30-day chunk.
#
# Usage: scripts/make_corpus.sh [STORE]      (default /work/corpus)
set -euo pipefail
STORE=${1:-/work/corpus}
REPO=$(cd "$(dirname "$0")/.." && pwd)
mkdir -p "$STORE/logs"
export PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}"
ARGS=(--years 6 --trajectories 2 --spinup-days 360 --chunk-days 30 --save-interval-hours 6 --seed 0)
for k in 0 1; do
  nohup python -m xphyda.data.simulate "$STORE" "${ARGS[@]}" --trajectory "$k" \
    > "$STORE/logs/traj$k.log" 2>&1 &
  echo "trajectory $k: pid $! log $STORE/logs/traj$k.log"
done
