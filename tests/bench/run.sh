#!/usr/bin/env bash
# What `make bench` runs: a private legacy-mode Dovecot (no MULTIAPPEND
# advertised), mappend in front of it, and nginx's mail proxy beside mappend
# in front of the same Dovecot, all on loopback; then the benchmark program,
# which prints the report (see BENCHMARKS.md).  Everything is stopped and
# removed on exit, whatever happens.
#
#   tests/bench/run.sh BUILD_DIR [bench_mappend options]
#   tests/bench/run.sh --help
#
# BUILD_DIR holds mappend and tests/bench_mappend (make bench builds both).
# Extra options go to the benchmark program, e.g. --runs 3, --sessions 100,
# --fetch-mib 10, --only fetch,idle (--help lists them).  Exits with the
# benchmark program's status: 0 when every benchmark ran (targets are
# reported, not asserted), non-zero on an error.
#
# Processes, each with its files in one temp dir:
#   Dovecot     tests/dovecot/dovecot.sh start DIR --legacy
#   mappend     the one measured for FETCH, logins and uploads: a plain and
#               a TLS listener (certificates from tests/tls/gen-certs.sh)
#   mappend     "copy": splice = no, a plain listener; the FETCH's copy path
#               beside the main one's in the same rounds
#   mappend x2  fresh instances for the idle sessions only, plain and TLS
#               (a process that has served sessions before reuses their
#               freed heap, which would hide the cost of new ones)
#   nginx       Debian's nginx-light with libnginx-mod-mail: a master and
#               one worker (the process measured), four IMAP proxy servers
#               (proxy_buffer 256k and the default, each plain and TLS), and
#               an http server on a unix socket that is their auth_http
#               endpoint: every login is OK, the upstream is the Dovecot
#
# Dovecot's maildirs and mappend's spool go into a temp dir on /dev/shm
# (tmpfs) when it has 2 GiB free, else into $TMPDIR or /tmp;
# MAPPEND_BENCH_TMPDIR=DIR chooses the parent directory.  tmpfs keeps the
# figures about IMAP and the proxies: on a disk file system, Dovecot's cost
# per message (a file created and renamed per APPEND) depends on the file
# system and on what else the machine did recently (e.g. ext4 without a
# journal skips over inodes freed in the last minutes when it allocates
# one, so deleting the last run's mailbox slows down the next run).
set -euo pipefail

say() { printf 'bench: %s\n' "$*" >&2; }

NGINX=${NGINX:-/usr/sbin/nginx}
NGINX_MAIL_SO=${NGINX_MAIL_SO:-/usr/lib/nginx/modules/ngx_mail_module.so}
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd -P)

for a in "$@"; do
	if [[ $a == --help || $a == -h ]]; then
		b=${1:-}
		[[ -n $b && -x $b/tests/bench_mappend ]] || b=$ROOT/build/release
		if [[ -x $b/tests/bench_mappend ]]; then
			exec "$b/tests/bench_mappend" --help
		fi
		sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'
		exit 0
	fi
