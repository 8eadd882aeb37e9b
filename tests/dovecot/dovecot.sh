#!/usr/bin/env bash
# Start and stop a private Dovecot 2.3 instance for mappend's tests,
# benchmarks and demo.  Everything (config, users, mail, sockets, pids, logs)
# lives under one directory; the system Dovecot and /etc/dovecot are never
# touched or read.
#
#   tests/dovecot/dovecot.sh start DIR [--legacy] [--quota SIZE] [--rawlog] [--port N]
#                                      [--ssl CERTDIR]
#   tests/dovecot/dovecot.sh stop DIR
#
# start prints, on success and on stdout only:
#   port=<n>  user=alice  password=...  user2=bob  password2=...
#   master=<master user>  master_password=...
#   tls_port=<n>  (with --ssl only)
# one per line.  On failure it prints the reason and the tail of
# DIR/dovecot.log on stderr, leaves no process running and exits non-zero.
#
#   --legacy      hide MULTIAPPEND from every CAPABILITY list (greeting,
#                 post-login, CAPABILITY command); Dovecot still executes
#                 multi-message APPENDs, it just does not advertise them
#   --quota SIZE  quota plugin, count backend, storage limit SIZE (e.g. 100k,
#                 1M); an APPEND over it gets NO [OVERQUOTA]
#   --rawlog      every IMAP session's traffic in DIR/rawlog/<user>/*.{in,out}
#   --port N      listen on 127.0.0.1:N instead of a free random port
#   --ssl CERTDIR TLS with CERTDIR/server.pem and server.key (a directory made
#                 by tests/tls/gen-certs.sh; they are copied into DIR/ssl):
#                 ssl = required, TLS 1.2 or later, disable_plaintext_auth.
#                 The plain port offers STARTTLS; an imaps port (implicit
#                 TLS, a second free random port) is printed as tls_port.
#
# Layout of DIR: dovecot.conf, users (passwd-file), master-users,
# mail/<user>/Maildir, rawlog/<user>, ssl/ (--ssl), run/ (base_dir: sockets,
# master.pid), state/, dovecot.log.  The IMAP ports are only ever bound to
# loopback addresses (127.0.0.1, and with --ssl 127.0.0.2 too, see below);
# every other listener is a unix socket under DIR/run.
#
# As root, Dovecot's master runs as root (it needs to, to switch users) and
# the mail processes run as nobody:nogroup, chrooted into DIR so that DIR may
# sit below directories nobody cannot enter (e.g. a mode 0700 mktemp dir);
# mail and rawlog files then belong to nobody.  As any other user, every
# process runs as that user.
#
# Good to know when writing tests against it:
#  - Master user: AUTHENTICATE PLAIN with authzid=alice, authcid=<master>,
#    password=<master_password> logs in as alice; so does
#    LOGIN alice*<master> <master_password>.
#  - Failed logins answer NO after ~0.5 s and do not delay later logins
#    (Dovecot's per-IP auth penalty is disabled).
#  - --legacy: Dovecot has one capability setting for before and after
#    login, so the greeting lists the post-login capabilities too
#    (minus MULTIAPPEND, plus AUTH=PLAIN AUTH=LOGIN).
#  - --rawlog: Dovecot records only what follows a successful login (the
#    greeting and LOGIN/AUTHENTICATE are not in it), one file pair per
#    session, and starts every line with a "<unix time>.<usec> " stamp.
#  - Mail in DIR/mail/<user>/Maildir survives stop and start; delete
#    DIR/mail for a fresh start.
#  - doveadm works with -c DIR/dovecot.conf (e.g. mailbox status -u alice
#    messages INBOX, quota get -u alice).
#  - --ssl: Dovecot 2.3 counts a connection whose remote IP equals its local
#    IP as secure, whatever ssl = required and disable_plaintext_auth say:
#    a client on 127.0.0.1 that connects to 127.0.0.1 may still LOGIN
#    without TLS.  To be treated like a remote client (LOGINDISABLED, plain
#    LOGIN refused with NO), connect to 127.0.0.2 instead: with --ssl both
#    ports listen there too (the kernel picks 127.0.0.1 as the source, so
#    the IPs differ), and login_trusted_networks is empty (a trusted network
#    counts as secure too; Dovecot then ignores ID's x-originating-ip).  The
#    certificate names localhost and 127.0.0.1, not 127.0.0.2: verify the
#    name localhost there.
set -euo pipefail

