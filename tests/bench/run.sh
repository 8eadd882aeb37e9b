#!/usr/bin/env bash
# What `make bench` runs: a private legacy-mode Dovecot (no MULTIAPPEND
# advertised) and mappend in front of it, both on loopback, then the
# benchmark program, which prints the report (see BENCHMARKS.md).  Everything
# is stopped and removed on exit, whatever happens.
#
#   tests/bench/run.sh BUILD_DIR [bench_mappend options]
#
# BUILD_DIR holds mappend and tests/bench_mappend (make bench builds both).
# Extra options go to the benchmark program, e.g. --runs 5, --sessions 200,
# --fetch-mib 50 (BUILD_DIR/tests/bench_mappend --help lists them).
# Exits with the benchmark program's status: 0 when every benchmark ran
# (targets are reported, not asserted), non-zero on an error.
#
# Dovecot's maildirs and mappend's spool go into a temp dir on /dev/shm
# (tmpfs) when it has 2 GiB free, else into $TMPDIR or /tmp;
# MAPPEND_BENCH_TMPDIR=DIR chooses the parent directory.  tmpfs keeps the
# figures about IMAP and the proxy: on a disk file system, Dovecot's cost
# per message (a file created and renamed per APPEND) depends on the file
# system and on what else the machine did recently (e.g. ext4 without a
# journal skips over inodes freed in the last minutes when it allocates
# one, so deleting the last run's mailbox slows down the next run).
set -euo pipefail

say() { printf 'bench: %s\n' "$*" >&2; }

if [[ $# -lt 1 ]]; then
	echo "usage: $0 BUILD_DIR [bench_mappend options]" >&2
	exit 2
fi
BUILD=$(cd -- "$1" && pwd -P)
shift
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd -P)
MAPPEND=$BUILD/mappend
BENCH=$BUILD/tests/bench_mappend
DOVECOT_SH=$ROOT/tests/dovecot/dovecot.sh
SESSIONS=1000	# idle sessions the program opens (--sessions overrides)
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
MAPPEND_PID="" BENCH_PID=""

cleanup() {
	local rc=$? i
	trap - EXIT INT TERM HUP
	if [[ -n $BENCH_PID ]]; then
		kill -TERM "$BENCH_PID" 2>/dev/null || true
		wait "$BENCH_PID" 2>/dev/null || true
	fi
	if [[ -n $MAPPEND_PID ]] && kill -0 "$MAPPEND_PID" 2>/dev/null; then
		kill -TERM "$MAPPEND_PID" 2>/dev/null || true
		for ((i = 0; i < 120; i++)); do
			kill -0 "$MAPPEND_PID" 2>/dev/null || break
			sleep 0.1
		done
		kill -KILL "$MAPPEND_PID" 2>/dev/null || true
		wait "$MAPPEND_PID" 2>/dev/null || true
	fi
	# an error (not bad usage, not an interruption): the logs' last lines
	if ((rc != 0 && rc != 2 && rc != 130)); then
		if [[ -s $TMP/mappend.log ]]; then
			say "last lines of mappend's log:"
			tail -n 20 "$TMP/mappend.log" >&2
		fi
		if [[ -s $TMP/dovecot/dovecot.log ]]; then
			say "last lines of Dovecot's log:"
			tail -n 20 "$TMP/dovecot/dovecot.log" >&2
		fi
	fi
	"$DOVECOT_SH" stop "$TMP/dovecot" || true
	rm -rf -- "$TMP"
	exit "$rc"
}
trap cleanup EXIT
trap 'say "interrupted"; exit 130' INT TERM HUP

# one descriptor per idle session in the program, two in mappend
hard=$(ulimit -Hn)
if [[ $hard == unlimited ]] || ((hard > 65536)); then hard=65536; fi
ulimit -Sn "$hard" 2>/dev/null || true
if (($(ulimit -Sn) < 2 * SESSIONS + 100)); then
	say "the open-files limit ($(ulimit -Sn)) is too low for $SESSIONS sessions"
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

mkdir -m 0700 "$TMP/spool"
cat >"$TMP/mappend.conf" <<EOF
# written by tests/bench/run.sh
listen = 127.0.0.1:0
upstream = 127.0.0.1:$UP_PORT
spool_dir = $TMP/spool
log_level = info
max_sessions = $((SESSIONS + 100))
max_message_size = 64M
max_messages = 100000
max_session_spool = 4G
max_total_spool = 8G
EOF

: >"$TMP/mappend.log"
"$MAPPEND" -f -c "$TMP/mappend.conf" 2>"$TMP/mappend.log" &
MAPPEND_PID=$!
PORT=""
for ((i = 0; i < 100; i++)); do
	PORT=$(sed -n 's/.*info: listening on 127\.0\.0\.1:\([0-9][0-9]*\)$/\1/p' \
		"$TMP/mappend.log" | head -n1)
	[[ -n $PORT ]] && break
	kill -0 "$MAPPEND_PID" 2>/dev/null || { say "mappend exited at start"; exit 1; }
	sleep 0.1
done
[[ -n $PORT ]] || { say "mappend did not report its port within 10 s"; exit 1; }

commit=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)
if [[ -n $(git -C "$ROOT" status --porcelain --untracked-files=no 2>/dev/null) ]]; then
	commit="$commit (with uncommitted changes)"
fi
cat <<EOF
mappend benchmark run: $(date -u '+%Y-%m-%d %H:%M UTC'), commit $commit
kernel $(uname -sr), $(nproc) CPUs, Dovecot $(PATH="$PATH:/usr/sbin" dovecot --version 2>/dev/null || echo '?')
files (maildirs, spool) in $TMP ($(stat -f -c %T "$TMP" 2>/dev/null || echo '?'))
EOF
say "Dovecot on 127.0.0.1:$UP_PORT, mappend (pid $MAPPEND_PID) on 127.0.0.1:$PORT; this takes a few minutes"

# In the background, so that a signal to this script is handled at once
# (bash runs traps only between foreground commands).
rc=0
"$BENCH" --mappend-port "$PORT" --mappend-pid "$MAPPEND_PID" \
	--dovecot-port "$UP_PORT" --user "$USER1" --password "$PASS1" \
	--user2 "$USER2" --password2 "$PASS2" "$@" &
BENCH_PID=$!
wait "$BENCH_PID" || rc=$?
BENCH_PID=""

if ! kill -0 "$MAPPEND_PID" 2>/dev/null; then
	say "mappend is no longer running"
	((rc != 0)) || rc=1
fi
problems=$(grep -cE ': (warning|error): ' "$TMP/mappend.log" || true)
if ((problems > 0)); then
	echo
	echo "mappend logged $problems warnings/errors during the run; the first:"
	grep -E ': (warning|error): ' "$TMP/mappend.log" | head -n 5
fi
exit "$rc"
