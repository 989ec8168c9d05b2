#!/usr/bin/env bash
# PostgreSQL dumps and restores with `jobs = 1` and `jobs = 4` (issue 18, "databases that fit
# the window"): a ~2 GiB database of 8 large tables, dumped by `ferry run` to a local folder and
# restored by `ferry restore` into an empty database (the restore includes ferry's table-by-table
# verification against the dump's record and the source), then `ferry verify` once more.
# Prints a markdown table; the databases and the dumps are removed at the end.
#
# Usage:  benches/pg_parallel.sh [ROWS_PER_TABLE]     (default 1,030,000: about 2 GiB on disk)
# Needs:  the test PostgreSQL ($FERRY_TEST_PG_URL, default postgres://postgres@127.0.0.1:5432/test),
#         psql, pg_dump, pg_restore on PATH.
# Binary: $FERRY_BIN, else $CARGO_TARGET_DIR/debug/ferry, else target/debug/ferry (the dev
#         profile: ferry's own code at opt-level 1, its dependencies, zstd included, at 3).
set -euo pipefail

ROWS=${1:-1030000}
BASE=${FERRY_TEST_PG_URL:-postgres://postgres@127.0.0.1:5432/test}
SERVER=${BASE%/*}
SRC_DB=ferry_bench_pgj_src
DST_DB=ferry_bench_pgj_dst
HERE=$(cd "$(dirname "$0")/.." && pwd)
FERRY=${FERRY_BIN:-${CARGO_TARGET_DIR:-$HERE/target}/debug/ferry}
WORK=$(mktemp -d "${TMPDIR:-/tmp}/ferry-bench-pgj.XXXXXX")

q() { psql -X -q -v ON_ERROR_STOP=1 -d "$1" -c "$2" >/dev/null; }
cleanup() {
  q "$SERVER/postgres" "DROP DATABASE IF EXISTS $SRC_DB WITH (FORCE)" || true
  q "$SERVER/postgres" "DROP DATABASE IF EXISTS $DST_DB WITH (FORCE)" || true
  rm -rf "$WORK"
}
trap cleanup EXIT

[ -x "$FERRY" ] || { echo "no ferry binary at $FERRY (cargo build, or set FERRY_BIN)" >&2; exit 2; }
q "$SERVER/postgres" "DROP DATABASE IF EXISTS $SRC_DB WITH (FORCE)"
q "$SERVER/postgres" "CREATE DATABASE $SRC_DB"
echo "generating 8 tables of $ROWS rows each ..." >&2
pids=()
gen_start=$(date +%s)
for i in 1 2 3 4 5 6 7 8; do
  # ~200 bytes a row: an id, a timestamp, a number and text that compresses about 2:1.
  q "$SERVER/$SRC_DB" "CREATE TABLE t$i AS SELECT g::bigint AS id,
      '2026-01-01'::timestamptz + g * interval '1 second' AS at, (g * 7919 % 100000)::numeric / 100 AS amount,
      md5(g::text) || md5((g + $i)::text) || md5((g * $i)::text) || repeat('x', (60 + g % 40)::int) AS payload
      FROM generate_series(1::bigint, $ROWS) g;
      ALTER TABLE t$i ADD PRIMARY KEY (id);" &
  pids+=($!)
  # Two at a time: the machine has two cores.
  if [ $((i % 2)) -eq 0 ]; then for p in "${pids[@]}"; do wait "$p"; done; pids=(); fi
done
tables=$(psql -X -A -t -d "$SERVER/$SRC_DB" -c "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'")
[ "$tables" = 8 ] || { echo "generated $tables tables, not 8" >&2; exit 1; }
q "$SERVER/$SRC_DB" "VACUUM ANALYZE"
size=$(psql -X -A -t -d "$SERVER/$SRC_DB" -c "SELECT pg_size_pretty(pg_database_size(current_database()))")
echo "generated $size in $(( $(date +%s) - gen_start )) s" >&2

now() { date +%s.%N; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", b - a }'; }

rows=()
for jobs in 1 4; do
  rm -rf "$WORK/store" && mkdir -p "$WORK/store"
  cat > "$WORK/plan.toml" <<EOF
[providers.disk]
type = "local"
root = "store"

[[databases]]
name = "bench"
engine = "postgres"
url-env = "BENCH_SRC"
restore-to-env = "BENCH_DST"
to = "disk:db/{name}/{timestamp}.dump"
jobs = $jobs
EOF
  export BENCH_SRC="$SERVER/$SRC_DB" BENCH_DST="$SERVER/$DST_DB"
  q "$SERVER/postgres" "DROP DATABASE IF EXISTS $DST_DB WITH (FORCE)"
  q "$SERVER/postgres" "CREATE DATABASE $DST_DB"
  sync
  t0=$(now)
  "$FERRY" run --quiet "$WORK/plan.toml" >&2
  t1=$(now)
  stored=$(du -sm "$WORK/store" | cut -f1)
  "$FERRY" restore --quiet --json --database bench "$WORK/plan.toml" > "$WORK/restore.json"
  t2=$(now)
  "$FERRY" verify --quiet --job bench "$WORK/plan.toml" >&2
  t3=$(now)
  matched=$(python3 -c "import json,sys; r=json.load(open(sys.argv[1]))['restore']; print(sum(t['matches'] for t in r['tables']), '/', len(r['tables']))" "$WORK/restore.json")
  [ "$matched" = "8 / 8" ] || { echo "jobs = $jobs: $matched tables match" >&2; exit 1; }
  rows+=("| $jobs | $(secs "$t0" "$t1") | $stored | $(secs "$t1" "$t2") | $(secs "$t2" "$t3") | $matched tables match |")
done

echo
echo "PostgreSQL $(psql -X -A -t -d "$SERVER/postgres" -c 'SHOW server_version'), database $size (8 tables of $ROWS rows), local store, $(nproc) cores, $(date -u +%Y-%m-%d)"
echo
echo "| jobs | dump (ferry run), s | stored, MiB | restore incl. verification (ferry restore), s | ferry verify, s | result |"
echo "|---|---|---|---|---|---|"
printf '%s\n' "${rows[@]}"
