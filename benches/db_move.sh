#!/usr/bin/env bash
# The one-pass database move (issue 18, must-show 5): `ferry run --restore` (the dump streamed
# into a local store and into the restore target at once, then the table-by-table verify)
# beside the same move piped by hand, on a 1.2M-row PostgreSQL and a 300k-row MariaDB database:
#
#   pg_dump -Fc --compress=0 SRC | pg_restore --clean --if-exists --no-owner --single-transaction -d DST
#   mariadb-dump --single-transaction --routines --triggers --events --hex-blob --no-tablespaces SRC | mariadb --batch DST
#
# The hand pipes use ferry's own tool flags, so the two do the same database work; ferry also
# compresses (zstd), hashes and stores the dump, takes the source's table checksums in the
# dump's snapshot, and verifies the target. Each round drops and recreates the target. Prints
# a markdown table of medians. The databases and the store are removed at the end.
#
# Usage:  benches/db_move.sh [ROUNDS]     (default 3)
# Needs:  the test PostgreSQL and MariaDB ($FERRY_TEST_PG_URL, $FERRY_TEST_MYSQL_URL, defaults
#         postgres://postgres@127.0.0.1:5432/test and mysql://root@127.0.0.1:3306/test without a
#         password), psql, pg_dump, pg_restore, mariadb, mariadb-dump on PATH.
# Binary: $FERRY_BIN, else $CARGO_TARGET_DIR/release/ferry, else .../debug/ferry.
set -euo pipefail

