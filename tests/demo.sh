#!/usr/bin/env bash
# What `make demo` runs: a private Dovecot on loopback that does not
# advertise MULTIAPPEND, and ./mappend in front of it on 127.0.0.1:1143, in
# the foreground.  Ctrl-C (or SIGTERM) stops both and removes every file.
#
#   MAPPEND_DEMO_PORT   port mappend listens on (default 1143)
#   MAPPEND_DEMO_BIN    the daemon to run (default ./mappend)
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."  # the repository's root

PORT=${MAPPEND_DEMO_PORT:-1143}
MAPPEND=${MAPPEND_DEMO_BIN:-./mappend}
DOVECOT_SH=tests/dovecot/dovecot.sh

say() { printf 'demo: %s\n' "$*" >&2; }

if [[ ! $PORT =~ ^[0-9]+$ ]] || ((PORT < 1 || PORT > 65535)); then
	say "MAPPEND_DEMO_PORT must be a port number, not '$PORT'"
	exit 2
fi
if [[ ! -x $MAPPEND ]]; then
	say "$MAPPEND not found: build it first (make; make demo does both)"
	exit 1
fi
if (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; then
	say "port $PORT on 127.0.0.1 is already in use (another mappend or IMAP"
	say "server?).  Stop it, or pick another port: MAPPEND_DEMO_PORT=2143 make demo"
	exit 1
fi

TMP=$(mktemp -d /tmp/mappend-demo.XXXXXX)
MAPPEND_PID=""
INTERRUPTED=""

cleanup() {
	local i
	trap - EXIT INT TERM HUP
	if [[ -n $MAPPEND_PID && -n $INTERRUPTED ]]; then
		# Ctrl-C reached mappend too: give it a moment to stop by itself
		# (a second signal would make it skip its orderly shutdown)
		for ((i = 0; i < 30; i++)); do
			kill -0 "$MAPPEND_PID" 2>/dev/null || break
			sleep 0.1
		done
	fi
	if [[ -n $MAPPEND_PID ]] && kill -0 "$MAPPEND_PID" 2>/dev/null; then
		kill -TERM "$MAPPEND_PID" 2>/dev/null || true
		for ((i = 0; i < 50; i++)); do
			kill -0 "$MAPPEND_PID" 2>/dev/null || break
			sleep 0.1
		done
		kill -KILL "$MAPPEND_PID" 2>/dev/null || true
		wait "$MAPPEND_PID" 2>/dev/null || true
	fi
	"$DOVECOT_SH" stop "$TMP/dovecot" || true
	rm -rf -- "$TMP"
}
trap cleanup EXIT
# exit runs cleanup through the EXIT trap
trap 'INTERRUPTED=1; echo >&2; say "stopping mappend and Dovecot"; exit 0' INT
trap 'say "stopping mappend and Dovecot"; exit 0' TERM HUP

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
# mappend demo configuration, written by tests/demo.sh
listen = 127.0.0.1:$PORT
upstream = 127.0.0.1:$UP_PORT
spool_dir = $TMP/spool
log_level = info
EOF

if ! "$MAPPEND" -t -c "$TMP/mappend.conf" >/dev/null; then
	say "mappend refused the configuration $TMP/mappend.conf:"
	cat "$TMP/mappend.conf" >&2
	exit 1
fi

cat <<EOF

  mappend demo
  ============
  mappend listens on 127.0.0.1:$PORT and relays to a private Dovecot on
  127.0.0.1:$UP_PORT that does not offer MULTIAPPEND (RFC 3502); mappend
  adds it.

  Users:    $USER1 / $PASS1        $USER2 / $PASS2
  Connect:  nc -C 127.0.0.1 $PORT         (or: telnet 127.0.0.1 $PORT)
  Or point any mail client at IMAP server 127.0.0.1, port $PORT, no
  encryption (plain IMAP), normal password.

  A session to type or paste (between the dashes).  nc -C and telnet end
  each line with CRLF; the literal sizes {22+} and {23+} count those 2 bytes.
  -------------------------------------------------------------------------
a LOGIN $USER1 $PASS1
b CAPABILITY
c APPEND INBOX {22+}
Subject: first

hi
 {23+}
Subject: second

hi

d SELECT INBOX
e LOGOUT
  -------------------------------------------------------------------------
  Command c appends two messages at once (that is MULTIAPPEND): the line
  " {23+}" starts with a space and announces the second message, and the
  empty line after the second "hi" ends the command.  mappend answers
  "c OK [APPENDUID ...]" once both are stored, or stores neither.

  Files (removed on exit): $TMP
    mappend.conf, spool/, dovecot/dovecot.log
  mappend's log follows.  Press Ctrl-C to stop.

EOF

# In the background, so that SIGTERM to this script is handled at once
# (bash runs traps only between foreground commands).
"$MAPPEND" -f -c "$TMP/mappend.conf" &
MAPPEND_PID=$!
rc=0
wait "$MAPPEND_PID" || rc=$?
MAPPEND_PID=""
if ((rc != 0)); then
	say "mappend exited with status $rc"
	exit "$rc"
fi
say "mappend exited"
