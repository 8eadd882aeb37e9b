/*
 * test_config.c — tests for proxy/config.c: every key good and bad, suffixes
 * and overflow, comments and quoting, and the exact "PATH:LINE: reason" text.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"

/* the two required keys; a test's own lines start at line 3 */
#define BASE "listen = 127.0.0.1:1143\nupstream = 127.0.0.1:143\n"

static char conf_path[64];

static void
write_conf(const char *text, size_t len)
{
	int fd;

	snprintf(conf_path, sizeof conf_path, "/tmp/mappend-conf-XXXXXX");
	fd = mkstemp(conf_path);
	cr_assert(fd >= 0, "mkstemp: %s", strerror(errno));
	cr_assert_eq(write(fd, text, len), (ssize_t)len);
	close(fd);
}

/* Loads len bytes of text as a config file; err receives the error, if any. */
static int
load_len(const char *text, size_t len, struct config *c, char *err, size_t errlen)
{
	int rc;

	write_conf(text, len);
	rc = config_load(conf_path, c, err, errlen);
	unlink(conf_path);
	return rc;
}

static int
load(const char *text, struct config *c, char *err, size_t errlen)
{
	return load_len(text, strlen(text), c, err, errlen);
}

static void
load_ok(const char *text, struct config *c)
{
	char err[1024] = "";

	cr_assert_eq(load(text, c, err, sizeof err), 0, "unexpected error: %s", err);
}

/* suffix is what follows the path: ":3: unknown key ..." or ": missing ..." */
static void
load_fails(const char *text, const char *suffix)
{
	struct config c;
	char err[1024] = "", want[1024];

	config_defaults(&c);
	cr_assert_eq(load(text, &c, err, sizeof err), -1, "loaded: %s", text);
	snprintf(want, sizeof want, "%s%s", conf_path, suffix);
	cr_assert_str_eq(err, want);
}

/* The error text for a bad value on line 3 of BASE + line. */
static void
bad_value(const char *line, const char *suffix)
{
	char text[8192];

	snprintf(text, sizeof text, BASE "%s\n", line);
	load_fails(text, suffix);
}

static void
good_value(const char *line, struct config *c)
{
	char text[8192];

	snprintf(text, sizeof text, BASE "%s\n", line);
	load_ok(text, c);
}

#define HINT_DURATION "expected a duration from 1 second to 7 days: " \
	"seconds, or a number with suffix s, m or h, e.g. 30m"
#define HINT_SIZE "expected a number of bytes from 1 to 2^64-1, " \
	"with optional suffix K, M or G (powers of 1024), e.g. 64M"
#define HINT_COUNT "expected a number from 1 to 1000000"

Test(config, defaults)
{
	struct config c;

	config_defaults(&c);
	cr_assert_eq(c.nlisten, 0);
	cr_assert_str_eq(c.upstream.host, "");
	cr_assert_eq(c.connect_timeout, 10);
	cr_assert_eq(c.client_idle_timeout, 1800);
	cr_assert_eq(c.upstream_idle_timeout, 1860);
	cr_assert_eq(c.log_level, LOG_LEVEL_INFO);
	cr_assert_eq(c.log_syslog, false);
	cr_assert_eq(c.max_line_length, 65536);
	cr_assert_eq(c.max_sessions, 1000);
	cr_assert_str_eq(c.spool_dir, "/var/spool/mappend");
	cr_assert_eq(c.max_message_size, 64ULL << 20);
	cr_assert_eq(c.max_messages, 1000);
	cr_assert_eq(c.max_session_spool, 1ULL << 30);
	cr_assert_eq(c.max_total_spool, 4ULL << 30);
	cr_assert_eq(c.splice, true);
}

Test(config, minimal_file_keeps_defaults)
{
	struct config c, d;

	load_ok(BASE, &c);
	cr_assert_eq(c.nlisten, 1);
	cr_assert_str_eq(c.listen[0].host, "127.0.0.1");
	cr_assert_str_eq(c.listen[0].port, "1143");
	cr_assert_str_eq(c.upstream.host, "127.0.0.1");
	cr_assert_str_eq(c.upstream.port, "143");
	config_defaults(&d);
	cr_assert_eq(c.connect_timeout, d.connect_timeout);
	cr_assert_eq(c.max_total_spool, d.max_total_spool);
	cr_assert_str_eq(c.spool_dir, d.spool_dir);
}

Test(config, every_key)
{
	struct config c;

	load_ok("listen = 127.0.0.1:1143\n"
	    "listen = [::1]:1143\n"
	    "listen = *:0\n"
	    "upstream = imap.example.com:993\n"
	    "connect_timeout = 5\n"
	    "client_idle_timeout = 31m\n"
	    "upstream_idle_timeout = 1h\n"
	    "log_level = debug\n"
	    "log = syslog\n"
	    "max_line_length = 8K\n"
	    "max_sessions = 50\n"
	    "max_sessions_per_address = 5\n"
	    "connection_rate_per_address = 0.5\n"
	    "connection_burst_per_address = 4\n"
	    "splice = no\n"
	    "spool_dir = /srv/spool\n"
	    "max_message_size = 10M\n"
	    "max_messages = 20\n"
	    "max_session_spool = 100M\n"
	    "max_total_spool = 2G\n", &c);
	cr_assert_eq(c.nlisten, 3);
	cr_assert_str_eq(c.listen[0].host, "127.0.0.1");
	cr_assert_str_eq(c.listen[1].host, "::1");
	cr_assert_str_eq(c.listen[1].port, "1143");
	cr_assert_str_eq(c.listen[2].host, "*");
	cr_assert_str_eq(c.listen[2].port, "0");
	cr_assert_str_eq(c.upstream.host, "imap.example.com");
	cr_assert_str_eq(c.upstream.port, "993");
	cr_assert_eq(c.connect_timeout, 5);
	cr_assert_eq(c.client_idle_timeout, 31 * 60);
	cr_assert_eq(c.upstream_idle_timeout, 3600);
	cr_assert_eq(c.log_level, LOG_LEVEL_DEBUG);
	cr_assert_eq(c.log_syslog, true);
	cr_assert_eq(c.max_line_length, 8192);
	cr_assert_eq(c.max_sessions, 50);
	cr_assert_eq(c.max_sessions_per_address, 5);
	cr_assert(c.connection_rate_per_address == 0.5);
	cr_assert_eq(c.connection_burst_per_address, 4);
	cr_assert_eq(c.splice, false);
	cr_assert_str_eq(c.spool_dir, "/srv/spool");
	cr_assert_eq(c.max_message_size, 10ULL << 20);
	cr_assert_eq(c.max_messages, 20);
	cr_assert_eq(c.max_session_spool, 100ULL << 20);
	cr_assert_eq(c.max_total_spool, 2ULL << 30);
}

Test(config, sample_file_loads)
{
	struct config c;
	char err[1024] = "";

	cr_assert_eq(config_load("etc/mappend.conf", &c, err, sizeof err), 0,
	    "etc/mappend.conf (run the tests from the repository root): %s", err);
	cr_assert_eq(c.nlisten, 1);
	cr_assert_str_eq(c.listen[0].host, "127.0.0.1");
	cr_assert_str_eq(c.listen[0].port, "1143");
	cr_assert_str_eq(c.upstream.host, "127.0.0.1");
	cr_assert_str_eq(c.upstream.port, "143");
	cr_assert_geq(c.client_idle_timeout, 1800);
	cr_assert_eq(c.max_sessions_per_address, 50);
}

/* --- the file as a whole --- */

