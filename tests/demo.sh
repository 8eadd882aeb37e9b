#!/usr/bin/env bash
# What `make demo` runs: a private Dovecot on loopback that does not
# advertise MULTIAPPEND, and ./mappend in front of it on 127.0.0.1:1143, in
# the foreground.  It runs one short IMAP session itself and prints it, then
# offers a client made of bash alone (a fresh Debian has neither nc nor
# telnet).  Ctrl-C (or SIGTERM) stops both and removes every file.
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
TAIL_PID=""
INTERRUPTED=""

cleanup() {
	local i
	trap - EXIT INT TERM HUP
	if [[ -n $TAIL_PID ]]; then kill "$TAIL_PID" 2>/dev/null || true; fi
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

# As root, mappend shows its privilege drop: it creates the spool for user
# nobody, who only needs to pass through $TMP.
RUN_AS=""
if [[ $(id -u) == 0 ]] && getent passwd nobody >/dev/null; then
	RUN_AS="user = nobody"
	chmod 0711 "$TMP"
else
	mkdir -m 0700 "$TMP/spool"
fi
cat >"$TMP/mappend.conf" <<EOF
# mappend demo configuration, written by tests/demo.sh
listen = 127.0.0.1:$PORT
upstream = 127.0.0.1:$UP_PORT
spool_dir = $TMP/spool
log_level = info
$RUN_AS
EOF

if ! "$MAPPEND" -t -c "$TMP/mappend.conf" >/dev/null; then
	say "mappend refused the configuration $TMP/mappend.conf:"
	cat "$TMP/mappend.conf" >&2
	exit 1
fi

# A terminal for IMAP in bash alone: typed lines go out with CRLF, as IMAP
# wants, and the literal sizes below count those 2 bytes.
cat >"$TMP/imap" <<EOF
#!/usr/bin/env bash
# mappend demo client: type IMAP lines, Ctrl-D to quit.
exec 3<>/dev/tcp/127.0.0.1/$PORT || exit 1
cat <&3 &
trap 'kill \$! 2>/dev/null' EXIT
while IFS= read -r line; do printf '%s\r\n' "\$line" >&3; done
# the last answers (after LOGOUT, the server closes and cat ends)
for ((i = 0; i < 20; i++)); do kill -0 \$! 2>/dev/null && sleep 0.1; done
EOF
chmod 0755 "$TMP/imap"

# In the background, so that SIGTERM to this script is handled at once
# (bash runs traps only between foreground commands); its log goes to a
# file until the scripted session has been shown.
"$MAPPEND" -f -c "$TMP/mappend.conf" 2>"$TMP/mappend.log" &
MAPPEND_PID=$!
for ((i = 0; i < 50; i++)); do
	grep -q 'mappend started' "$TMP/mappend.log" && break
	if ! kill -0 "$MAPPEND_PID" 2>/dev/null; then
		cat "$TMP/mappend.log" >&2
		say "mappend did not start"
		exit 1
	fi
	sleep 0.1
done

# The scripted session: every line sent (C:) and received (S:).
session() {
	local line
	exec 4<>"/dev/tcp/127.0.0.1/$PORT" || return 1
	# S: lines up to the one starting with $1 (a tag, or "*" for the greeting)
	answer() {
		while IFS= read -r -t 10 line <&4; do
			line=${line%$'\r'}
			printf '    S: %s\n' "$line"
			[[ $line == "$1 "* ]] && return 0
		done
		printf '    (no answer for %s)\n' "$1"
		return 1
	}
	send() { printf '    C: %s\n' "$1"; printf '%s\r\n' "$1" >&4; }
	answer '*' &&
	send "a LOGIN $USER1 $PASS1" && answer a &&
	send 'b APPEND INBOX {22+}' && send 'Subject: first' && send '' &&
	send 'hi' && send ' {23+}' && send 'Subject: second' && send '' &&
	send 'hi' && send '' && answer b &&
	send 'c SELECT INBOX' && answer c &&
	send 'd LOGOUT' && answer d
	exec 4>&-
}

cat <<EOF

  mappend demo
  ============
  mappend listens on 127.0.0.1:$PORT and relays to a private Dovecot on
  127.0.0.1:$UP_PORT that does not offer MULTIAPPEND (RFC 3502); mappend
  adds it.  A first session, run by this script (C: sent, S: received):

EOF
session || say "the scripted session failed; mappend's log follows"
cat <<EOF

  Command b appended two messages at once: that is MULTIAPPEND.  The line
  " {23+}" (it starts with a space) announces the second message, and the
  empty line after the second "hi" ends the command.  mappend answered
  "b OK [APPENDUID ...]" once both were stored; it stores both or neither.

  Your turn.  Users:  $USER1 / $PASS1    $USER2 / $PASS2
    $TMP/imap        a client in bash alone: type lines, Ctrl-D quits
  and paste the lines after "C:" above; or point any mail client at IMAP
  server 127.0.0.1, port $PORT, no encryption, normal password.

  Files (removed on exit): $TMP
    mappend.conf, mappend.log, spool/, dovecot/dovecot.log
  mappend's log follows.  Press Ctrl-C to stop.

EOF
tail -n +1 -f "$TMP/mappend.log" >&2 &
TAIL_PID=$!

rc=0
wait "$MAPPEND_PID" || rc=$?
MAPPEND_PID=""
if ((rc != 0)); then
	sleep 0.2	# let tail show mappend's last words
	say "mappend exited with status $rc"
	exit "$rc"
fi
say "mappend exited"
