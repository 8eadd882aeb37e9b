#!/usr/bin/env bash
# Generate throw-away certificates for mappend's TLS tests, with the openssl
# command line only.  Keys are EC P-256 (fast), certificates are valid for
# 30 days from now.  Nothing here is ever committed: the tests run this into
# a temporary directory.
#
#   tests/tls/gen-certs.sh DIR
#
# DIR is created if needed; existing files of the same names are replaced.
# Prints nothing on success; on failure the reason goes to stderr and the
# exit status is non-zero.
#
# Files (every *.key is an unencrypted PKCS#8 private key, mode 0600; every
# *.pem a certificate, mode 0644):
#   ca.pem, ca.key              "mappend test CA": the CA the tests trust
#   server.pem, server.key      leaf, CN=localhost, subjectAltName
#                               DNS:localhost, IP:127.0.0.1, EKU serverAuth,
#                               signed by ca; server.pem holds the leaf only
#   server-fullchain.pem        server.pem followed by ca.pem
#   server2.pem, server2.key    a second leaf like server (its own key and
#                               serial), for certificate reload tests
#   wrong.pem, wrong.key        leaf for DNS:wrong.example only (no localhost,
#                               no IP), signed by ca: fails host name checks
#   other-ca.pem, other-ca.key  "mappend untrusted test CA", trusted by nobody
#   untrusted.pem, untrusted.key  leaf like server, signed by other-ca: fails
#                               chain verification against ca.pem
# Serial numbers are random (openssl's default when no serial file exists).
set -euo pipefail

PROG=${0##*/}
readonly DAYS=30

die() { printf '%s: %s\n' "$PROG" "$*" >&2; exit 1; }

[[ $# -eq 1 && -n $1 ]] || { echo "usage: $PROG DIR" >&2; exit 2; }
command -v openssl >/dev/null || die "openssl not found (apt-get install openssl)"

DIR=$1
mkdir -p -- "$DIR" || die "cannot create $DIR"
TMP=$(mktemp -d "${TMPDIR:-/tmp}/gen-certs.XXXXXX") || die "mktemp failed"
trap 'rm -rf -- "$TMP"' EXIT

# openssl's output is shown only when a step fails
run() {
	if ! "$@" >"$TMP/out" 2>&1; then
		cat "$TMP/out" >&2
		die "failed: $*"
	fi
}

# Our own config: the system's openssl.cnf would add its own extensions
# (req -x509 takes v3_ca from it).
cat >"$TMP/openssl.cnf" <<'CNF'
[req]
distinguished_name = dn
prompt = no
[dn]
[ca]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
[localhost]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth
subjectAltName = DNS:localhost, IP:127.0.0.1
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
[wrong]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth
subjectAltName = DNS:wrong.example
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
CNF

# new_key NAME: DIR/NAME.key, readable by its owner only
new_key() {
	rm -f -- "$DIR/$1.key"
	(umask 077 && run openssl genpkey -algorithm EC \
		-pkeyopt ec_paramgen_curve:P-256 -out "$DIR/$1.key")
	chmod 0600 "$DIR/$1.key"
}

# new_ca NAME CN
new_ca() {
	new_key "$1"
	run openssl req -new -x509 -config "$TMP/openssl.cnf" -extensions ca \
		-key "$DIR/$1.key" -subj "/CN=$2" -days "$DAYS" -sha256 \
		-out "$DIR/$1.pem"
	chmod 0644 "$DIR/$1.pem"
}

# new_leaf NAME CN SECTION CA
new_leaf() {
	new_key "$1"
	run openssl req -new -config "$TMP/openssl.cnf" -key "$DIR/$1.key" \
		-subj "/CN=$2" -out "$TMP/$1.csr"
	run openssl x509 -req -in "$TMP/$1.csr" -CA "$DIR/$4.pem" \
		-CAkey "$DIR/$4.key" -CAserial "$TMP/$4.srl" -CAcreateserial \
		-extfile "$TMP/openssl.cnf" -extensions "$3" -days "$DAYS" \
		-sha256 -out "$DIR/$1.pem"
	chmod 0644 "$DIR/$1.pem"
}

new_ca ca "mappend test CA"
new_leaf server localhost localhost ca
new_leaf server2 localhost localhost ca
new_leaf wrong wrong.example wrong ca
new_ca other-ca "mappend untrusted test CA"
new_leaf untrusted localhost localhost other-ca
cat "$DIR/server.pem" "$DIR/ca.pem" >"$DIR/server-fullchain.pem"
chmod 0644 "$DIR/server-fullchain.pem"
