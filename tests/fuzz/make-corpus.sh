#!/usr/bin/env bash
# Regenerate the fuzzers' seed corpora from real IMAP sessions (not run by
# CI; run it by hand as root when the corpora should be renewed, and commit
# the result).
#
#   tests/fuzz/make-corpus.sh
#
# Real clients do real work against private Dovecots started with
# tests/dovecot/dovecot.sh --rawlog: mbsync (isync) syncs a few mailboxes
# both ways in three rounds with changes on each side between them,
# offlineimap3 downloads everything and uploads a new message, and UW
# mailutil copies a mailbox with MULTIAPPEND (synchronizing literals, one
# "+" per message) and, against a --legacy Dovecot, with one APPEND per
# message.  Dovecot's raw logs (.in: what clients sent, .out: what the
# server answered; time stamps removed) are cut at command/response
# boundaries into pieces of a few KB and written, with the lexer targets'
# three control bytes in front, into tests/fuzz/corpus/fuzz_command_lexer
# and fuzz_response_lexer (files named rawlog-*; the hand-written seeds
# there are kept).  The capability lists, SEARCH answers and APPENDUID
# codes of those sessions become seeds of fuzz_capability and fuzz_uidset.
# Nothing outside a temporary directory and tests/fuzz/corpus is written.
set -euo pipefail
shopt -s nullglob

top=$(cd "$(dirname "$0")/../.." && pwd)
corpus=$top/tests/fuzz/corpus
dovecot_sh=$top/tests/dovecot/dovecot.sh

need=""
for p in isync offlineimap3 uw-mailutils python3 dovecot-imapd; do
	dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null | grep -q '^install ok installed' ||
		need="$need $p"
done
if [[ -n $need ]]; then
	if ((EUID != 0)); then
		echo "make-corpus.sh: as root run: apt-get install -y$need" >&2
		exit 1
	fi
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $need
fi

work=$(mktemp -d /tmp/mappend-corpus.XXXXXX)
cleanup() {
	"$dovecot_sh" stop "$work/modern" >/dev/null 2>&1 || true
	"$dovecot_sh" stop "$work/legacy" >/dev/null 2>&1 || true
	rm -rf "$work"
}
trap cleanup EXIT

# start NAME [dovecot.sh options]: sets PORT and PASS
start() {
	local name=$1 out
	shift
	out=$("$dovecot_sh" start "$work/$name" --rawlog "$@")
	PORT=$(sed -n 's/^port=//p' <<<"$out")
	PASS=$(sed -n 's/^password=//p' <<<"$out")
}

# mailutil reads the password from its terminal only
cat >"$work/withpass.py" <<'EOF'
import os, pty, select, sys
password = os.environ["PASS"].encode()
pid, fd = pty.fork()
if pid == 0:
    os.execvp(sys.argv[1], sys.argv[1:])
seen = b""
while True:
    ready, _, _ = select.select([fd], [], [], 60)
    if not ready:
        os.kill(pid, 9)
        break
    try:
        data = os.read(fd, 4096)
    except OSError:
        break
    if not data:
        break
    seen += data
    if b"password:" in seen:
        os.write(fd, password + b"\n")
        seen = b""
_, status = os.waitpid(pid, 0)
sys.exit(os.waitstatus_to_exitcode(status))
EOF
mailutil_run() {
	PASS=$PASS timeout 120 python3 "$work/withpass.py" mailutil "$@" >/dev/null
}
imap_box() {
	printf '{127.0.0.1:%s/imap/notls/norsh/user=alice}%s' "$PORT" "$1"
}

