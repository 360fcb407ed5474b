#!/usr/bin/env bash
# Default command of the shardvec image (deploy/Dockerfile): one container = one Ray head + the API.
#
#   1. keeps Ray token authentication on and makes sure a token exists;
#   2. starts a Ray head (GCS on 6379, dashboard and job API on 0.0.0.0:8265);
#   3. runs `shardvec up` on it, forwarding SIGTERM/SIGINT so it shuts down cleanly;
#   4. stops Ray once shardvec has exited, and exits with shardvec's status.
#
# Arguments are appended to the `shardvec up` command line. Prefer SHARDVEC_API_KEY (environment)
# to --api-key, which would show in `ps`.
set -euo pipefail

mode="${RAY_AUTH_MODE:-token}"
if [[ "${mode,,}" != "token" ]]; then
    echo "shardvec-entrypoint: RAY_AUTH_MODE=${mode} refused; this image runs Ray with token authentication only" >&2
    exit 64
fi
export RAY_AUTH_MODE=token

# Token sources, in Ray's order: RAY_AUTH_TOKEN, RAY_AUTH_TOKEN_PATH, ~/.ray/auth_token.
if [[ -z "${RAY_AUTH_TOKEN:-}" && -z "${RAY_AUTH_TOKEN_PATH:-}" && ! -s "${HOME}/.ray/auth_token" ]]; then
    ray get-auth-token --generate >/dev/null
    echo "shardvec-entrypoint: generated a Ray auth token in ${HOME}/.ray/auth_token" \
         "(print it with: docker exec CONTAINER ray get-auth-token)" >&2
fi

data_dir="${SHARDVEC_DATA_DIR:-/data/shardvec}"
mkdir -p "${data_dir}"

ray start --head --port=6379 --dashboard-host=0.0.0.0 --dashboard-port=8265 --disable-usage-stats

shardvec up --address auto --data-dir "${data_dir}" --host 0.0.0.0 --port 50051 --metrics-port 9464 --front-port 50052 --front-metrics-port 9465 "$@" &
child=$!
trap 'kill -TERM "${child}" 2>/dev/null || true' TERM INT

status=0
# A trapped signal interrupts `wait`; keep waiting until shardvec has really exited.
while kill -0 "${child}" 2>/dev/null; do
    if wait "${child}"; then status=0; else status=$?; fi
done
trap - TERM INT

ray stop || true
exit "${status}"