Test(config, missing_file)
{
	struct config c;
	char err[256];

	cr_assert_eq(config_load("/nonexistent/mappend.conf", &c, err, sizeof err), -1);
	cr_assert_str_eq(err, "/nonexistent/mappend.conf: cannot open: "
	    "No such file or directory");
}

Test(config, directory_is_refused)
{
	struct config c;
	char err[256];

	cr_assert_eq(config_load("/tmp", &c, err, sizeof err), -1);
	cr_assert_str_eq(err, "/tmp: cannot read: Is a directory");
}

Test(config, missing_required_keys)
{
	load_fails("", ": missing required key \"listen\" "
	    "(add e.g. \"listen = 127.0.0.1:1143\")");
	load_fails("upstream = 127.0.0.1:143\n", ": missing required key \"listen\" "
	    "(add e.g. \"listen = 127.0.0.1:1143\")");
	load_fails("listen = 127.0.0.1:1143\n", ": missing required key \"upstream\" "
	    "(add e.g. \"upstream = 127.0.0.1:143\")");
}

Test(config, failed_load_leaves_config_untouched)
{
	struct config c;
	char err[256];

	load_ok(BASE "max_messages = 7\n", &c);
	cr_assert_eq(load(BASE "max_messages = 8\nbogus = 1\n", &c, err, sizeof err), -1);
	cr_assert_eq(c.max_messages, 7);
	cr_assert_eq(c.nlisten, 1);
}

Test(config, reload_starts_from_defaults)
{
	struct config c;

	load_ok(BASE "max_messages = 7\n", &c);
	load_ok(BASE, &c);
	cr_assert_eq(c.max_messages, 1000);
	cr_assert_eq(c.nlisten, 1);
}

Test(config, comments_blank_lines_and_whitespace)
{
	struct config c;

	load_ok("# a comment\n"
	    "\n"
	    "   \t\n"
	    "   # an indented comment\n"
	    "\tlisten\t=\t127.0.0.1:1143   # trailing comment\n"
	    "upstream=127.0.0.1:143\r\n"
	    "max_messages   =   12\n", &c);
	cr_assert_eq(c.nlisten, 1);
	cr_assert_str_eq(c.listen[0].port, "1143");
	cr_assert_str_eq(c.upstream.port, "143");
	cr_assert_eq(c.max_messages, 12);
}

Test(config, hash_without_space_is_part_of_value)
{
	bad_value("max_messages = 12#x",
	    ":3: bad value for max_messages: \"12#x\" (" HINT_COUNT ")");
}

Test(config, trailing_comment)
{
	struct config c;

	load_ok(BASE "max_messages = 12 # twelve\nspool_dir = /a#b\t# c\n", &c);
	cr_assert_eq(c.max_messages, 12);
	cr_assert_str_eq(c.spool_dir, "/a#b");
}

Test(config, crlf_line_endings)
{
	struct config c;

	load_ok("listen = 127.0.0.1:1143\r\nupstream = 127.0.0.1:143\r\n"
	    "spool_dir = /x\r\n", &c);
	cr_assert_str_eq(c.spool_dir, "/x");
}

Test(config, last_line_without_newline)
{
	struct config c;

	load_ok(BASE "max_messages = 3", &c);
	cr_assert_eq(c.max_messages, 3);
}

Test(config, quoted_values)
{
	struct config c;

	load_ok(BASE "spool_dir = \"/var/spool/with # hash and  spaces \"  # c\n"
	    "log_level = \"debug\"\n", &c);
	cr_assert_str_eq(c.spool_dir, "/var/spool/with # hash and  spaces ");
	cr_assert_eq(c.log_level, LOG_LEVEL_DEBUG);
}

Test(config, quoting_errors)
{
	bad_value("spool_dir = \"/x", ":3: missing closing '\"' in value for spool_dir");
	bad_value("spool_dir = \"/x\" y",
	    ":3: unexpected text after the quoted value for spool_dir: \"y\"");
	bad_value("spool_dir = \"\"",
	    ":3: bad value for spool_dir: \"\" (expected an absolute path, "
	    "starting with \"/\")");
}

Test(config, unknown_key)
{
	bad_value("listne = 127.0.0.1:1143", ":3: unknown key \"listne\"");
	bad_value("Listen = 127.0.0.1:1143", ":3: unknown key \"Listen\"");
	bad_value("max messages = 3", ":3: unknown key \"max messages\"");
}

Test(config, missing_equals)
{
	bad_value("listen 127.0.0.1:1143",
	    ":3: missing \"=\" in \"listen 127.0.0.1:1143\" (expected \"key = value\")");
	bad_value("= 5", ":3: missing key before \"=\" (expected \"key = value\")");
}

Test(config, missing_value)
{
	bad_value("max_messages =", ":3: missing value for max_messages");
	bad_value("max_messages =   # nothing", ":3: missing value for max_messages");
	bad_value("max_messages =# nothing", ":3: missing value for max_messages");
}

Test(config, duplicate_keys)
{
	bad_value("upstream = 10.0.0.1:143",
	    ":3: duplicate key \"upstream\" (already set on line 2)");
	load_fails(BASE "max_messages = 1\n\nmax_messages = 1\n",
	    ":5: duplicate key \"max_messages\" (already set on line 3)");
}

Test(config, too_many_listen)
{
	char text[4096] = BASE;
	struct config c;

	for (int i = 1; i < CONFIG_MAX_LISTEN; i++) {
		char line[64];
		snprintf(line, sizeof line, "listen = 127.0.0.1:%d\n", 2000 + i);
		strcat(text, line);
	}
	load_ok(text, &c);
	cr_assert_eq(c.nlisten, CONFIG_MAX_LISTEN);
	cr_assert_str_eq(c.listen[CONFIG_MAX_LISTEN - 1].port, "2015");
	strcat(text, "listen = 127.0.0.1:3000\n");
	load_fails(text, ":18: too many \"listen\" lines: at most 16");
}

Test(config, long_lines)
{
	static char text[8192];
	struct config c;
	size_t n;

	/* exactly 4096 bytes is allowed */
	n = (size_t)snprintf(text, sizeof text, BASE "spool_dir = /");
	memset(text + n, 'a', 4096 - strlen("spool_dir = /"));
	text[n + 4096 - strlen("spool_dir = /")] = '\0';
	strcat(text, "\n");
	load_ok(text, &c);
	cr_assert_eq(strlen(c.spool_dir), 4096 - strlen("spool_dir = "));

	/* one more is not */
	text[strlen(text) - 1] = 'a';
	strcat(text, "\n");
	load_fails(text, ":3: line too long: at most 4096 bytes");
}

Test(config, control_characters)
{
	bad_value("spool_dir = /a\033b",
	    ":3: control character 0x1b in line; only printable text and tabs are allowed");
	static const char nul[] = BASE "max_messages = 1\0" "0\n";
	struct config c;
	char err[512], want[512];

	cr_assert_eq(load_len(nul, sizeof nul - 1, &c, err, sizeof err), -1);
	snprintf(want, sizeof want, "%s:3: control character 0x00 in line; "
	    "only printable text and tabs are allowed", conf_path);
	cr_assert_str_eq(err, want);
}

Test(config, error_without_buffer)
{
	struct config c;

	cr_assert_eq(load("nonsense\n", &c, NULL, 0), -1);
}

Test(config, short_error_buffer_is_terminated)
{
	struct config c;
	char err[8];

	memset(err, 'z', sizeof err);
	cr_assert_eq(load("nonsense\n", &c, err, sizeof err), -1);
	cr_assert_eq(strlen(err), sizeof err - 1);
}