done
if [[ $# -lt 1 ]]; then
	echo "usage: $0 BUILD_DIR [bench_mappend options]   ($0 --help)" >&2
	exit 2
fi
BUILD=$(cd -- "$1" && pwd -P)
shift
MAPPEND=$BUILD/mappend
BENCH=$BUILD/tests/bench_mappend
DOVECOT_SH=$ROOT/tests/dovecot/dovecot.sh
GEN_CERTS=$ROOT/tests/tls/gen-certs.sh
SESSIONS=1000	# idle sessions per set (--sessions overrides)
for ((i = 1; i <= $#; i++)); do
	if [[ ${!i} == --sessions ]] && ((i < $#)); then
		j=$((i + 1))
		SESSIONS=${!j}
	elif [[ ${!i} == --sessions=* ]]; then
		SESSIONS=${!i#--sessions=}
	fi
done
[[ $SESSIONS =~ ^[0-9]+$ ]] || { say "bad --sessions '$SESSIONS'"; exit 2; }

for f in "$MAPPEND" "$BENCH"; do
	[[ -x $f ]] || { say "$f not found: run make bench"; exit 1; }
done
if [[ ! -x $NGINX || ! -r $NGINX_MAIL_SO ]]; then
	say "nginx's mail proxy is missing ($NGINX, $NGINX_MAIL_SO); as root run:"
	say "  apt-get install -y --no-install-recommends nginx-light libnginx-mod-mail"
	exit 1
fi

# where the files go (see above)
parent=${MAPPEND_BENCH_TMPDIR:-}
if [[ -z $parent ]]; then
	parent=${TMPDIR:-/tmp}
	if [[ -d /dev/shm && -w /dev/shm ]]; then
		free_kb=$(df -Pk /dev/shm 2>/dev/null | awk 'NR == 2 { print $4 }')
		if [[ $free_kb =~ ^[0-9]+$ ]] && ((free_kb >= 2 * 1024 * 1024)); then
			parent=/dev/shm
		fi
	fi
fi
TMP=$(mktemp -d "$parent/mappend-bench.XXXXXX")
BENCH_PID="" NGINX_PID=""
declare -A MAPPEND_PIDS=()

# SIGTERM, then SIGKILL after 12 s
stop_pid() {
	local pid=$1 i
	kill -0 "$pid" 2>/dev/null || { wait "$pid" 2>/dev/null || true; return 0; }
	kill -TERM "$pid" 2>/dev/null || true
	for ((i = 0; i < 120; i++)); do
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.1
	done
	kill -KILL "$pid" 2>/dev/null || true
	wait "$pid" 2>/dev/null || true
}

cleanup() {
	local rc=$? name f
	trap - EXIT INT TERM HUP
	if [[ -n $BENCH_PID ]]; then
		kill -TERM "$BENCH_PID" 2>/dev/null || true
		wait "$BENCH_PID" 2>/dev/null || true
	fi
	for name in "${!MAPPEND_PIDS[@]}"; do
		stop_pid "${MAPPEND_PIDS[$name]}"
	done
	# nginx's master stops its worker on SIGTERM
	[[ -z $NGINX_PID ]] || stop_pid "$NGINX_PID"
	# an error (not bad usage, not an interruption): the logs' last lines
	if ((rc != 0 && rc != 2 && rc != 130)); then
		for f in "$TMP"/mappend-*.log "$TMP/nginx/error.log" "$TMP/dovecot/dovecot.log"; do
			[[ -s $f ]] || continue
			say "last lines of ${f#"$TMP"/}:"
			tail -n 15 "$f" >&2
		done
	fi
	"$DOVECOT_SH" stop "$TMP/dovecot" || true
	rm -rf -- "$TMP"
	exit "$rc"
}
trap cleanup EXIT
trap 'say "interrupted"; exit 130' INT TERM HUP

# One descriptor per idle session in the program, two in each proxy (plus
# nginx's auth request).
hard=$(ulimit -Hn)
if [[ $hard == unlimited ]] || ((hard > 65536)); then hard=65536; fi
ulimit -Sn "$hard" 2>/dev/null || true
NOFILE=$(ulimit -Sn)
if ((NOFILE < 2 * SESSIONS + 100)); then
	say "the open-files limit ($NOFILE) is too low for $SESSIONS sessions"
	exit 1
fi

if ! info=$("$DOVECOT_SH" start "$TMP/dovecot" --legacy); then
	say "could not start the private Dovecot (see above)"
	exit 1
fi
value() { sed -n "s/^$1=//p" <<<"$info"; }
UP_PORT=$(value port)
USER1=$(value user) PASS1=$(value password)
USER2=$(value user2) PASS2=$(value password2)

"$GEN_CERTS" "$TMP/certs"
CERT=$TMP/certs/server.pem KEY=$TMP/certs/server.key

# ---------------------------------------------------------------- mappend

# start_mappend NAME plain|tls|both: an instance with a plain listener, a
# TLS one or both, on ports the kernel chooses, logging to
# $TMP/mappend-NAME.log; sets M_PID, M_PORT (plain) and M_TLS_PORT.
start_mappend() {
	local name=$1 kind=$2 i conf=$TMP/mappend-$1.conf log=$TMP/mappend-$1.log
	mkdir -m 0700 "$TMP/spool-$name"
	{
		echo "# written by tests/bench/run.sh"
		[[ $kind == tls ]] || echo "listen = 127.0.0.1:0"
		[[ $kind == plain ]] || echo "listen = 127.0.0.1:0 tls"
		cat <<EOF
upstream = 127.0.0.1:$UP_PORT
spool_dir = $TMP/spool-$name
tls_cert = $CERT
tls_key = $KEY
log_level = info
max_sessions = ${MAX_SESSIONS:-$((SESSIONS + 100))}
max_message_size = 64M
max_messages = 100000
max_session_spool = 4G
max_total_spool = 8G
${EXTRA_CONF:-}
EOF
	} >"$conf"
	chmod 0640 "$conf"
	: >"$log"
	"$MAPPEND" -f -c "$conf" 2>"$log" &
	M_PID=$!
	MAPPEND_PIDS[$name]=$M_PID
	M_PORT="" M_TLS_PORT=""
	for ((i = 0; i < 100; i++)); do
		M_PORT=$(sed -n 's/.*info: listening on 127\.0\.0\.1:\([0-9]*\)\( (STARTTLS)\)\{0,1\}$/\1/p' \
			"$log" | head -n1)
		M_TLS_PORT=$(sed -n 's/.*info: listening on 127\.0\.0\.1:\([0-9]*\) (TLS)$/\1/p' \
			"$log" | head -n1)
		if [[ ($kind == tls || -n $M_PORT) && ($kind == plain || -n $M_TLS_PORT) ]]; then
			return 0
		fi
		kill -0 "$M_PID" 2>/dev/null || { say "mappend ($name) exited at start"; exit 1; }
		sleep 0.1
	done
	say "mappend ($name) did not report its ports within 10 s"
	exit 1
}

start_mappend main both
MAIN_PID=$M_PID MAIN_PORT=$M_PORT MAIN_TLS_PORT=$M_TLS_PORT
EXTRA_CONF="splice = no" start_mappend copy plain
COPY_PID=$M_PID COPY_PORT=$M_PORT
start_mappend idle plain
IDLE_PID=$M_PID IDLE_PORT=$M_PORT
start_mappend idle-tls tls
IDLE_TLS_PID=$M_PID IDLE_TLS_PORT=$M_TLS_PORT
# the crash journal's instance: killed and started again by the benchmark
MASTER=$(value master) MASTER_PASS=$(value master_password)
EXTRA_CONF="master_user = $MASTER
master_password = $MASTER_PASS" start_mappend recovery plain
REC_PID=$M_PID REC_PORT=$M_PORT

# ------------------------------------------------------------------ nginx

port_in_use() {
	(exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# A port nothing listens on, below the kernel's ephemeral range (where the
# tests of others running meanwhile take theirs).
free_port() {
	local lo=20000 hi=60999 eph p i
	if read -r eph _ </proc/sys/net/ipv4/ip_local_port_range 2>/dev/null &&
		((eph > lo + 2000)); then
		hi=$((eph - 1))
	fi
	for ((i = 0; i < 100; i++)); do
		p=$((lo + ((RANDOM << 15) | RANDOM) % (hi - lo + 1)))
		port_in_use "$p" || { printf '%s\n' "$p"; return 0; }
	done
	say "found no free port"
	return 1
}

# nginx_conf PORT_256K TLS_256K PORT_DEFAULT TLS_DEFAULT AUTH_HTTP
nginx_conf() {
	local n=$TMP/nginx
	cat <<EOF
# written by tests/bench/run.sh: nginx's IMAP proxy beside mappend
load_module $NGINX_MAIL_SO;
daemon off;
master_process on;
worker_processes 1;
pid $n/nginx.pid;
error_log $n/error.log info;
worker_rlimit_nofile $NOFILE;
events {
    worker_connections $((2 * SESSIONS + 100));
}
EOF
	# as root the worker would run as nobody, who cannot reach the auth
	# socket in the private temp dir
	((EUID != 0)) || echo "user root;"
	cat <<EOF

# auth_http: every login is OK, the upstream is the private Dovecot
http {
    access_log off;
    client_body_temp_path $n/tmp/body;
    proxy_temp_path $n/tmp/proxy;
    fastcgi_temp_path $n/tmp/fastcgi;
    uwsgi_temp_path $n/tmp/uwsgi;
    scgi_temp_path $n/tmp/scgi;
    server {
        listen unix:$n/auth.sock;
        # mappend's auth_http client speaks TCP
        listen 127.0.0.1:$5;
        location = /auth {
            add_header Auth-Status OK;
            add_header Auth-Server 127.0.0.1;
            add_header Auth-Port $UP_PORT;
            return 204;
        }
    }
}

mail {
    auth_http unix:$n/auth.sock:/auth;
    imap_auth login plain;
    proxy_pass_error_message on;
    ssl_certificate $CERT;
    ssl_certificate_key $KEY;
    # nginx 1.22's default leaves TLS 1.3 out; mappend and the client
    # negotiate TLS 1.3, so both proxies are measured with it
    ssl_protocols TLSv1.2 TLSv1.3;
    server {
        listen 127.0.0.1:$1;
        listen 127.0.0.1:$2 ssl;
        protocol imap;
        proxy on;
        proxy_buffer 256k;
    }
    server {
        listen 127.0.0.1:$3;
        listen 127.0.0.1:$4 ssl;
        protocol imap;
        proxy on;
    }
}
EOF
}

mkdir -p "$TMP/nginx/tmp"
started="" try=0
while [[ -z $started ]] && ((try++ < 5)); do
	NP=() p=""
	while ((${#NP[@]} < 5)); do
		p=$(free_port) || exit 1
		[[ " ${NP[*]} " == *" $p "* ]] || NP+=("$p")
	done
	nginx_conf "${NP[@]}" >"$TMP/nginx/nginx.conf"
	: >"$TMP/nginx/error.log"
	"$NGINX" -p "$TMP/nginx/" -e "$TMP/nginx/error.log" -c "$TMP/nginx/nginx.conf" \
		2>>"$TMP/nginx/error.log" &
	NGINX_PID=$!
	for ((i = 0; i < 100; i++)); do
		if ! kill -0 "$NGINX_PID" 2>/dev/null; then
			wait "$NGINX_PID" 2>/dev/null || true
			NGINX_PID=""
			grep -q 'Address already in use' "$TMP/nginx/error.log" && break
			say "nginx did not start:"
			tail -n 5 "$TMP/nginx/error.log" >&2
			exit 1
		fi
		if grep -q 'start worker process' "$TMP/nginx/error.log" &&
			port_in_use "${NP[0]}"; then
			started=1
			break
		fi
		sleep 0.1
	done
	if [[ -z $started && -n $NGINX_PID ]]; then
		say "nginx did not start within 10 s"
		exit 1
	fi
done
[[ -n $started ]] || { say "nginx: no free ports after 5 tries"; exit 1; }

# ------------------------------------------------------- routing mappends

# The same logins through instances that route after login: a map of
# 10,000 lines (the benchmark's two users among them), and nginx's own
# auth_http endpoint, without and with mappend's cache of its answers.
{
	for ((i = 0; i < 10000; i++)); do
		printf 'user%05d@example.org 127.0.0.1:%s\n' "$i" "$UP_PORT"
	done
	printf '%s default\n%s default\n* default\n' "$USER1" "$USER2"
} >"$TMP/routes"
EXTRA_CONF="route_map = $TMP/routes" start_mappend route-map plain
RMAP_PID=$M_PID RMAP_PORT=$M_PORT
EXTRA_CONF="auth_http = http://127.0.0.1:${NP[4]}/auth
auth_http_cache = 0" start_mappend route-http plain
RHTTP_PID=$M_PID RHTTP_PORT=$M_PORT
EXTRA_CONF="auth_http = http://127.0.0.1:${NP[4]}/auth" start_mappend route-cached plain
RCACHED_PID=$M_PID RCACHED_PORT=$M_PORT

# Many idle sessions routed to two upstreams: two mock servers (Dovecot
# takes 1000 connections), half the users on each, and an instance of its
# own that routes by domain.
MOCK=$BUILD/tests/mock_imapd
ROUTED_SESSIONS=${ROUTED_SESSIONS:-9000}
RIDLE_ARGS=()
if [[ -x $MOCK ]]; then
	for side in a b; do
		p=$(free_port) || exit 1
		"$MOCK" --listen "127.0.0.1:$p" --user "alice@a.example:pa" \
			--user "bob@b.example:pb" >"$TMP/mock-$side.log" 2>&1 &
		MAPPEND_PIDS[mock-$side]=$!
		for ((i = 0; i < 100; i++)); do
			port_in_use "$p" && break
			sleep 0.1
		done
		printf -v "MOCK_${side^^}" '%s' "$p"
	done
	printf '@a.example 127.0.0.1:%s\n@b.example bee\n' "$MOCK_A" >"$TMP/routes-idle"
	MAX_SESSIONS=$((ROUTED_SESSIONS + 100)) EXTRA_CONF="route_map = $TMP/routes-idle
[backend bee]
upstream = 127.0.0.1:$MOCK_B" start_mappend route-idle plain
	RIDLE_ARGS=(--route-idle-port "$M_PORT" --route-idle-pid "$M_PID"
		--route-idle-sessions "$ROUTED_SESSIONS")
fi

# ------------------------------------------------------------------- run

commit=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)
if [[ -n $(git -C "$ROOT" status --porcelain --untracked-files=no 2>/dev/null) ]]; then
	commit="$commit (with uncommitted changes)"
fi
cat <<EOF
mappend benchmark run: $(date -u '+%Y-%m-%d %H:%M UTC'), commit $commit
kernel $(uname -sr), $(nproc) CPUs, Dovecot $(PATH="$PATH:/usr/sbin" dovecot --version 2>/dev/null || echo '?'), $("$NGINX" -v 2>&1 | sed 's/^nginx version: //')
files (maildirs, spool, logs) in $TMP ($(stat -f -c %T "$TMP" 2>/dev/null || echo '?'))
EOF
say "Dovecot on 127.0.0.1:$UP_PORT; mappend (pid $MAIN_PID) on :$MAIN_PORT, TLS :$MAIN_TLS_PORT; splice = no (pid $COPY_PID) on :$COPY_PORT; nginx (pid $NGINX_PID) on :${NP[0]} :${NP[2]}, TLS :${NP[1]} :${NP[3]}"

# In the background, so that a signal to this script is handled at once
# (bash runs traps only between foreground commands).
rc=0
"$BENCH" --dovecot-port "$UP_PORT" --user "$USER1" --password "$PASS1" \
	--user2 "$USER2" --password2 "$PASS2" \
	--mappend-port "$MAIN_PORT" --mappend-tls-port "$MAIN_TLS_PORT" \
	--mappend-pid "$MAIN_PID" \
	--mappend-copy-port "$COPY_PORT" --mappend-copy-pid "$COPY_PID" \
	--idle-port "$IDLE_PORT" --idle-pid "$IDLE_PID" \
	--idle-tls-port "$IDLE_TLS_PORT" --idle-tls-pid "$IDLE_TLS_PID" \
	--nginx-pid "$NGINX_PID" --nginx-port "${NP[0]}" --nginx-tls-port "${NP[1]}" \
	--nginx-default-port "${NP[2]}" --nginx-default-tls-port "${NP[3]}" \
	--recovery-bin "$MAPPEND" --recovery-conf "$TMP/mappend-recovery.conf" \
	--recovery-log "$TMP/mappend-recovery.log" --recovery-pid "$REC_PID" \
	--recovery-port "$REC_PORT" \
	--route-map-port "$RMAP_PORT" --route-map-pid "$RMAP_PID" \
	--route-http-port "$RHTTP_PORT" --route-http-pid "$RHTTP_PID" \
	--route-cached-port "$RCACHED_PORT" --route-cached-pid "$RCACHED_PID" \
	--tls-cert "$CERT" --tls-key "$KEY" \
	"${RIDLE_ARGS[@]}" "$@" &
BENCH_PID=$!
wait "$BENCH_PID" || rc=$?
BENCH_PID=""

for name in "${!MAPPEND_PIDS[@]}"; do
	[[ $name == recovery ]] && continue	# killed on purpose
	if ! kill -0 "${MAPPEND_PIDS[$name]}" 2>/dev/null; then
		say "mappend ($name) is no longer running"
		((rc != 0)) || rc=1
	fi
done
if ! kill -0 "$NGINX_PID" 2>/dev/null; then
	say "nginx is no longer running"
	((rc != 0)) || rc=1
fi
for f in "$TMP"/mappend-*.log; do
	problems=$(grep -cE ': (warning|error): ' "$f" || true)
	if ((problems > 0)); then
		echo
		echo "mappend (${f##*/}) logged $problems warnings/errors during the run; the first:"
		grep -E ': (warning|error): ' "$f" | head -n 5
	fi
done
problems=$(grep -cE '\[(alert|crit|emerg|error)\]' "$TMP/nginx/error.log" || true)
if ((problems > 0)); then
	echo
	echo "nginx logged $problems errors during the run; the first:"
	grep -E '\[(alert|crit|emerg|error)\]' "$TMP/nginx/error.log" | head -n 5
fi
exit "$rc"
