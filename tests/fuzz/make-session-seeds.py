#!/usr/bin/env python3
"""Seeds for fuzz_session (tests/fuzz/corpus/fuzz_session/): whole sessions
as records [kind][length, 2 bytes LE][bytes], kind 0 client, 1 upstream,
2 the newest second connection, 3 client hangs up, 4 the newest upstream
connection hangs up.  The proxy's own tags are mappend.1, mappend.2 ... in
the order it sends its commands (the fuzzer resets the counter per input);
a second connection's are mappend.b1, mappend.b2 ...  Not run by CI: the
seeds are committed; run it again after changing what it writes."""
import os
import struct

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus", "fuzz_session")
CAPS = b"IMAP4rev1 UIDPLUS LITERAL+ IDLE NAMESPACE AUTH=PLAIN"


def rec(kind, data=b""):
    return struct.pack("<BH", kind, len(data)) + data


def c(data):
    return rec(0, data)


def u(data):
    return rec(1, data)


def b(data):
    return rec(2, data)


def greeting(caps=CAPS):
    return u(b"* OK [CAPABILITY " + caps + b"] ready\r\n")


def login(caps=CAPS):
    return c(b"a1 LOGIN test secret\r\n") + u(b"a1 OK [CAPABILITY " + caps + b"] in\r\n")


def multiappend(n, sync=False):
    out = c(b"A APPEND INBOX")
    for i in range(n):
        body = b"Subject: %d\r\n\r\nx1 CREATE injected\r\n" % i
        out += c(b" (\\Seen) {%d%s}\r\n" % (len(body), b"" if sync else b"+"))
        out += c(body)
    return out + c(b"\r\n")


seeds = {
    "noop": greeting() + login() + c(b"n NOOP\r\n") + u(b"n OK done\r\n"),
    "multiappend-ok": greeting() + login() + multiappend(3)
    + u(b"* STATUS INBOX (UIDNEXT 10 UIDVALIDITY 7)\r\nmappend.1 OK s\r\n")
    + u(b"mappend.2 OK [APPENDUID 7 10] a\r\nmappend.3 OK [APPENDUID 7 11] a\r\n"
        b"mappend.4 OK [APPENDUID 7 12] a\r\n") + c(b"n NOOP\r\n") + u(b"n OK\r\n"),
    "multiappend-no-rollback": greeting() + login() + multiappend(3)
    + u(b"* STATUS INBOX (UIDNEXT 10 UIDVALIDITY 7)\r\nmappend.1 OK s\r\n")
    + u(b"mappend.2 OK [APPENDUID 7 10] a\r\nmappend.3 NO [OVERQUOTA] full\r\n")
    + b(b"* OK hi\r\nmappend.b1 OK in\r\n")
    + b(b"* OK [UIDVALIDITY 7] x\r\nmappend.b2 OK [READ-WRITE] sel\r\n")
    + b(b"mappend.b3 OK stored\r\nmappend.b4 OK expunged\r\nmappend.b5 OK bye\r\n"),
    "multiappend-drop": greeting() + login() + multiappend(4, sync=True)
    + u(b"* STATUS INBOX (UIDNEXT 10 UIDVALIDITY 7)\r\nmappend.1 OK s\r\n")
    + u(b"mappend.2 OK [APPENDUID 7 10] a\r\n") + rec(4)
    + b(b"* OK hi\r\nmappend.b1 OK in\r\n")
    + b(b"* OK [UIDVALIDITY 7] x\r\nmappend.b2 OK sel\r\n")
    + b(b"* SEARCH 10 11\r\nmappend.b3 OK s\r\n")
    + b(b"* 2 FETCH (UID 11 RFC822.SIZE 36)\r\nmappend.b4 OK f\r\n"),
    "selected-rollback": greeting() + login() + c(b"s SELECT INBOX\r\n")
    + u(b"* 3 EXISTS\r\ns OK [READ-WRITE] sel\r\n") + multiappend(2)
    + u(b"* STATUS INBOX (UIDNEXT 4 UIDVALIDITY 1)\r\nmappend.1 OK s\r\n")
    + u(b"* 4 EXISTS\r\nmappend.2 OK [APPENDUID 1 4] a\r\nmappend.3 NO [TRYCREATE] x\r\n")
    + u(b"mappend.4 OK stored\r\n* 4 EXPUNGE\r\nmappend.5 OK expunged\r\n"),
    "staging": greeting(b"IMAP4rev1 LITERAL+ NAMESPACE") + login(b"IMAP4rev1 LITERAL+ NAMESPACE")
    + multiappend(2)
    + u(b"* STATUS INBOX (UIDNEXT 5 UIDVALIDITY 2)\r\nmappend.1 OK s\r\n")
    + u(b"* NAMESPACE ((\"INBOX.\" \".\")) NIL NIL\r\nmappend.2 OK n\r\n")
    + u(b"mappend.3 OK created\r\nmappend.4 OK a\r\nmappend.5 OK a\r\n")
    + b(b"* OK hi\r\nmappend.b1 OK in\r\nmappend.b2 OK sel\r\n")
    + b(b"* STATUS INBOX (UIDNEXT 5)\r\nmappend.b3 OK st\r\nmappend.b4 OK copied\r\n")
    + b(b"mappend.b5 OK closed\r\nmappend.b6 OK deleted\r\n"),
    "authenticate": greeting() + c(b"x AUTHENTICATE PLAIN\r\n") + u(b"+ \r\n")
    + c(b"AHRlc3QAc2VjcmV0\r\n") + u(b"x OK [CAPABILITY " + CAPS + b"] ok\r\n")
    + c(b"i IDLE\r\n") + u(b"+ idling\r\n* 5 EXISTS\r\n") + c(b"DONE\r\n")
    + u(b"i OK done\r\n"),
    "literals": greeting() + login() + c(b"l LOGIN {4}\r\n") + u(b"+ go\r\n")
    + c(b"user {3+}\r\npwd\r\n") + u(b"l NO no\r\n")
    + c(b"f FETCH 1 BODY[]\r\n") + u(b"* 1 FETCH (BODY[] {5}\r\nhello)\r\nf OK\r\n")
    + rec(3),
}

os.makedirs(OUT, exist_ok=True)
for name, data in seeds.items():
    with open(os.path.join(OUT, name), "wb") as f:
        f.write(data)