/* --- listen and upstream --- */

Test(config, listen_good)
{
	struct config c;

	good_value("listen = [::]:143", &c);
	cr_assert_str_eq(c.listen[1].host, "::");
	cr_assert_str_eq(c.listen[1].port, "143");
	good_value("listen = [fe80::1%eth0]:65535", &c);
	cr_assert_str_eq(c.listen[1].host, "fe80::1%eth0");
	cr_assert_str_eq(c.listen[1].port, "65535");
	good_value("listen = localhost:00143", &c);
	cr_assert_str_eq(c.listen[1].host, "localhost");
	cr_assert_str_eq(c.listen[1].port, "143");
	good_value("listen = \"*:0\"", &c);
	cr_assert_str_eq(c.listen[1].host, "*");
	cr_assert_str_eq(c.listen[1].port, "0");
}

#define LISTEN_USAGE "expected HOST:PORT, e.g. 127.0.0.1:1143, [::1]:1143 or *:1143"

Test(config, listen_bad)
{
	bad_value("listen = 1143", ":3: bad value for listen: \"1143\" (" LISTEN_USAGE ")");
	bad_value("listen = :1143", ":3: bad value for listen: \":1143\" (" LISTEN_USAGE ")");
	bad_value("listen = [::1]", ":3: bad value for listen: \"[::1]\" (" LISTEN_USAGE ")");
	bad_value("listen = [::1:143", ":3: bad value for listen: \"[::1:143\" (" LISTEN_USAGE ")");
	bad_value("listen = []:143", ":3: bad value for listen: \"[]:143\" (" LISTEN_USAGE ")");
	bad_value("listen = ::1:143", ":3: bad value for listen: \"::1:143\" "
	    "(an IPv6 address needs brackets, e.g. [::1]:143)");
	bad_value("listen = [localhost]:143", ":3: bad value for listen: "
	    "\"[localhost]:143\" (not an IPv6 address between the brackets)");
	bad_value("listen = 127.0.0.1:65536", ":3: bad value for listen: "
	    "\"127.0.0.1:65536\" (the port must be a number from 0 to 65535)");
	bad_value("listen = 127.0.0.1:", ":3: bad value for listen: "
	    "\"127.0.0.1:\" (the port must be a number from 0 to 65535)");
	bad_value("listen = 127.0.0.1:imap", ":3: bad value for listen: "
	    "\"127.0.0.1:imap\" (the port must be a number from 0 to 65535)");
	bad_value("listen = 127.0.0.1:-1", ":3: bad value for listen: "
	    "\"127.0.0.1:-1\" (the port must be a number from 0 to 65535)");
	bad_value("listen = 127.0.0.1:99999999999999999999999", ":3: bad value for listen: "
	    "\"127.0.0.1:99999999999999999999999\" (the port must be a number from 0 to 65535)");
	bad_value("listen = bad/host:143", ":3: bad value for listen: \"bad/host:143\" "
	    "(the host may hold only letters, digits, '.', '-' and '_')");
}

Test(config, listen_host_too_long)
{
	struct config c;
	char host[300], line[512], want[1024];

	memset(host, 'h', 256);
	host[256] = '\0';
	snprintf(line, sizeof line, "listen = %s:143", host);
	snprintf(want, sizeof want, ":3: bad value for listen: \"%s:143\" "
	    "(host name too long: at most 255 characters)", host);
	bad_value(line, want);
	host[255] = '\0';
	snprintf(line, sizeof line, "listen = %s:143", host);
	good_value(line, &c);
	cr_assert_eq(strlen(c.listen[1].host), 255);
}

Test(config, upstream_good)
{
	struct config c;

	load_ok("listen = *:1143\nupstream = [2001:db8::5]:993\n", &c);
	cr_assert_str_eq(c.upstream.host, "2001:db8::5");
	cr_assert_str_eq(c.upstream.port, "993");
	load_ok("listen = *:1143\nupstream = mail-1.example_host.org:65535\n", &c);
	cr_assert_str_eq(c.upstream.host, "mail-1.example_host.org");
	cr_assert_str_eq(c.upstream.port, "65535");
}

Test(config, upstream_bad)
{
	load_fails("listen = *:1143\nupstream = 127.0.0.1:0\n",
	    ":2: bad value for upstream: \"127.0.0.1:0\" "
	    "(the port must be a number from 1 to 65535)");
	load_fails("listen = *:1143\nupstream = *:143\n",
	    ":2: bad value for upstream: \"*:143\" (\"*\" (all addresses) only makes "
	    "sense for listen; expected the upstream server's host name or address)");
	load_fails("listen = *:1143\nupstream = imap.example.com\n",
	    ":2: bad value for upstream: \"imap.example.com\" (expected HOST:PORT, "
	    "e.g. 127.0.0.1:143, [::1]:143 or imap.example.com:143)");
}

/* --- durations --- */

Test(config, parse_duration)
{
	unsigned d;

	cr_assert_eq(config_parse_duration("0", &d), 0);
	cr_assert_eq(d, 0);
	cr_assert_eq(config_parse_duration("45", &d), 0);
	cr_assert_eq(d, 45);
	cr_assert_eq(config_parse_duration("45s", &d), 0);
	cr_assert_eq(d, 45);
	cr_assert_eq(config_parse_duration("30m", &d), 0);
	cr_assert_eq(d, 1800);
	cr_assert_eq(config_parse_duration("2H", &d), 0);
	cr_assert_eq(d, 7200);
	cr_assert_eq(config_parse_duration("", &d), -1);
	cr_assert_eq(config_parse_duration("m", &d), -1);
	cr_assert_eq(config_parse_duration("5 m", &d), -1);
	cr_assert_eq(config_parse_duration("5ms", &d), -1);
	cr_assert_eq(config_parse_duration("5d", &d), -1);
	cr_assert_eq(config_parse_duration("-5", &d), -1);
	cr_assert_eq(config_parse_duration("+5", &d), -1);
	cr_assert_eq(config_parse_duration(" 5", &d), -1);
	cr_assert_eq(config_parse_duration("1.5h", &d), -1);
	cr_assert_eq(config_parse_duration("4294967296", &d), -1);
	cr_assert_eq(config_parse_duration("1193047h", &d), -1);
	cr_assert_eq(config_parse_duration("99999999999999999999999", &d), -1);
	cr_assert_eq(config_parse_duration(NULL, &d), -1);
}

Test(config, duration_keys)
{
	static const char *const keys[] = {
		"connect_timeout", "client_idle_timeout", "upstream_idle_timeout",
	};
	struct config c;
	char line[128], want[512];

	for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
		snprintf(line, sizeof line, "%s = 1", keys[i]);
		good_value(line, &c);
		snprintf(line, sizeof line, "%s = 168h", keys[i]);
		good_value(line, &c);
		snprintf(line, sizeof line, "%s = 604800s", keys[i]);
		good_value(line, &c);

		static const char *const bad[] = { "0", "0m", "604801", "169h",
		    "10080m1", "ten", "-1", "5 s", "99999999999999999999h" };
		for (size_t j = 0; j < sizeof bad / sizeof bad[0]; j++) {
			snprintf(line, sizeof line, "%s = %s", keys[i], bad[j]);
			snprintf(want, sizeof want, ":3: bad value for %s: \"%s\" ("
			    HINT_DURATION ")", keys[i], bad[j]);
			bad_value(line, want);
		}
	}
	good_value("connect_timeout = 90s", &c);
	cr_assert_eq(c.connect_timeout, 90);
	good_value("client_idle_timeout = 168h", &c);
	cr_assert_eq(c.client_idle_timeout, 604800);
	good_value("upstream_idle_timeout = 10080m", &c);
	cr_assert_eq(c.upstream_idle_timeout, 604800);
}

