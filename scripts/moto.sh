#!/usr/bin/env bash
# Starts moto server (a local AWS API: DynamoDB, SQS, Secrets Manager) on a free
# 127.0.0.1 port and stops it when this script exits.
#
#   scripts/moto.sh -- <command> [args...]   run <command> with the environment
#                                            below set; exit with its status
#   scripts/moto.sh                          print the `export` lines and keep
#                                            moto running until Ctrl-C
#
# The environment: AWS_ENDPOINT_URL (every AWS SDK honours it), fake
# credentials, and a region. Set MOTO_LOG to a file to keep moto's request log.
# moto runs through scripts/moto_server.py, which applies each DynamoDB
# request atomically as DynamoDB does (stock moto does not under concurrency).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
python="$root/.venv/bin/python"
if [ ! -x "$root/.venv/bin/moto_server" ]; then
  "$root/scripts/tools.sh"
fi

if [ "${1:-}" = "--" ]; then
  shift
  [ "$#" -gt 0 ] || { echo "moto.sh: no command after --" >&2; exit 2; }
fi

port="$("$python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()')"
log="${MOTO_LOG:-$(mktemp -t moto.XXXXXX.log)}"
"$python" "$root/scripts/moto_server.py" -H 127.0.0.1 -p "$port" >"$log" 2>&1 &
moto_pid=$!

stop() {
  kill "$moto_pid" 2>/dev/null || true
  wait "$moto_pid" 2>/dev/null || true
  if [ -z "${MOTO_LOG:-}" ]; then rm -f "$log"; fi
}
trap stop EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

endpoint="http://127.0.0.1:$port"
for _ in $(seq 1 150); do
  if "$python" -c "import urllib.request, sys; urllib.request.urlopen(sys.argv[1] + '/moto-api/', timeout=1)" "$endpoint" 2>/dev/null; then
    ready=1
    break
  fi
  if ! kill -0 "$moto_pid" 2>/dev/null; then
    echo "moto.sh: moto server exited during start-up:" >&2
    cat "$log" >&2
    exit 1
  fi
  sleep 0.1
done
if [ -z "${ready:-}" ]; then
  echo "moto.sh: moto server did not answer on $endpoint within 15 s" >&2
  cat "$log" >&2
  exit 1
fi

export AWS_ENDPOINT_URL="$endpoint"
export AWS_ACCESS_KEY_ID=testing
export AWS_SECRET_ACCESS_KEY=testing
export AWS_SESSION_TOKEN=testing
export AWS_REGION="${AWS_REGION:-us-east-1}"
export AWS_DEFAULT_REGION="$AWS_REGION"
# Keep a developer's own profile and IMDS out of the picture.
export AWS_CONFIG_FILE=/dev/null
export AWS_SHARED_CREDENTIALS_FILE=/dev/null
export AWS_EC2_METADATA_DISABLED=true

if [ "$#" -gt 0 ]; then
  status=0
  "$@" || status=$?
  exit "$status"
fi

cat <<EXPORTS
export AWS_ENDPOINT_URL=$AWS_ENDPOINT_URL
export AWS_ACCESS_KEY_ID=$AWS_ACCESS_KEY_ID
export AWS_SECRET_ACCESS_KEY=$AWS_SECRET_ACCESS_KEY
export AWS_SESSION_TOKEN=$AWS_SESSION_TOKEN
export AWS_REGION=$AWS_REGION
export AWS_DEFAULT_REGION=$AWS_DEFAULT_REGION
EXPORTS
echo "# moto server pid $moto_pid on $AWS_ENDPOINT_URL; Ctrl-C stops it" >&2
wait "$moto_pid"