readonly USER1=alice PASS1=alice-secret
readonly USER2=bob PASS2=bob-secret
readonly MASTER_USER=mappend-master MASTER_PASS=master-secret
# the unprivileged account the mail processes use when started as root
readonly ROOT_MAIL_USER=nobody

PROG=${0##*/}

usage() {
	cat >&2 <<EOF
usage: $PROG start DIR [--legacy] [--quota SIZE] [--rawlog] [--port N]
                 [--ssl CERTDIR]
       $PROG stop DIR
EOF
	exit 2
}

msg() { printf '%s: %s\n' "$PROG" "$*" >&2; }

find_dovecot() {
	local d
	if [[ -n ${DOVECOT_BIN:-} ]]; then
		printf '%s\n' "$DOVECOT_BIN"
		return
	fi
	# /usr/sbin is not in an unprivileged user's PATH on Debian
	d=$(PATH="$PATH:/usr/sbin:/usr/local/sbin:/sbin" command -v dovecot || true)
	[[ -n $d ]] || { msg "dovecot not found (apt-get install dovecot-imapd)"; exit 1; }
	printf '%s\n' "$d"
}

# DIR as an absolute, symlink-free path.  Its characters are limited to those
# that need no quoting in dovecot.conf or the passwd-files (':' separates
# passwd-file fields, '%' and '$' are expanded by Dovecot).
abs_dir() {
	local d
	d=$(cd -- "$1" && pwd -P) || exit 1
	if [[ ! $d =~ ^/[A-Za-z0-9/._@,+=~-]*$ ]]; then
		msg "unsupported characters in directory name: $d"
		exit 1
	fi
	printf '%s\n' "$d"
}

# ---------------------------------------------------------------- processes

# Whether a process exists and is not a zombie (some container inits reap
# orphans only every second or two).
alive() {
	local stat
	kill -0 "$1" 2>/dev/null || return 1
	stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
	stat=${stat##*) }
	[[ ${stat:0:1} != Z ]]
}

# base_dir (DIR/run, possibly a symlink to a shorter path, see make_base_dir)
master_pid() {
	local dir=$1 pid
	[[ -r $dir/run/master.pid ]] || return 1
	pid=$(<"$dir/run/master.pid") || return 1
	[[ $pid =~ ^[0-9]+$ ]] || return 1
	alive "$pid" || return 1
	# guard against a recycled pid: it must be a dovecot master
	[[ $(cat "/proc/$pid/comm" 2>/dev/null) == dovecot ]] || return 1
	printf '%s\n' "$pid"
}

# Stop the instance in DIR; success if nothing is running.
#
# The master gets SIGTERM and stops its children, but then sleeps a second
# or two before it exits; a test instance has nothing worth that wait, so
# after 0.3 s its whole process group gets SIGKILL (the master is a session
# and process group leader: daemonize() calls setsid).
stop_instance() {
	local dir=$1 pid i
	if pid=$(master_pid "$dir"); then
		kill -TERM "$pid" 2>/dev/null || true
		for ((i = 0; i < 6; i++)); do
			alive "$pid" || break
			sleep 0.05
		done
		kill -KILL -- "-$pid" 2>/dev/null || true
		for ((i = 0; i < 100; i++)); do
			alive "$pid" || break
			sleep 0.05
		done
		if alive "$pid"; then
			msg "dovecot master $pid did not stop"
			return 1
		fi
	fi
	rm -f "$dir/run/master.pid"
	# a base_dir that had to be moved to a short path (see make_base_dir)
	if [[ -L $dir/run ]]; then
		local target
		target=$(readlink "$dir/run")
		rm -f "$dir/run"
		case $target in /tmp/mappend-dovecot.*) rm -rf -- "$target" ;; esac
	fi
	return 0
}

# ------------------------------------------------------------------- ports

port_in_use() {
	# a connection that succeeds means something listens there
	(exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# A random port that nothing listens on.  Ports are drawn below the kernel's
# ephemeral range when there is room, so they do not collide with the
# kernel-chosen ports other tests listen on or connect from.
random_port() {
	local lo=20000 hi=60999 eph p i
	if read -r eph _ </proc/sys/net/ipv4/ip_local_port_range 2>/dev/null &&
		((eph > lo + 2000)); then
		hi=$((eph - 1))
	fi
	for ((i = 0; i < 100; i++)); do
		p=$((lo + ((RANDOM << 15) | RANDOM) % (hi - lo + 1)))
		port_in_use "$p" || { printf '%s\n' "$p"; return 0; }
	done
	msg "found no free port"
	return 1
}

# Connect to the port and read the greeting; succeed only if it is this
# instance's (its greeting carries a token unique to the instance).
greeting_ok() {
	local port=$1 token=$2 fd line=""
	# (the braces make the stderr redirection temporary; the fd stays)
	{ exec {fd}<>"/dev/tcp/127.0.0.1/$port"; } 2>/dev/null || return 1
	IFS= read -r -t 3 -u "$fd" line || true
	{ printf 'z LOGOUT\r\n' >&"$fd"; } 2>/dev/null || true
	exec {fd}>&-
	[[ $line == "* OK "*"$token"* ]]
}

# ------------------------------------------------------------------ config
#
# The config is written by small functions, one concern each, so that new
# options only touch their own function (e.g. --ssl CERT KEY: ssl, ssl_cert
# and ssl_key in conf_ssl, a port for the imaps listener in conf_services).

conf_global() {
	cat <<EOF
# Private Dovecot instance for mappend's tests; written by tests/dovecot/dovecot.sh.
# Nothing here reads or writes outside $DIR.
base_dir = $BASE_DIR
state_dir = $DIR/state
instance_name = mappend-dovecot-$TOKEN
log_path = $DIR/dovecot.log
auth_verbose = yes
protocols = imap
listen = $ADDRESSES
login_greeting = Dovecot test instance $TOKEN ready.
shutdown_clients = yes
EOF
	if [[ -z $SSL ]]; then
		# lets mappend pass on the client's address (ID
		# x-originating-ip); with --ssl it would make every loopback
		# client secure (see the top of this file)
		echo "login_trusted_networks = 127.0.0.0/8"
	fi
}

conf_ssl() {
	if [[ -z $SSL ]]; then
		cat <<EOF
ssl = no
disable_plaintext_auth = no
EOF
		return
	fi
	cat <<EOF
ssl = required
ssl_cert = <$DIR/ssl/server.pem
ssl_key = <$DIR/ssl/server.key
ssl_min_protocol = TLSv1.2
disable_plaintext_auth = yes
EOF
}

conf_auth() {
	cat <<EOF
auth_mechanisms = plain login
# Failed logins answer at once, and do not slow down later logins: Dovecot
# delays every login from an IP (all clients here are 127.0.0.1) for 2-15 s
# after a failure, unless auth cannot reach anvil's penalty socket, which
# this renames (auth connects to "anvil-auth-penalty" and silently skips
# penalties when it does not exist).
auth_failure_delay = 0
service anvil {
  unix_listener anvil-auth-penalty {
    path = anvil-auth-penalty-disabled
  }
}
# AUTHENTICATE PLAIN with authzid=<user>, authcid=$MASTER_USER logs in as <user>
auth_master_user_separator = *
passdb {
  driver = passwd-file
  args = scheme=PLAIN username_format=%u $DIR/master-users
  master = yes
}
passdb {
  driver = passwd-file
  args = scheme=PLAIN username_format=%u $DIR/users
}
userdb {
  driver = passwd-file
  args = username_format=%u $DIR/users
}
EOF
}

conf_privileges() {
	if ((EUID == 0)); then
		# The master must be root to switch users.  Mail processes may
		# not run as root (Dovecot refuses uid 0), so they run as
		# $ROOT_MAIL_USER, chrooted into DIR via the "DIR/./mail/<user>"
		# homes in the users file: the chroot happens while still root,
		# so the parents of DIR need not be accessible to
		# $ROOT_MAIL_USER.  auth runs as root for the same reason: it
		# reads the passwd-files below DIR.
		cat <<EOF
valid_chroot_dirs = $DIR
first_valid_uid = $MAIL_UID
first_valid_gid = $MAIL_GID
service auth {
  user = root
}
EOF
	else
		# Unprivileged: every process runs as the invoking user, nothing
		# chroots (that needs root).
		cat <<EOF
default_internal_user = $RUN_USER
default_internal_group = $RUN_GROUP
default_login_user = $RUN_USER
first_valid_uid = $MAIL_UID
first_valid_gid = $MAIL_GID
service anvil {
  chroot =
}
service ipc {
  chroot =
}
service imap-login {
  chroot =
}
EOF
	fi
}

conf_mail() {
	cat <<EOF
mail_location = maildir:~/Maildir
# speed over durability: this is a throw-away test instance
mail_fsync = never
mail_plugins = \$mail_plugins${QUOTA:+ quota}
protocol imap {
  mail_plugins = \$mail_plugins${QUOTA:+ imap_quota}
  mail_max_userip_connections = 1000
EOF
	if [[ -n $LEGACY ]]; then
		printf '  imap_capability = %s\n' "$(legacy_capability)"
	fi
	if [[ -n $RAWLOG ]]; then
		# the imap process runs chrooted into DIR as root (see
		# conf_privileges), so the path is relative to DIR there
		if ((EUID == 0)); then
			printf '  rawlog_dir = /rawlog/%%u\n'
		else
			printf '  rawlog_dir = %s/rawlog/%%u\n' "$DIR"
		fi
	fi
	echo "}"
	if [[ -n $QUOTA ]]; then
		cat <<EOF
plugin {
  quota = count:User quota
  quota_vsizes = yes
  quota_rule = *:storage=$QUOTA
}
EOF
	fi
}

# Dovecot's default post-login capability list minus MULTIAPPEND.  An
# explicit imap_capability replaces the whole list in the greeting, after
# LOGIN and for CAPABILITY, and Dovecot then adds nothing by itself (not
# even LITERAL+, NOTIFY or a plugin's QUOTA), so those are added here.
legacy_capability() {
	local caps imap_bin
	imap_bin=$(dirname "$(readlink -f "$DOVECOT")")/../lib/dovecot/imap
	caps=$(grep -haom1 'IMAP4rev1 SASL-IR [A-Za-z0-9 =+.-]*MULTIAPPEND[A-Za-z0-9 =+.-]*' \
		"$imap_bin" /usr/lib/dovecot/imap 2>/dev/null | head -n1 || true)
	if [[ -z $caps ]]; then
		# CAPABILITY_STRING of Dovecot 2.3.19
		caps="IMAP4rev1 SASL-IR LOGIN-REFERRALS ID ENABLE IDLE SORT SORT=DISPLAY THREAD=REFERENCES THREAD=REFS THREAD=ORDEREDSUBJECT MULTIAPPEND URL-PARTIAL CATENATE UNSELECT CHILDREN NAMESPACE UIDPLUS LIST-EXTENDED I18NLEVEL=1 CONDSTORE QRESYNC ESEARCH ESORT SEARCHRES WITHIN CONTEXT=SEARCH LIST-STATUS BINARY MOVE SNIPPET=FUZZY PREVIEW=FUZZY PREVIEW STATUS=SIZE SAVEDATE"
	fi
	caps=" $caps "
	caps=${caps// MULTIAPPEND / }
	caps=${caps# }
	caps="${caps}LITERAL+ NOTIFY${QUOTA:+ QUOTA}"
	printf '%s\n' "$caps"
}

conf_services() {
	cat <<EOF
# many short connections in tests: a few long-lived login processes, each
# serving up to default_client_limit (1000) clients, instead of one process
# per connection
service imap-login {
  inet_listener imap {
    address = $ADDRESSES
    port = $PORT
  }
  inet_listener imaps {
    address = $ADDRESSES
    port = ${TLS_PORT:-0}
    ssl = yes
  }
  service_count = 0
  process_min_avail = 1
}
service imap {
  process_limit = 1024
}
EOF
}

write_config() {
	{
		conf_global
		conf_ssl
		conf_auth
		conf_privileges
		conf_mail
		conf_services
	} >"$DIR/dovecot.conf.tmp"
	mv -f "$DIR/dovecot.conf.tmp" "$DIR/dovecot.conf"
}

# users, master users, mail and rawlog directories
write_users() {
	local u home_prefix
	if ((EUID == 0)); then
		home_prefix="$DIR/./mail"  # chroot DIR, home /mail/<user>
	else
		home_prefix="$DIR/mail"
	fi
	umask 077
	{
		printf '%s:{PLAIN}%s:%s:%s::%s/%s::\n' \
			"$USER1" "$PASS1" "$MAIL_UID" "$MAIL_GID" "$home_prefix" "$USER1"
		printf '%s:{PLAIN}%s:%s:%s::%s/%s::\n' \
			"$USER2" "$PASS2" "$MAIL_UID" "$MAIL_GID" "$home_prefix" "$USER2"
	} >"$DIR/users"
	printf '%s:{PLAIN}%s\n' "$MASTER_USER" "$MASTER_PASS" >"$DIR/master-users"
	umask 022
	mkdir -p "$DIR/state"
	for u in "$USER1" "$USER2"; do
		mkdir -p "$DIR/mail/$u/Maildir/cur" "$DIR/mail/$u/Maildir/new" \
			"$DIR/mail/$u/Maildir/tmp"
		if [[ -n $RAWLOG ]]; then
			mkdir -p "$DIR/rawlog/$u"
		fi
	done
	chmod 0700 "$DIR/mail"
	if ((EUID == 0)); then
		# DIR is the mail processes' chroot: they must be able to enter it
		chmod go+x "$DIR"
		chown -R "$MAIL_UID:$MAIL_GID" "$DIR/mail"
		if [[ -d $DIR/rawlog ]]; then
			chown -R "$MAIL_UID:$MAIL_GID" "$DIR/rawlog"
		fi
	fi
}

# --ssl: the certificate and key, copied where Dovecot's config process
# (root, or the invoking user) can read them whoever owns CERTDIR and
# whatever its name; the key stays readable by its owner only.
copy_certs() {
	local src=$1
	rm -rf "$DIR/ssl"
	mkdir -m 0700 "$DIR/ssl"
	cp -- "$src/server.pem" "$DIR/ssl/server.pem"
	(umask 077 && cp -- "$src/server.key" "$DIR/ssl/server.key")
	chmod 0644 "$DIR/ssl/server.pem"
	chmod 0600 "$DIR/ssl/server.key"
}

# Unix socket paths are limited to 107 bytes; base_dir holds names up to
# ~35 bytes long ("token-login/imap-urlauth", ...).  A long DIR gets its
# base_dir under /tmp, with DIR/run a symlink to it (removed by stop).
make_base_dir() {
	# start from an empty base_dir: stale sockets of a killed instance
	# would be reused (and a stale anvil-auth-penalty would re-enable
	# penalties, see conf_auth)
	if [[ -L $DIR/run ]]; then
		rm -f "$DIR/run"
	fi
	rm -rf "$DIR/run"
	if ((${#DIR} <= 64)); then
		BASE_DIR=$DIR/run
		mkdir -p "$BASE_DIR"
		return
	fi
	BASE_DIR=$(mktemp -d /tmp/mappend-dovecot.XXXXXX)
	chmod 0755 "$BASE_DIR"
	ln -s "$BASE_DIR" "$DIR/run"
}

# ------------------------------------------------------------------- start

fail() {
	msg "$*"
	if [[ -s $DIR/dovecot.log ]]; then
		echo "--- last lines of $DIR/dovecot.log:" >&2
		tail -n 20 "$DIR/dovecot.log" >&2
	fi
	if [[ -s $DIR/dovecot.stderr ]]; then
		echo "--- dovecot's stderr:" >&2
		tail -n 20 "$DIR/dovecot.stderr" >&2
	fi
	stop_instance "$DIR"
	exit 1
}

# Unprivileged, the master cannot raise its fd limit itself; a login
# process serves up to 1000 clients.
raise_fd_limit() {
	local hard soft
	hard=$(ulimit -Hn) soft=$(ulimit -Sn)
	[[ $hard == unlimited ]] && hard=65536
	((hard > 65536)) && hard=65536
	if [[ $soft != unlimited ]] && ((soft < hard)); then
		ulimit -Sn "$hard" 2>/dev/null || true
	fi
}

# Start the master on $PORT and wait until it greets.  Returns 0 when up,
# 3 when the port turned out to be taken (worth another port), 1 otherwise.
try_start() {
	local rc=0 i pid log_size errors
	write_config
	: >"$DIR/dovecot.stderr"
	log_size=$(stat -c %s "$DIR/dovecot.log")
	raise_fd_limit
	# the master binds its listeners before it daemonizes, so a busy port
	# makes this command fail
	"$DOVECOT" -c "$DIR/dovecot.conf" </dev/null >>"$DIR/dovecot.stderr" 2>&1 || rc=$?
	if ((rc != 0)); then
		# this attempt's errors: its stderr and what it added to the log
		errors=$(cat "$DIR/dovecot.stderr"
			tail -c "+$((log_size + 1))" "$DIR/dovecot.log")
		if [[ $errors == *"Address already in use"* ]]; then
			return 3
		fi
		REASON="dovecot exited with status $rc"
		return 1
	fi
	for ((i = 0; i < 100; i++)); do
		if ! pid=$(master_pid "$DIR"); then
			# the pid file appears a moment after daemonizing
			if ((i > 20)); then
				REASON="dovecot's master is not running"
				return 1
			fi
		elif greeting_ok "$PORT" "$TOKEN"; then
			if [[ -n $SSL ]] && ! port_in_use "$TLS_PORT"; then
				REASON="nothing listens on the imaps port $TLS_PORT"
				return 1
			fi
			return 0
		fi
		sleep 0.1
	done
	REASON="no IMAP greeting on 127.0.0.1:$PORT within 10 s"
	return 1
}

cmd_start() {
	local legacy="" quota="" rawlog="" port="" ssl="" rc tries
	[[ $# -ge 1 ]] || usage
	local dir_arg=$1
	shift
	while [[ $# -gt 0 ]]; do
		case $1 in
		--legacy) legacy=1 ;;
		--rawlog) rawlog=1 ;;
		--quota)
			[[ $# -ge 2 ]] || usage
			quota=$2
			shift
			;;
		--port)
			[[ $# -ge 2 ]] || usage
			port=$2
			shift
			;;
		--ssl)
			[[ $# -ge 2 ]] || usage
			ssl=$2
			shift
			;;
		*) usage ;;
		esac
		shift
	done
	if [[ -n $quota && ! $quota =~ ^[0-9]+[BkKMGT]?$ ]]; then
		msg "bad --quota size '$quota' (e.g. 512k, 10M)"
		exit 2
	fi
	if [[ -n $port ]] && { [[ ! $port =~ ^[0-9]+$ ]] || ((port < 1 || port > 65535)); }; then
		msg "bad --port '$port'"
		exit 2
	fi

	if [[ -n $ssl ]] && { [[ ! -r $ssl/server.pem ]] || [[ ! -r $ssl/server.key ]]; }; then
		msg "--ssl '$ssl': no readable server.pem and server.key (see tests/tls/gen-certs.sh)"
		exit 2
	fi

	DOVECOT=$(find_dovecot)
	if [[ ! $dir_arg =~ ^[A-Za-z0-9/._@,+=~-]+$ ]]; then
		msg "unsupported characters in directory name: $dir_arg"
		exit 1
	fi
	mkdir -p -- "$dir_arg"
	DIR=$(abs_dir "$dir_arg")
	LEGACY=$legacy QUOTA=$quota RAWLOG=$rawlog SSL=$ssl TLS_PORT=""
	# 127.0.0.2: where loopback clients are not secure by Dovecot's rules
	ADDRESSES="127.0.0.1${SSL:+ 127.0.0.2}"
	if master_pid "$DIR" >/dev/null; then
		msg "$DIR already holds a running Dovecot (pid $(master_pid "$DIR"))"
		exit 1
	fi
	stop_instance "$DIR"  # clears a stale pid file or base_dir symlink

	if ((EUID == 0)); then
		MAIL_UID=$(id -u "$ROOT_MAIL_USER") MAIL_GID=$(id -g "$ROOT_MAIL_USER")
	else
		MAIL_UID=$(id -u) MAIL_GID=$(id -g)
		RUN_USER=$(id -un) RUN_GROUP=$(id -gn)
	fi
	# unique per instance: tells our greeting from another server's
	TOKEN="$$-$RANDOM$RANDOM"

	write_users
	if [[ -n $SSL ]]; then
		copy_certs "$SSL"
	fi
	make_base_dir
	: >>"$DIR/dovecot.log"
	if ((EUID == 0)); then
		# the log is opened by the root log process; keep it readable
		chmod 0644 "$DIR/dovecot.log"
	fi

	REASON=""
	# interrupted half-way: leave nothing running
	trap 'stop_instance "$DIR"; exit 1' INT TERM HUP
	for ((tries = 0; tries < 8; tries++)); do
		if [[ -n $port ]]; then
			PORT=$port
			if port_in_use "$PORT"; then
				fail "port $PORT on 127.0.0.1 is already in use"
			fi
		else
			PORT=$(random_port) || fail "no free port"
		fi
		if [[ -n $SSL ]]; then
			TLS_PORT=$(random_port) || fail "no free port"
			while [[ $TLS_PORT == "$PORT" ]]; do
				TLS_PORT=$(random_port) || fail "no free port"
			done
		fi
		rc=0
		try_start || rc=$?
		case $rc in
		0)
			cat <<EOF
port=$PORT
user=$USER1
password=$PASS1
user2=$USER2
password2=$PASS2
master=$MASTER_USER
master_password=$MASTER_PASS
EOF
			if [[ -n $SSL ]]; then
				printf 'tls_port=%s\n' "$TLS_PORT"
			fi
			trap - INT TERM HUP
			return 0
			;;
		3)
			stop_instance "$DIR"
			[[ -z $port ]] || fail "port $PORT or ${TLS_PORT:-its imaps port} is already in use"
			msg "port $PORT${TLS_PORT:+ or $TLS_PORT} was taken meanwhile, trying another"
			;;
		*)
			fail "${REASON:-dovecot did not start}"
			;;
		esac
	done
	fail "gave up after $tries ports that were taken"
}

cmd_stop() {
	[[ $# -eq 1 ]] || usage
	[[ -d $1 ]] || return 0
	DIR=$(abs_dir "$1")
	stop_instance "$DIR"
}

[[ $# -ge 1 ]] || usage
cmd=$1
shift
case $cmd in
start) cmd_start "$@" ;;
stop) cmd_stop "$@" ;;
*) usage ;;
esac