/* --- sizes --- */

Test(config, parse_size)
{
	uint64_t n;

	cr_assert_eq(config_parse_size("0", &n), 0);
	cr_assert_eq(n, 0);
	cr_assert_eq(config_parse_size("1", &n), 0);
	cr_assert_eq(n, 1);
	cr_assert_eq(config_parse_size("2k", &n), 0);
	cr_assert_eq(n, 2048);
	cr_assert_eq(config_parse_size("2K", &n), 0);
	cr_assert_eq(n, 2048);
	cr_assert_eq(config_parse_size("3M", &n), 0);
	cr_assert_eq(n, 3ULL << 20);
	cr_assert_eq(config_parse_size("5G", &n), 0);
	cr_assert_eq(n, 5ULL << 30);
	cr_assert_eq(config_parse_size("18446744073709551615", &n), 0);
	cr_assert_eq(n, UINT64_MAX);
	cr_assert_eq(config_parse_size("17179869183G", &n), 0);
	cr_assert_eq(n, 17179869183ULL << 30);
	cr_assert_eq(config_parse_size("17179869184G", &n), -1);
	cr_assert_eq(config_parse_size("18446744073709551616", &n), -1);
	cr_assert_eq(config_parse_size("99999999999999999999G", &n), -1);
	cr_assert_eq(config_parse_size("", &n), -1);
	cr_assert_eq(config_parse_size("K", &n), -1);
	cr_assert_eq(config_parse_size("1KB", &n), -1);
	cr_assert_eq(config_parse_size("1T", &n), -1);
	cr_assert_eq(config_parse_size("1 K", &n), -1);
	cr_assert_eq(config_parse_size("-1", &n), -1);
	cr_assert_eq(config_parse_size("0x10", &n), -1);
	cr_assert_eq(config_parse_size("1.5G", &n), -1);
	cr_assert_eq(config_parse_size(NULL, &n), -1);
}

Test(config, size_keys)
{
	struct config c;

	good_value("max_message_size = 1", &c);
	cr_assert_eq(c.max_message_size, 1);
	good_value("max_message_size = 1G", &c);
	cr_assert_eq(c.max_message_size, 1ULL << 30);
	good_value("max_session_spool = 64M", &c);
	cr_assert_eq(c.max_session_spool, 64ULL << 20);
	good_value("max_total_spool = 18446744073709551615", &c);
	cr_assert_eq(c.max_total_spool, UINT64_MAX);

	bad_value("max_message_size = 99999999999999999999G",
	    ":3: bad value for max_message_size: \"99999999999999999999G\" (" HINT_SIZE ")");
	bad_value("max_message_size = 0", ":3: bad value for max_message_size: \"0\" ("
	    HINT_SIZE ")");
	bad_value("max_session_spool = 1T", ":3: bad value for max_session_spool: \"1T\" ("
	    HINT_SIZE ")");
	bad_value("max_total_spool = 16E", ":3: bad value for max_total_spool: \"16E\" ("
	    HINT_SIZE ")");
	bad_value("max_total_spool = lots", ":3: bad value for max_total_spool: \"lots\" ("
	    HINT_SIZE ")");
}

Test(config, spool_sizes_must_nest)
{
	struct config c;

	good_value("max_message_size = 1G\nmax_session_spool = 1G\nmax_total_spool = 1G", &c);
	bad_value("max_message_size = 2G",
	    ": max_message_size (2147483648 bytes) is larger than max_session_spool "
	    "(1073741824 bytes); lower max_message_size or raise max_session_spool");
	bad_value("max_session_spool = 5G",
	    ": max_session_spool (5368709120 bytes) is larger than max_total_spool "
	    "(4294967296 bytes); lower max_session_spool or raise max_total_spool");
	bad_value("max_total_spool = 100M",
	    ": max_session_spool (1073741824 bytes) is larger than max_total_spool "
	    "(104857600 bytes); lower max_session_spool or raise max_total_spool");
}

Test(config, max_line_length)
{
	struct config c;
	const char *hint = " (expected a number of bytes from 1024 to 16M, "
	    "with optional suffix K or M, e.g. 64K)";
	char want[512];

	good_value("max_line_length = 1024", &c);
	cr_assert_eq(c.max_line_length, 1024);
	good_value("max_line_length = 1K", &c);
	cr_assert_eq(c.max_line_length, 1024);
	good_value("max_line_length = 16M", &c);
	cr_assert_eq(c.max_line_length, 16u << 20);
	good_value("max_line_length = 16777216", &c);
	cr_assert_eq(c.max_line_length, 16u << 20);

	static const char *const bad[] = { "1023", "0", "16777217", "1G", "big", "" };
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		char line[128];
		snprintf(line, sizeof line, "max_line_length = \"%s\"", bad[i]);
		snprintf(want, sizeof want, ":3: bad value for max_line_length: \"%s\"%s",
		    bad[i], hint);
		bad_value(line, want);
	}
}

/* --- counts --- */

Test(config, count_keys)
{
	static const char *const keys[] = { "max_sessions", "max_messages" };
	static const char *const bad[] = { "0", "1000001", "-1", "+1", "1K", "ten",
	    "1 000", "99999999999999999999999" };
	struct config c;
	char line[128], want[512];

	good_value("max_sessions = 1", &c);
	cr_assert_eq(c.max_sessions, 1);
	good_value("max_sessions = 1000000", &c);
	cr_assert_eq(c.max_sessions, 1000000);
	good_value("max_messages = 1", &c);
	cr_assert_eq(c.max_messages, 1);
	good_value("max_messages = 1000000", &c);
	cr_assert_eq(c.max_messages, 1000000);

	for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
		for (size_t j = 0; j < sizeof bad / sizeof bad[0]; j++) {
			snprintf(line, sizeof line, "%s = %s", keys[i], bad[j]);
			snprintf(want, sizeof want, ":3: bad value for %s: \"%s\" ("
			    HINT_COUNT ")", keys[i], bad[j]);
			bad_value(line, want);
		}
	}
}

/* --- limits per client address --- */

#define HINT_PER_ADDRESS "expected a number from 0 (no limit) to 1000000"
#define HINT_RATE "expected connections a second: 0 (no limit), or from " \
	"0.001 to 1000000 with at most 3 decimals, e.g. 0.5 or 10"

Test(config, per_address_defaults)
{
	struct config c;

	load_ok(BASE, &c);
	cr_assert_eq(c.max_sessions_per_address, 0);
	cr_assert(c.connection_rate_per_address == 0);
	cr_assert_eq(c.connection_burst_per_address, 10);
}

Test(config, max_sessions_per_address)
{
	static const char *const bad[] = { "-1", "+1", "1K", "ten", "1 000",
	    "1000001", "99999999999999999999999", "1.5" };
	struct config c;
	char line[128], want[512];

	good_value("max_sessions_per_address = 0", &c);
	cr_assert_eq(c.max_sessions_per_address, 0);
	good_value("max_sessions_per_address = 20", &c);
	cr_assert_eq(c.max_sessions_per_address, 20);
	good_value("max_sessions_per_address = 1000", &c);
	cr_assert_eq(c.max_sessions_per_address, 1000);
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		snprintf(line, sizeof line, "max_sessions_per_address = %s", bad[i]);
		snprintf(want, sizeof want, ":3: bad value for max_sessions_per_address: "
		    "\"%s\" (" HINT_PER_ADDRESS ")", bad[i]);
		bad_value(line, want);
	}
}

