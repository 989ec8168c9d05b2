#!/usr/bin/env bash
# Stop exactly the processes tests/servers/up.sh started (from $STATE/pids/*.pid), and
# remove $STATE/servers.env. A PostgreSQL/MariaDB that was already running before up.sh
# has no pid file and is left alone. Idempotent. Data dirs are kept (rm -rf $STATE to wipe).
set -euo pipefail

STATE="${FERRY_TEST_STATE:-$HOME/.cache/ferry-test-servers}"
TERM_WAIT="${FERRY_TEST_TERM_WAIT:-12}"
if [[ ! -d "$STATE/pids" ]]; then echo "down.sh: nothing to stop ($STATE/pids absent)"; exit 0; fi

# One up.sh/down.sh at a time. The lock is held by the flock process (-o: not inherited by
# this script's children), so the servers started below never keep it.
if [[ -z ${FERRY_TEST_LOCKED:-} ]]; then
  FERRY_TEST_LOCKED=1 exec flock -o -w 600 "$STATE/.lock" bash "${BASH_SOURCE[0]}" "$@"
fi
unset FERRY_TEST_LOCKED

# What each pid file's process must look like (guards against a recycled pid).
pattern_for() {
  case $1 in
    seaweedfs) echo '(^|/)weed .*mini' ;;
    moto) echo 'moto_server .*-p 5000' ;;
    moto-iam) echo 'moto_server .*-p 5001' ;;
    azurite) echo 'azurite-blob' ;;
    fake-gcs-server) echo 'fake-gcs-server' ;;
    gcs-shim) echo 'gcs_shim\.py' ;;
    mariadb) echo '(^|/)mariadbd' ;;
    postgres) echo '(^|/)postgres' ;;
    *) return 1 ;;
  esac
}

alive_and_ours() {  # PID PATTERN
  [[ -r /proc/$1/cmdline ]] || return 1
  local state; state=$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null || echo X)
  [[ $state != Z ]] || return 1
  tr '\0' ' ' <"/proc/$1/cmdline" | grep -Eq "$2"
}

stop_pid() {  # NAME PID PATTERN WAIT
  local name=$1 pid=$2 pat=$3 wait=$4 i
  if ! alive_and_ours "$pid" "$pat"; then echo "$name: not running (pid $pid is gone or is not $name)"; return; fi
  kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < wait * 5; i++)); do
    alive_and_ours "$pid" "$pat" || { echo "$name: stopped (pid $pid)"; return; }
    sleep 0.2
  done
  kill -KILL "$pid" 2>/dev/null || true
  for ((i = 0; i < 25; i++)); do alive_and_ours "$pid" "$pat" || break; sleep 0.2; done
  echo "$name: killed with SIGKILL after ${wait}s (pid $pid)"
}

rm -f "$STATE/servers.env"

# Stop the shim before fake-gcs-server, the rest in any order.
for name in gcs-shim fake-gcs-server azurite moto moto-iam seaweedfs mariadb postgres; do
  f="$STATE/pids/$name.pid"
  [[ -f $f ]] || continue
  pid=$(tr -dc '0-9' <"$f")
  if [[ -z $pid ]]; then rm -f "$f"; continue; fi
  if [[ $name == postgres && -f "$STATE/pids/postgres.cluster" ]]; then
    ver=$(cat "$STATE/pids/postgres.cluster")
    if alive_and_ours "$pid" "$(pattern_for postgres)"; then
      pg_ctlcluster --skip-systemctl-redirect "$ver" main stop >/dev/null 2>&1 || true
      stop_pid postgres "$pid" "$(pattern_for postgres)" 30
    else
      echo "postgres: not running (pid $pid)"
    fi
    rm -f "$STATE/pids/postgres.cluster"
  elif [[ $name == mariadb ]]; then
    stop_pid mariadb "$pid" "$(pattern_for mariadb)" 30
  else
    stop_pid "$name" "$pid" "$(pattern_for "$name")" "$TERM_WAIT"
  fi
  rm -f "$f"
done
# Leftover multipart parts of the shim are scratch data.
rm -rf "$STATE/gcs-shim-parts"
echo "down.sh: done"