ROUNDS=${1:-3}
PG=${FERRY_TEST_PG_URL:-postgres://postgres@127.0.0.1:5432/test}
PG_SERVER=${PG%/*}
MY=${FERRY_TEST_MYSQL_URL:-mysql://root@127.0.0.1:3306/test}
MY_SERVER=${MY%/*}
MY_HOSTPORT=${MY_SERVER#*@}
MY_HOST=${MY_HOSTPORT%:*}
MY_PORT=${MY_HOSTPORT#*:}
SRC=ferry_bench_move_src
DST=ferry_bench_move_dst
HERE=$(cd "$(dirname "$0")/.." && pwd)
TARGET=${CARGO_TARGET_DIR:-$HERE/target}
FERRY=${FERRY_BIN:-$TARGET/release/ferry}
[ -x "$FERRY" ] || FERRY=$TARGET/debug/ferry
WORK=$(mktemp -d "${TMPDIR:-/tmp}/ferry-bench-move.XXXXXX")

q() { psql -X -q -v ON_ERROR_STOP=1 -d "$1" -c "$2" >/dev/null; }
my() { mariadb --host="$MY_HOST" --port="$MY_PORT" --user=root --batch --skip-column-names "$@"; }
cleanup() {
  q "$PG_SERVER/postgres" "DROP DATABASE IF EXISTS $SRC WITH (FORCE)" || true
  q "$PG_SERVER/postgres" "DROP DATABASE IF EXISTS $DST WITH (FORCE)" || true
  my -e "DROP DATABASE IF EXISTS $SRC; DROP DATABASE IF EXISTS $DST" || true
  rm -rf "$WORK"
}
trap cleanup EXIT
[ -x "$FERRY" ] || { echo "no ferry binary at $FERRY (cargo build, or set FERRY_BIN)" >&2; exit 2; }

echo "seeding PostgreSQL: 4 tables, 1,200,000 rows ..." >&2
q "$PG_SERVER/postgres" "DROP DATABASE IF EXISTS $SRC WITH (FORCE)"
q "$PG_SERVER/postgres" "CREATE DATABASE $SRC"
for i in 1 2 3 4; do
  q "$PG_SERVER/$SRC" "CREATE TABLE t$i AS SELECT g::bigint AS id,
      '2026-01-01'::timestamptz + g * interval '1 second' AS at, (g * 7919 % 100000)::numeric / 100 AS amount,
      md5(g::text) || md5((g + $i)::text) || repeat('x', (20 + g % 40)::int) AS payload
      FROM generate_series(1::bigint, 300000) g;
      ALTER TABLE t$i ADD PRIMARY KEY (id);"
done
q "$PG_SERVER/$SRC" "VACUUM ANALYZE"
pg_size=$(psql -X -A -t -d "$PG_SERVER/$SRC" -c "SELECT pg_size_pretty(pg_database_size(current_database()))")

echo "seeding MariaDB: 2 tables, 300,000 rows ..." >&2
my -e "DROP DATABASE IF EXISTS $SRC; CREATE DATABASE $SRC"
my "$SRC" -e "
  CREATE TABLE a (id BIGINT PRIMARY KEY, at DATETIME, amount DECIMAL(12,2), payload VARCHAR(200)) ENGINE=InnoDB;
  INSERT INTO a SELECT seq, '2026-01-01' + INTERVAL seq SECOND, (seq * 7919 % 100000) / 100,
    CONCAT(MD5(seq), MD5(seq + 1), REPEAT('x', 20 + seq % 40)) FROM seq_1_to_200000;
  CREATE TABLE b (id BIGINT PRIMARY KEY, note VARCHAR(100), n INT) ENGINE=InnoDB;
  INSERT INTO b SELECT seq, CONCAT('note ', MD5(seq)), seq % 1000 FROM seq_1_to_100000;"
my "$SRC" -e "ANALYZE TABLE a, b" > /dev/null
my_size=$(my -e "SELECT ROUND(SUM(DATA_LENGTH + INDEX_LENGTH) / 1048576) FROM information_schema.TABLES WHERE TABLE_SCHEMA = '$SRC'")

cat > "$WORK/plan.toml" <<EOF
[providers.disk]
type = "local"
root = "store"

[[databases]]
name = "pg"
engine = "postgres"
url-env = "MOVE_PG_SRC"
restore-to-env = "MOVE_PG_DST"
to = "disk:db/{name}/{timestamp}.dump"

[[databases]]
name = "my"
engine = "mysql"
url-env = "MOVE_MY_SRC"
restore-to-env = "MOVE_MY_DST"
to = "disk:db/{name}/{timestamp}.sql"
EOF
export MOVE_PG_SRC="$PG_SERVER/$SRC" MOVE_PG_DST="$PG_SERVER/$DST"
export MOVE_MY_SRC="$MY_SERVER/$SRC" MOVE_MY_DST="$MY_SERVER/$DST"

now() { date +%s.%N; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", b - a }'; }
fresh_pg() { q "$PG_SERVER/postgres" "DROP DATABASE IF EXISTS $DST WITH (FORCE)"; q "$PG_SERVER/postgres" "CREATE DATABASE $DST"; }
fresh_my() { my -e "DROP DATABASE IF EXISTS $DST; CREATE DATABASE $DST"; }

declare -A T
for r in $(seq 1 "$ROUNDS"); do
  echo "round $r/$ROUNDS ..." >&2
  fresh_pg; sync; t0=$(now)
  pg_dump -Fc --compress=0 --no-password --dbname="$PG_SERVER/$SRC" \
    | pg_restore --clean --if-exists --no-owner --single-transaction --no-password --dbname="$PG_SERVER/$DST"
  t1=$(now); T[pg_hand]+="$(secs "$t0" "$t1") "

  fresh_pg; rm -rf "$WORK/store"; sync; t0=$(now)
  "$FERRY" run --quiet --json --restore --job pg "$WORK/plan.toml" > "$WORK/pg.json"
  t1=$(now); T[pg_ferry]+="$(secs "$t0" "$t1") "
  T[pg_verify]+="$(python3 -c "import json,sys; r=json.load(open(sys.argv[1]))['restores'][0]; assert r['error'] is None and all(t['matches'] for t in r['tables']), r; print('%.2f' % r['verify_seconds'])" "$WORK/pg.json") "

  fresh_my; sync; t0=$(now)
  mariadb-dump --host="$MY_HOST" --port="$MY_PORT" --user=root --single-transaction --routines --triggers \
      --events --hex-blob --no-tablespaces --default-character-set=utf8mb4 "$SRC" \
    | my "$DST"
  t1=$(now); T[my_hand]+="$(secs "$t0" "$t1") "

  fresh_my; rm -rf "$WORK/store"; sync; t0=$(now)
  "$FERRY" run --quiet --json --restore --job my "$WORK/plan.toml" > "$WORK/my.json"
  t1=$(now); T[my_ferry]+="$(secs "$t0" "$t1") "
  T[my_verify]+="$(python3 -c "import json,sys; r=json.load(open(sys.argv[1]))['restores'][0]; assert r['error'] is None and all(t['matches'] for t in r['tables']), r; print('%.2f' % r['verify_seconds'])" "$WORK/my.json") "
done

median() { printf '%s\n' $1 | sort -n | awk '{ a[NR] = $1 } END { print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }
row() { # engine, hand key, ferry key, verify key
  local h f v
  h=$(median "${T[$2]}"); f=$(median "${T[$3]}"); v=$(median "${T[$4]}")
  awk -v e="$1" -v h="$h" -v f="$f" -v v="$v" 'BEGIN {
    printf "| %s | %.1f | %.1f | %.1f | %.1f | %.2fx | %.2fx |\n", e, h, f, v, f - v, (f - v) / h, f / h }'
}
echo
echo "ferry $("$FERRY" --version | cut -d' ' -f2), $ROUNDS rounds (medians), local store, $(nproc) cores, $(date -u +%Y-%m-%d);"
echo "PostgreSQL $(psql -X -A -t -d "$PG_SERVER/postgres" -c 'SHOW server_version'): 4 tables, 1,200,000 rows, $pg_size;"
echo "MariaDB $(my -e 'SELECT VERSION()'): 2 tables, 300,000 rows, $my_size MB"
echo
echo "| database | by hand (dump \| restore), s | ferry run --restore, s | of which verify, s | move without verify, s | move / hand | with verify / hand |"
echo "|---|---|---|---|---|---|---|"
row "PostgreSQL" pg_hand pg_ferry pg_verify
row "MariaDB" my_hand my_ferry my_verify
echo
echo "all rounds: $(for k in pg_hand pg_ferry pg_verify my_hand my_ferry my_verify; do printf '%s=[%s] ' "$k" "${T[$k]% }"; done)"