Test(config, max_sessions_per_address_within_max_sessions)
{
	struct config c;

	load_ok(BASE "max_sessions = 50\nmax_sessions_per_address = 50\n", &c);
	cr_assert_eq(c.max_sessions_per_address, 50);
	load_fails(BASE "max_sessions = 50\nmax_sessions_per_address = 51\n",
	    ": max_sessions_per_address (51) is larger than max_sessions (50): it "
	    "would never refuse anything; lower max_sessions_per_address or raise "
	    "max_sessions");
	/* against the default max_sessions too */
	load_fails(BASE "max_sessions_per_address = 1001\n",
	    ": max_sessions_per_address (1001) is larger than max_sessions (1000): "
	    "it would never refuse anything; lower max_sessions_per_address or "
	    "raise max_sessions");
}

Test(config, connection_rate_per_address)
{
	static const struct { const char *text; double value; } good[] = {
		{ "0", 0 }, { "0.0", 0 }, { "0.000", 0 }, { "10", 10 }, { "0.5", 0.5 },
		{ "0.25", 0.25 }, { "0.001", 0.001 }, { "2.125", 2.125 },
		{ "000.5", 0.5 }, { "1000000", 1000000 }, { "1000000.000", 1000000 },
	};
	static const char *const bad[] = { "-1", "+1", ".5", "5.", "0.0001",
	    "1e3", "1,5", "1000000.001", "1000001", "fast", "0x10", "1 0", "inf",
	    "nan" };
	struct config c;
	char line[128], want[512];

	for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
		snprintf(line, sizeof line, "connection_rate_per_address = %s",
		    good[i].text);
		good_value(line, &c);
		cr_assert(c.connection_rate_per_address == good[i].value,
		    "%s read as %.17g", good[i].text, c.connection_rate_per_address);
	}
	/* the same text, the same bits: 0.1 is 1/10 as strtod reads it */
	good_value("connection_rate_per_address = 0.1", &c);
	cr_assert(c.connection_rate_per_address == 0.1);
	good_value("connection_rate_per_address = 0.3", &c);
	cr_assert(c.connection_rate_per_address == 0.3);
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		snprintf(line, sizeof line, "connection_rate_per_address = %s", bad[i]);
		snprintf(want, sizeof want, ":3: bad value for "
		    "connection_rate_per_address: \"%s\" (" HINT_RATE ")", bad[i]);
		bad_value(line, want);
	}
}

Test(config, connection_burst_per_address)
{
	static const char *const bad[] = { "0", "-1", "1.5", "1000001", "many" };
	struct config c;
	char line[128], want[512];

	good_value("connection_burst_per_address = 1", &c);
	cr_assert_eq(c.connection_burst_per_address, 1);
	good_value("connection_rate_per_address = 0.5\n"
	    "connection_burst_per_address = 3", &c);
	cr_assert(c.connection_rate_per_address == 0.5);
	cr_assert_eq(c.connection_burst_per_address, 3);
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		snprintf(line, sizeof line, "connection_burst_per_address = %s", bad[i]);
		snprintf(want, sizeof want, ":3: bad value for "
		    "connection_burst_per_address: \"%s\" (" HINT_COUNT ")", bad[i]);
		bad_value(line, want);
	}
}

Test(config, bad_max_messages_example)
{
	bad_value("max_messages = abc",
	    ":3: bad value for max_messages: \"abc\" (expected a number from 1 to 1000000)");
}

/* --- logging and spool_dir --- */

Test(config, log_keys)
{
	struct config c;

	good_value("log_level = error", &c);
	cr_assert_eq(c.log_level, LOG_LEVEL_ERROR);
	good_value("log_level = warning", &c);
	cr_assert_eq(c.log_level, LOG_LEVEL_WARNING);
	good_value("log_level = info", &c);
	cr_assert_eq(c.log_level, LOG_LEVEL_INFO);
	good_value("log = stderr", &c);
	cr_assert_eq(c.log_syslog, false);
	good_value("log = syslog", &c);
	cr_assert_eq(c.log_syslog, true);

	bad_value("log_level = verbose", ":3: bad value for log_level: \"verbose\" "
	    "(expected error, warning, info or debug)");
	bad_value("log_level = DEBUG", ":3: bad value for log_level: \"DEBUG\" "
	    "(expected error, warning, info or debug)");
	bad_value("log = file", ":3: bad value for log: \"file\" "
	    "(expected stderr or syslog)");
}

Test(config, splice)
{
	struct config c;

	good_value("splice = yes", &c);
	cr_assert_eq(c.splice, true);
	good_value("splice = no", &c);
	cr_assert_eq(c.splice, false);
	bad_value("splice = off", ":3: bad value for splice: \"off\" "
	    "(expected yes or no)");
	bad_value("splice = No", ":3: bad value for splice: \"No\" "
	    "(expected yes or no)");
}

Test(config, spool_dir)
{
	struct config c;

	good_value("spool_dir = /", &c);
	cr_assert_str_eq(c.spool_dir, "/");
	good_value("spool_dir = /var/lib/mappend spool", &c);
	cr_assert_str_eq(c.spool_dir, "/var/lib/mappend spool");
	bad_value("spool_dir = var/spool", ":3: bad value for spool_dir: \"var/spool\" "
	    "(expected an absolute path, starting with \"/\")");
	bad_value("spool_dir = ~/spool", ":3: bad value for spool_dir: \"~/spool\" "
	    "(expected an absolute path, starting with \"/\")");
}

/* --- start-up and privileges --- */

Test(config, startup_keys)
{
	struct config c;

	config_defaults(&c);
	cr_assert_str_eq(c.user, "");
	cr_assert_str_eq(c.group, "");
	cr_assert_str_eq(c.pid_file, "");
	load_ok(BASE "user = mappend\ngroup = ssl-cert\npid_file = /run/mappend/mappend.pid\n",
	    &c);
	cr_assert_str_eq(c.user, "mappend");
	cr_assert_str_eq(c.group, "ssl-cert");
	cr_assert_str_eq(c.pid_file, "/run/mappend/mappend.pid");
	good_value("user = Debian-exim", &c);
	cr_assert_str_eq(c.user, "Debian-exim");
	good_value("user = host$", &c);
	cr_assert_str_eq(c.group, "");
}

Test(config, startup_keys_bad)
{
	bad_value("user = -root", ":3: bad value for user: \"-root\" (a user or "
	    "group name may not start with '-' or '.')");
	bad_value("user = \"map pend\"", ":3: bad value for user: \"map pend\" "
	    "(expected a user or group name: letters, digits, '.', '-' and '_')");
	bad_value("group = a$b", ":3: bad value for group: \"a$b\" "
	    "(expected a user or group name: letters, digits, '.', '-' and '_')");
	bad_value("user = aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
	    ":3: bad value for user: \"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\" "
	    "(name too long: at most 63 characters)");
	bad_value("pid_file = mappend.pid", ":3: bad value for pid_file: "
	    "\"mappend.pid\" (expected an absolute path, starting with \"/\")");
	bad_value("pid_file = /run/", ":3: bad value for pid_file: \"/run/\" "
	    "(expected a file name, not a directory)");
	/* found by fuzz_config: an empty quoted value was read at [-1] */
	bad_value("pid_file = \"\"", ":3: bad value for pid_file: \"\" "
	    "(expected an absolute path, starting with \"/\")");
	load_fails(BASE "group = mappend\n", ": group = mappend needs user: mappend "
	    "switches to a group only together with a user");
}