# msg FILE N: a message of its own shape
msg() {
	local file=$1 n=$2 i
	{
		printf 'From: Sender %d <s%d@example.org>\r\n' "$n" "$n"
		printf 'To: alice@example.org\r\n'
		printf 'Subject: message %d of the corpus\r\n' "$n"
		printf 'Date: Mon, %d Jan 2024 10:00:00 +0100\r\n' "$n"
		printf 'Message-ID: <corpus-%d@example.org>\r\n' "$n"
		case $((n % 4)) in
		1)
			printf 'Content-Type: text/plain; charset=utf-8\r\n'
			printf 'Content-Transfer-Encoding: 8bit\r\n\r\n'
			printf 'Gr\xc3\xbc\xc3\x9fe, {5}\r\n"quoted" (paren) \\ backslash\r\n'
			;;
		2)
			printf 'MIME-Version: 1.0\r\n'
			printf 'Content-Type: multipart/mixed; boundary="b%d"\r\n\r\n' "$n"
			printf -- '--b%d\r\nContent-Type: text/plain\r\n\r\nsee attachment\r\n' "$n"
			printf -- '--b%d\r\nContent-Type: application/octet-stream\r\n' "$n"
			printf 'Content-Transfer-Encoding: base64\r\n\r\n'
			for ((i = 0; i < 20; i++)); do
				head -c 57 /dev/urandom | base64 -w0
				printf '\r\n'
			done
			printf -- '--b%d--\r\n' "$n"
			;;
		3)
			printf 'X-Long: %s\r\n\r\n' "$(printf 'word%.0s ' $(seq 60))"
			printf 'a1 LOGOUT\r\n* BYE looks like a command\r\n'
			;;
		*)
			printf '\r\nshort body %d\r\n' "$n"
			;;
		esac
	} >"$file"
}

maildir() {
	mkdir -p "$1/cur" "$1/new" "$1/tmp"
}

# ---------------------------------------------------------------- sessions

start modern
mb=$work/mbsync
maildir "$mb/INBOX"
maildir "$mb/Work"
maildir "$mb/Archive"
for n in 1 2 3 4 5; do msg "$mb/INBOX/new/$n.corpus:2," "$n"; done
msg "$mb/Work/cur/6.corpus:2,S" 6
msg "$mb/Archive/cur/7.corpus:2,FS" 7
cat >"$work/mbsyncrc" <<EOF
IMAPAccount dv
Host 127.0.0.1
Port $PORT
User alice
Pass $PASS
SSLType None
AuthMechs LOGIN

IMAPStore remote
Account dv

MaildirStore local
Path $mb/
Inbox $mb/INBOX
SubFolders Verbatim

Channel all
Far :remote:
Near :local:
Patterns *
Create Both
Expunge Both
SyncState *
EOF
mbsync_run() {
	timeout 120 mbsync -q -c "$work/mbsyncrc" -a
}

