#!/usr/bin/env bash
# The demo as a Ray job, the way a cluster user runs it: a token-authenticated head on loopback, `ray job submit`
# of workflows.pipeline with the repo as working_dir, the log followed to the end. The log (what a user sees in
# `ray job logs --follow`) is written to bench/results/demo_job_submit.log.
#     bash bench/jobs/demo_job_submit.sh            # ~5 min on 2 free cores, longer on a busy machine
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
WORK=$(mktemp -d)
trap '.venv/bin/ray stop --force >/dev/null 2>&1 || true; rm -rf "$WORK"' EXIT
python3 -c "import secrets; print(secrets.token_hex(32))" > "$WORK/auth_token"
chmod 600 "$WORK/auth_token"
export RAY_AUTH_MODE=token RAY_AUTH_TOKEN_PATH="$WORK/auth_token" RAY_TMPDIR="$WORK/ray"
unset RAY_ADDRESS
.venv/bin/ray start --head --port=6390 --dashboard-port=8299 --dashboard-host=127.0.0.1 --num-cpus=2 \
    --disable-usage-stats >/dev/null
sleep 5
LOG=bench/results/demo_job_submit.log
submit() {
  .venv/bin/ray job submit --address http://127.0.0.1:8299 \
    --runtime-env-json '{"working_dir": ".", "excludes": [".git", ".venv", "runs", "mlflow.db", "mlartifacts",
        "mlruns", ".pytest_cache", ".hypothesis", "**/__pycache__", "bench/results/raw", "bench/gpu/wheels"],
        "env_vars": {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}}' \
    -- "$ROOT/.venv/bin/python" -m workflows.pipeline --config configs/demo.yaml pipeline.storage="$WORK/storage"
}
for attempt in $(seq 30); do        # a fresh head answers 500 "No available agent" until its job agent is up
  if submit > "$WORK/job.log" 2>&1 || ! grep -q "No available agent" "$WORK/job.log"; then break; fi
  sleep 3
done
{
  echo "# bash bench/jobs/demo_job_submit.sh  ($(date -u +%Y-%m-%dT%H:%MZ), $(nproc) CPUs, load $(cut -d' ' -f1 /proc/loadavg))"
  cat "$WORK/job.log"
} | sed "s|$WORK|<tmp>|g" > "$LOG"
echo "wrote $LOG ($(wc -l < "$LOG") lines)"