Test(config, listen_twice_names_both_lines)
{
	load_fails(BASE "# another\nlisten = 127.0.0.1:1143\n",
	    ":4: listen 127.0.0.1:1143 is already on line 1: remove one of them");
	/* the tls flag does not make a second socket possible */
	load_fails("upstream = 127.0.0.1:143\nlisten = [::1]:993 tls\n"
	    "listen = [0:0::1]:993\ntls_cert = /c.pem\ntls_key = /k.pem\n",
	    ":3: listen [0:0::1]:993 is already on line 2 (as [::1]:993): remove "
	    "one of them");
	load_fails(BASE "listen = LOCALHOST:25\nlisten = localhost:25\n",
	    ":4: listen localhost:25 is already on line 3 (as LOCALHOST:25): remove "
	    "one of them");
}

Test(config, listen_wildcards_overlap)
{
	load_fails(BASE "listen = 0.0.0.0:1143\n", ":3: listen 0.0.0.0:1143 "
	    "overlaps listen 127.0.0.1:1143 on line 1 (a wildcard address takes "
	    "the port on every address of its family): keep one of them");
	load_fails(BASE "listen = *:1143\n", ":3: listen *:1143 overlaps listen "
	    "127.0.0.1:1143 on line 1 (a wildcard address takes the port on every "
	    "address of its family): keep one of them");
	load_fails("upstream = 127.0.0.1:143\nlisten = [::]:143\nlisten = [::1]:143\n",
	    ":3: listen [::1]:143 overlaps listen [::]:143 on line 2 (a wildcard "
	    "address takes the port on every address of its family): keep one of them");
}

Test(config, listen_combinations_that_bind)
{
	struct config c;

	/* the kernel chooses each port 0 anew (the tests do this) */
	load_ok(BASE "listen = 127.0.0.1:0\nlisten = 127.0.0.1:0 tls\n"
	    "tls_cert = /c.pem\ntls_key = /k.pem\n", &c);
	/* v6-only sockets: one wildcard of each family */
	load_ok("upstream = 127.0.0.1:143\nlisten = 0.0.0.0:143\nlisten = [::]:143\n", &c);
	load_ok(BASE "listen = 127.0.0.2:1143\nlisten = 127.0.0.1:1144\n"
	    "listen = [::1]:1143\nlisten = localhost:1143\n", &c);
	cr_assert_eq(c.nlisten, 5);
	cr_assert_eq(c.listen[0].line, 1);
	cr_assert_eq(c.listen[4].line, 6);
}

Test(config, proxy_protocol_listeners)
{
	struct config c;

	load_ok("upstream = 127.0.0.1:143\n"
	    "listen = 0.0.0.0:143 proxy_protocol\n"
	    "listen = 0.0.0.0:993 tls proxy_protocol\n"
	    "listen = [::]:993 proxy_protocol\ttls\n"
	    "listen = 127.0.0.1:1143\n"
	    "proxy_protocol_from = 10.0.0.0/8, ::1/128\n"
	    "proxy_protocol_from = 192.0.2.7\n"
	    "tls_cert = /c.pem\ntls_key = /k.pem\n", &c);
	cr_assert_eq(c.nlisten, 4);
	cr_assert(c.listen[0].proxy_protocol && !c.listen[0].tls);
	cr_assert(c.listen[1].proxy_protocol && c.listen[1].tls);
	cr_assert(c.listen[2].proxy_protocol && c.listen[2].tls);
	cr_assert(!c.listen[3].proxy_protocol && !c.listen[3].tls);
	cr_assert_str_eq(c.listen[1].port, "993");
	/* the lines add up */
	cr_assert_eq(c.proxy_protocol_from.n, 3);
	cr_assert_eq(c.proxy_protocol_from.net[2].family, AF_INET);
	cr_assert_eq(c.proxy_protocol_from.net[2].prefix, 32);

	config_defaults(&c);
	cr_assert_eq(c.proxy_protocol_from.n, 0);
	cr_assert_eq(c.proxy_protocol_timeout, 5);
	good_value("proxy_protocol_timeout = 3s", &c);
	cr_assert_eq(c.proxy_protocol_timeout, 3);
	bad_value("proxy_protocol_timeout = 0", ":3: bad value for "
	    "proxy_protocol_timeout: \"0\" (" HINT_DURATION ")");
}

Test(config, rollback_settle)
{
	struct config c;

	config_defaults(&c);
	cr_assert_eq(c.rollback_settle, 5);
	good_value("rollback_settle = 2m", &c);
	cr_assert_eq(c.rollback_settle, 120);
	bad_value("rollback_settle = 0", ":3: bad value for "
	    "rollback_settle: \"0\" (" HINT_DURATION ")");
}

Test(config, proxy_protocol_refused)
{
	load_fails(BASE "listen = 127.0.0.1:1144 proxy_protocol\n",
	    ":3: listen 127.0.0.1:1144 has proxy_protocol but proxy_protocol_from "
	    "is not set: from whom? A PROXY header names any client address its "
	    "sender likes; add proxy_protocol_from = the load balancers' "
	    "networks, e.g. 10.0.0.0/8");
	load_fails(BASE "\nproxy_protocol_from = 10.0.0.0/8\n",
	    ":4: proxy_protocol_from is set but no listen line has proxy_protocol: "
	    "add \"proxy_protocol\" to the listen lines the load balancer connects "
	    "to, or remove proxy_protocol_from");
	bad_value("proxy_protocol_from = 10.0.0.1/8", ":3: bad value for "
	    "proxy_protocol_from: \"10.0.0.1/8\" (\"10.0.0.1/8\": bits set after "
	    "the prefix length (did you mean 10.0.0.0/8?))");
	bad_value("proxy_protocol_from = 10.0.0.0/8, lb.example.org",
	    ":3: bad value for proxy_protocol_from: \"10.0.0.0/8, lb.example.org\" "
	    "(\"lb.example.org\": expected an IPv4 or IPv6 address (no brackets, "
	    "no host names), optionally with /PREFIX)");
	bad_value("listen = 127.0.0.1:1144 proxy-protocol", ":3: bad value for "
	    "listen: \"127.0.0.1:1144 proxy-protocol\" (expected HOST:PORT, "
	    "optionally followed by \"tls\" for implicit TLS and "
	    "\"proxy_protocol\" for a PROXY protocol header (e.g. \"0.0.0.0:993 "
	    "tls\"))");
	bad_value("listen = 127.0.0.1:1144 proxy_protocol proxy_protocol",
	    ":3: bad value for listen: \"127.0.0.1:1144 proxy_protocol "
	    "proxy_protocol\" (expected HOST:PORT, optionally followed by \"tls\" "
	    "for implicit TLS and \"proxy_protocol\" for a PROXY protocol header "
	    "(e.g. \"0.0.0.0:993 tls\"))");
	bad_value("listen = 127.0.0.1:1144 tls tls", ":3: bad value for listen: "
	    "\"127.0.0.1:1144 tls tls\" (expected HOST:PORT, optionally followed "
	    "by \"tls\" for implicit TLS and \"proxy_protocol\" for a PROXY "
	    "protocol header (e.g. \"0.0.0.0:993 tls\"))");
}