# round 1: everything up
mbsync_run
# MULTIAPPEND with synchronizing literals, and more to sync down
mailutil_run copy "$(imap_box INBOX)" "$(imap_box Copied)"
mailutil_run append "$(imap_box Archive)" "$(imap_box Work)"
# round 2: local flags, a deletion and new mail against the server's news
files=("$mb"/INBOX/new/* "$mb"/INBOX/cur/*)
mv "${files[0]}" "$mb/INBOX/cur/$(basename "${files[0]%%:*}"):2,FS"
rm -f "${files[-1]}"
maildir "$mb/Later"
msg "$mb/Later/new/8.corpus:2," 8
msg "$mb/Work/new/9.corpus:2," 9
mbsync_run
# round 3: nothing changed
mbsync_run

oi=$work/offlineimap
mkdir -p "$oi"
cat >"$oi/conf" <<EOF
[general]
accounts = dv
metadata = $oi/meta

[Account dv]
localrepository = local
remoterepository = remote

[Repository local]
type = Maildir
localfolders = $oi/mail

[Repository remote]
type = IMAP
remotehost = 127.0.0.1
remoteport = $PORT
remoteuser = alice
remotepass = $PASS
ssl = no
starttls = no
EOF
offlineimap_run() {
	# (it warns about the plaintext password on every run)
	timeout 120 offlineimap -c "$oi/conf" -o -u quiet >"$work/offlineimap.log" 2>&1 ||
		{ cat "$work/offlineimap.log" >&2; exit 1; }
}
offlineimap_run
msg "$oi/mail/INBOX/new/10.corpus:2," 10
files=("$oi"/mail/Work/cur/* "$oi"/mail/Work/new/*)
mv "${files[0]}" "$oi/mail/Work/cur/$(basename "${files[0]%%:*}"):2,RS"
offlineimap_run

# one APPEND per message, each waiting for its "+"
start legacy --legacy
sed -i "s/^Port .*/Port $PORT/; s/^Pass .*/Pass $PASS/" "$work/mbsyncrc"
rm -rf "$mb"
maildir "$mb/INBOX"
for n in 11 12 13 14; do msg "$mb/INBOX/new/$n.corpus:2," "$n"; done
mbsync_run
mailutil_run copy "$(imap_box INBOX)" "$(imap_box Legacy)"

# ------------------------------------------------------------------ seeds

python3 - "$work" "$corpus" <<'EOF'
import glob, os, re, sys

work, corpus = sys.argv[1], sys.argv[2]
PIECE = 4096            # aim for pieces about this size
HARD = 8192 - 3         # the lexer targets' -max_len, less the control bytes
STAMP = re.compile(rb"^\d+\.\d+ ")
LITERAL = re.compile(rb"~?\{(\d+)\+?\}\r?\n$")

def unstamp(path):
    with open(path, "rb") as f:
        return b"".join(STAMP.sub(b"", line, count=1)
                        for line in f.read().splitlines(keepends=True))

def units(data):
    """Whole commands or responses, literals included."""
    i = 0
    while i < len(data):
        start = i
        while True:
            j = data.find(b"\n", i)
            if j < 0:
                i = len(data)
                break
            m = LITERAL.search(data[i:j + 1])
            i = j + 1
            if not m:
                break
            i += int(m.group(1))
        yield data[start:i]

def pieces(data):
    cur = b""
    for u in units(data):
        if cur and len(cur) + len(u) > PIECE:
            yield cur
            cur = b""
        cur += u
    if cur:
        yield cur

def write(target, name, body):
    d = os.path.join(corpus, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(body)

for target in ("fuzz_command_lexer", "fuzz_response_lexer", "fuzz_capability",
               "fuzz_uidset"):
    for old in glob.glob(os.path.join(corpus, target, "rawlog-*")):
        os.remove(old)

seen = set()
count = 0
caps, sets = set(), set()
for inst in ("modern", "legacy"):
    for path in sorted(glob.glob(os.path.join(work, inst, "rawlog", "*", "*.in")) +
                       glob.glob(os.path.join(work, inst, "rawlog", "*", "*.out"))):
        data = unstamp(path)
        out = path.endswith(".out")
        target = "fuzz_response_lexer" if out else "fuzz_command_lexer"
        for k, p in enumerate(pieces(data)):
            p = p[:HARD]
            if p in seen:
                continue
            seen.add(p)
            count += 1
            # big lines, fed whole / byte by byte / in chunks, in turn
            control = bytes([6 + ((count % 3) << 3), count & 0xff, (count * 37) & 0xff])
            write(target, "rawlog-%s-%s-%s-%02d" % (inst, os.path.basename(path).split(".")[1],
                  "out" if out else "in", k), control + p)
        if out:
            for m in re.finditer(rb"(?:^\* CAPABILITY |\[CAPABILITY )([^\]\r\n]*)", data, re.M):
                caps.add(m.group(1))
            for m in re.finditer(rb"^\* SEARCH([^\r\n]*)", data, re.M):
                sets.add(b"\x03\x40\x01\x00\x00\x00" + m.group(1))
            for m in re.finditer(rb"\[APPENDUID ([^\]]*)\]", data):
                sets.add(b"\x02\x40\x00\x00\x00\x00" + m.group(1))
                sets.add(b"\x01\x40\x00\x00\x00\x00" + m.group(1).split(b" ")[-1])
for k, c in enumerate(sorted(caps)):
    for policy in (b"\x01", b"\x07"):
        write("fuzz_capability", "rawlog-%02d-%d" % (k, policy[0]), policy + c)
for k, s in enumerate(sorted(sets)):
    write("fuzz_uidset", "rawlog-%02d" % k, s)
print("make-corpus.sh: %d lexer pieces, %d capability lists, %d UID seeds"
      % (count, len(caps), len(sets)))
EOF
du -sh "$corpus"