Test(config, metrics_listen)
{
	struct config c;

	load_ok(BASE, &c);
	cr_assert_str_eq(c.metrics_host, "");
	good_value("metrics_listen = 127.0.0.1:9143", &c);
	cr_assert_str_eq(c.metrics_host, "127.0.0.1");
	cr_assert_str_eq(c.metrics_port, "9143");
	good_value("metrics_listen = [::1]:0", &c);
	cr_assert_str_eq(c.metrics_host, "::1");
	cr_assert_str_eq(c.metrics_port, "0");
	good_value("metrics_listen = *:9143", &c);
	cr_assert_str_eq(c.metrics_host, "*");
	bad_value("metrics_listen = 9143", ":3: bad value for metrics_listen: "
	    "\"9143\" (expected HOST:PORT, e.g. 127.0.0.1:1143, [::1]:1143 or "
	    "*:1143)");
	bad_value("metrics_listen = 127.0.0.1:9143\nmetrics_listen = [::1]:9143",
	    ":4: duplicate key \"metrics_listen\" (already set on line 3)");
	/* not on a port a listen line needs */
	load_fails(BASE "metrics_listen = 127.0.0.1:1143\n", ":3: metrics_listen "
	    "127.0.0.1:1143 takes the address of listen 127.0.0.1:1143 on line 1: "
	    "choose another port");
	load_fails(BASE "metrics_listen = *:1143\n", ":3: metrics_listen *:1143 "
	    "takes the address of listen 127.0.0.1:1143 on line 1: choose another "
	    "port");
	load_ok(BASE "metrics_listen = 127.0.0.1:0\nlisten = 127.0.0.1:0\n", &c);
}

/* ---- configurations in use: counted; what a reload changes ---- */

static int attached_freed;

static void
count_free(void *p)
{
	cr_assert_eq(p, &attached_freed);
	attached_freed++;
}

Test(config, counted_and_attached_freed_with_the_last_reference)
{
	struct config *c = config_new();

	cr_assert_not_null(c);
	cr_assert_eq(c->max_sessions, 1000, "defaults");
	load_ok(BASE "max_sessions = 3\n", c);
	cr_assert_eq(c->max_sessions, 3);
	config_attach(c, &attached_freed, count_free);
	cr_assert_eq(config_attached(c), &attached_freed);
	cr_assert_eq(config_ref(c), c);
	config_unref(c);
	cr_assert_eq(attached_freed, 0, "freed with a reference left");
	cr_assert_eq(c->max_sessions, 3);
	config_unref(c);
	cr_assert_eq(attached_freed, 1);
	config_unref(NULL);
}

static size_t
changed(const char *a_text, const char *b_text, char *out, size_t outlen)
{
	struct config a, b;

	load_ok(a_text, &a);
	load_ok(b_text, &b);
	return config_changed_keys(&a, &b, out, outlen);
}

/* Every key the parser knows is compared: a key missing from the table of
 * fields would be reported at every reload. */
Test(config, changed_keys_none)
{
	struct config a, b;
	char out[512];

	config_defaults(&a);
	config_defaults(&b);
	cr_assert_eq(config_changed_keys(&a, &b, out, sizeof out), 0, "%s", out);
	cr_assert_str_eq(out, "");
	cr_assert_eq(changed("listen = 127.0.0.1:1\nlisten = 127.0.0.1:2 tls\n"
	    "upstream = h:1\ntls_cert = /c\ntls_key = /k\n",
	    "upstream = h:1\n# moved\nlisten = 127.0.0.1:2 tls\ntls_key = /k\n"
	    "tls_cert = /c\nlisten = 127.0.0.1:1\n", out, sizeof out), 0,
	    "the order of lines is no change: %s", out);
}

Test(config, changed_keys_named)
{
	char out[512];

	cr_assert_eq(changed(BASE "max_sessions = 5\n", BASE "max_sessions = 4\n"
	    "log_level = debug\n", out, sizeof out), 2);
	cr_assert_str_eq(out, "log_level, max_sessions");
	cr_assert_eq(changed(BASE, "listen = 127.0.0.1:1143 tls\n"
	    "upstream = 127.0.0.1:144\ntls_cert = /c\ntls_key = /k\n", out,
	    sizeof out), 4);
	cr_assert_str_eq(out, "listen, upstream, tls_cert, tls_key");
	cr_assert_eq(changed(BASE, BASE "listen = 127.0.0.1:1144\n", out, sizeof out), 1);
	cr_assert_str_eq(out, "listen");
	cr_assert_eq(changed(BASE, BASE "splice = no\n", out, sizeof out), 1);
	cr_assert_str_eq(out, "splice");
	/* too short a buffer: cut, still terminated, still counted */
	cr_assert_eq(changed(BASE, BASE "user = u\ngroup = g\n", out, 8), 2);
	cr_assert_str_eq(out, "user");
}

static char kept[512];

static void
note_kept(const char *key, const char *was, const char *now, void *arg)
{
	size_t n = strlen(kept);

	cr_assert_eq(arg, kept);
	snprintf(kept + n, sizeof kept - n, "%s:%s>%s;", key, was, now);
}

Test(config, restart_keys_keep_the_running_values)
{
	struct config cur, next;

	load_ok(BASE "user = a\nspool_dir = /s1\nmax_sessions = 5\n", &cur);
	load_ok(BASE "user = b\ngroup = g\nspool_dir = /s2\npid_file = /p\n"
	    "max_sessions = 4\n", &next);
	kept[0] = '\0';
	config_keep_restart_keys(&next, &cur, note_kept, kept);
	cr_assert_str_eq(kept, "spool_dir:/s1>/s2;user:a>b;group:>g;pid_file:>/p;");
	cr_assert_str_eq(next.user, "a");
	cr_assert_str_eq(next.group, "");
	cr_assert_str_eq(next.spool_dir, "/s1");
	cr_assert_str_eq(next.pid_file, "");
	cr_assert_eq(next.max_sessions, 4, "the others are the new ones");
	/* nothing left to tell */
	kept[0] = '\0';
	config_keep_restart_keys(&next, &cur, note_kept, kept);
	cr_assert_str_eq(kept, "");
}

/* [backend NAME] sections: more upstreams, each with its own settings and
 * the top's for what it does not say (never its address or TLS name). */
Test(config, backend_sections)
{
	struct config c;
	const struct backend *b;

	load_ok(BASE "upstream_tls = starttls\nupstream_tls_name = top.example\n"
	    "upstream_ca_file = /ca.pem\nmaster_user = m\nmaster_password = p\n"
	    "\n[backend alpha]\nupstream = alpha.example:993\nupstream_tls = tls\n"
	    "# a comment\n[ backend beta-2.x ]\nupstream = [2001:db8::1]:143\n"
	    "master_user = other\nmaster_password = q\nupstream_tls_verify = no\n",
	    &c);
	cr_assert_eq(c.nbackends, 2);
	cr_assert_eq(config_backend(&c, ""), &c.upstream);
	cr_assert_eq(config_backend(&c, "default"), &c.upstream);
	cr_assert_null(config_backend(&c, "gamma"));
	cr_assert_null(config_backend(&c, "Alpha"), "names are exact");
	b = config_backend(&c, "alpha");
	cr_assert_not_null(b);
	cr_assert_eq(b->line, 9);
	cr_assert_str_eq(b->host, "alpha.example");
	cr_assert_str_eq(b->port, "993");
	cr_assert_eq(b->tls, UPSTREAM_TLS);
	cr_assert(b->tls_verify);
	cr_assert_str_eq(b->tls_name, "", "a TLS name is the top server's only");
	cr_assert_str_eq(b->ca_file, "/ca.pem");
	cr_assert_str_eq(b->master_user, "m");
	cr_assert_str_eq(b->master_password, "p");
	b = config_backend(&c, "beta-2.x");
	cr_assert_not_null(b);
	cr_assert_str_eq(b->host, "2001:db8::1");
	cr_assert_eq(b->tls, UPSTREAM_STARTTLS);
	cr_assert(!b->tls_verify);
	cr_assert_str_eq(b->master_user, "other");
	cr_assert_str_eq(b->master_password, "q");
	/* the top is as it was */
	cr_assert_str_eq(c.upstream.name, "");
	cr_assert_str_eq(c.upstream.master_user, "m");
	cr_assert(c.upstream.tls_verify);
	cr_assert_str_eq(c.upstream.tls_name, "top.example");
}

Test(config, backend_section_errors)
{
	char text[8192], want[256];
	size_t i, n;

	load_fails(BASE "[frontend x]\n", ":3: unknown section \"[frontend x]\" "
	    "(expected \"[backend NAME]\")");
	load_fails(BASE "[backend x\n", ":3: a section is \"[backend NAME]\"");
	load_fails(BASE "[backend]\n", ":3: unknown section \"[backend]\" "
	    "(expected \"[backend NAME]\")");
	load_fails(BASE "[backend a b]\n", ":3: bad backend name \"a b\" (letters, "
	    "digits, '_', '.' and '-', at most 63 bytes; \"default\" is the top "
	    "of the file)");
	load_fails(BASE "[backend default]\n", ":3: bad backend name \"default\" "
	    "(letters, digits, '_', '.' and '-', at most 63 bytes; \"default\" is "
	    "the top of the file)");
	load_fails(BASE "[backend a]\nupstream = h:1\n[backend a]\nupstream = h:2\n",
	    ":5: [backend a] is already on line 3");
	load_fails(BASE "[backend a]\nupstream_tls = tls\n",
	    ":3: [backend a] has no \"upstream = HOST:PORT\"");
	load_fails(BASE "[backend a]\nmaster_user = u\nupstream = h:1\n[backend b]\n",
	    ":3: [backend a]: master_user and master_password go together: set "
	    "both or neither");
	load_fails(BASE "[backend a]\nupstream = h:1\nmax_sessions = 5\n",
	    ":5: max_sessions cannot be set for one backend: it belongs above "
	    "the first [backend] section");
	load_fails(BASE "[backend a]\nupstream = h:1\nupstream = h:2\n",
	    ":5: duplicate key \"upstream\" (already set on line 4)");
	load_fails(BASE "[backend a]\nupstream = h:0\n", ":4: bad value for "
	    "upstream: \"h:0\" (the port must be a number from 1 to 65535)");
	/* one more than the most there may be */
	n = (size_t)snprintf(text, sizeof text, BASE);
	for (i = 0; i <= CONFIG_MAX_BACKENDS; i++)
		n += (size_t)snprintf(text + n, sizeof text - n,
		    "[backend b%zu]\nupstream = h:1\n", i);
	snprintf(want, sizeof want, ":%d: too many backends: at most %d",
	    3 + 2 * CONFIG_MAX_BACKENDS, CONFIG_MAX_BACKENDS);
	load_fails(text, want);
}

Test(config, changed_keys_backends)
{
	char out[512];

	cr_assert_eq(changed(BASE "[backend a]\nupstream = h:1\n",
	    BASE "[backend a]\nupstream = h:1\n", out, sizeof out), 0, "%s", out);
	cr_assert_eq(changed(BASE "[backend a]\nupstream = h:1\n",
	    BASE "[backend a]\nupstream = h:2\n", out, sizeof out), 1);
	cr_assert_str_eq(out, "[backend]");
	cr_assert_eq(changed(BASE, BASE "max_sessions = 4\n[backend a]\n"
	    "upstream = h:1\n", out, sizeof out), 2);
	cr_assert_str_eq(out, "max_sessions, [backend]");
}

Test(config, routing_keys)
{
	struct config c;

	config_defaults(&c);
	cr_assert(!config_routing(&c));
	cr_assert_eq(c.auth_http_timeout, 5);
	cr_assert_eq(c.auth_http_cache, 1000);
	cr_assert_eq(c.auth_http_cache_ttl, 60);
	good_value("route_map = /etc/mappend/routes", &c);
	cr_assert_str_eq(c.route_map, "/etc/mappend/routes");
	cr_assert(config_routing(&c));
	load_ok(BASE "auth_http = http://127.0.0.1:8080/auth\nauth_http_timeout = 2s\n"
	    "auth_http_header = X-Auth-Key: s3\nauth_http_header = X-Site: one\n"
	    "auth_http_cache = 0\nauth_http_cache_ttl = 5m\n", &c);
	cr_assert(config_routing(&c));
	cr_assert_str_eq(c.auth_http, "http://127.0.0.1:8080/auth");
	cr_assert_eq(c.auth_http_timeout, 2);
	cr_assert_eq(c.nauth_http_headers, 2);
	cr_assert_str_eq(c.auth_http_header[1], "X-Site: one");
	cr_assert_eq(c.auth_http_cache, 0);
	cr_assert_eq(c.auth_http_cache_ttl, 300);
	cr_assert(!c.route_oauth);
	good_value("route_oauth = yes", &c);
	cr_assert(c.route_oauth);
	good_value("route_capabilities = IDLE UIDPLUS NAMESPACE", &c);
	cr_assert_str_eq(c.route_capabilities, "IDLE UIDPLUS NAMESPACE");
	bad_value("route_capabilities = IDLE AUTH=CRAM-MD5", ":3: bad value for "
	    "route_capabilities: \"IDLE AUTH=CRAM-MD5\" (the front's AUTH= "
	    "mechanisms are its own (route_oauth))");
	bad_value("route_capabilities = STARTTLS", ":3: bad value for "
	    "route_capabilities: \"STARTTLS\" (IMAP4rev1, LITERAL+, SASL-IR, ID, "
	    "MULTIAPPEND, STARTTLS and LOGINDISABLED are the front's own)");
	bad_value("route_capabilities = (x)", ":3: bad value for "
	    "route_capabilities: \"(x)\" (expected capability atoms separated "
	    "by spaces)");
}

Test(config, routing_key_errors)
{
	bad_value("route_map = routes", ":3: bad value for route_map: \"routes\" "
	    "(expected an absolute path, starting with \"/\")");
	bad_value("auth_http = https://a/b", ":3: bad value for auth_http: "
	    "\"https://a/b\" (expected http://HOST[:PORT]/PATH)");
	bad_value("auth_http = http:///x", ":3: bad value for auth_http: "
	    "\"http:///x\" (expected http://HOST[:PORT]/PATH)");
	bad_value("auth_http_header = NoColon", ":3: bad value for auth_http_header: "
	    "\"NoColon\" (expected \"Name: value\" (letters, digits and '-' in the "
	    "name))");
	bad_value("auth_http_cache = -1", ":3: bad value for auth_http_cache: \"-1\" "
	    "(expected a number from 0 (no cache) to 1000000)");
	load_fails(BASE "route_map = /r\nauth_http = http://a/b\n",
	    ": route_map and auth_http are two sources of routes: set one of them");
	load_fails(BASE "auth_http_header = X-A: b\n",
	    ": auth_http_header needs auth_http");
	load_fails(BASE "[backend a]\nupstream = h:1\nroute_map = /r\n",
	    ":5: route_map cannot be set for one backend: it belongs above the "
	    "first [backend] section");
}
