/* SPDX-License-Identifier: MIT */
/*
 * spec/c/test_conf.c - a backend's options as create() reads them
 * (runtime/backends/conf.c): each kind's accessor takes what its
 * declaration allows and refuses the rest, with the message the Lua
 * checks give, also to a caller of the C API, which skips those checks.
 * No Lua, no kernel.  Prints TAP.  Build: make build/test-conf
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../../runtime/backends/backends.h"
#include "tap.h"

static const struct ublk_backend_opt test_opts[] = {
	{ .name = "name", .kind = UBLK_OPT_STRING, .flags = UBLK_OPT_REQUIRED,
	  .help = "what it is called" },
	{ .name = "note", .kind = UBLK_OPT_STRING },
	{ .name = "uri", .kind = UBLK_OPT_URI, .values = "nbd://|nbd+unix://" },
	{ .name = "flag", .kind = UBLK_OPT_BOOL },
	{ .name = "count", .kind = UBLK_OPT_INT, .min = 1, .max = 4096 },
	{ .name = "offset", .kind = UBLK_OPT_INT, .min = -1, .max = 5 },
	{ .name = "wait", .kind = UBLK_OPT_SECONDS, .min = 0.001, .max = 86400 },
	{ .name = "mode", .kind = UBLK_OPT_CHOICE, .values = "buffer|inline|auto_reg" },
	{ 0 }
};

static const struct ublk_backend_ops test_ops = { .name = "test", .opts = test_opts };

static struct ublk_backend b;
static struct ublk_backend_conf conf = { .size = 1 << 20, .block_size = 512 };
static const char *opts[5];

/* A fresh backend of test_ops whose conf holds `key` = `value` (and
 * name = "x", which is required), or nothing at all with key NULL. */
static void given(const char *key, const char *value)
{
	memset(&b, 0, sizeof(b));
	b.ops = &test_ops;
	memset(opts, 0, sizeof(opts));
	if (key) {
		opts[0] = "name";
		opts[1] = "x";
		opts[2] = key;
		opts[3] = value;
	}
	conf.opts = opts;
}

static bool said(const char *msg)
{
	if (!strcmp(b.err, msg))
		return true;
	printf("# said: %s\n# not:  %s\n", b.err, msg);
	return false;
}

/* Is b.err "bad parameter 'NAME' = "VALUE": for the test backend RULE"? */
static bool said_bad(const char *name, const char *value, const char *rule)
{
	char want[160];

	snprintf(want, sizeof(want), "bad parameter '%s' = \"%s\": for the test backend %s",
		 name, value, rule);
	return said(want);
}

/* Does ublk_conf_string take `value` of option `name`, or refuse it with
 * `rule` (rule not NULL)? */
static bool string_is(const char *name, const char *value, const char *rule)
{
	const char *s = NULL;
	int ret;

	given(name, value);
	ret = ublk_conf_string(&b, &conf, name, &s);
	if (rule)
		return ret == -EINVAL && said_bad(name, value, rule);
	return ret == 1 && s && !strcmp(s, value);
}

static void test_string(void)
{
	const char *s = "untouched";

	check(string_is("note", "hello", NULL), "string: a value given is 1 and the value");
	check(string_is("note", "", "must be a non-empty string"),
	      "string: an empty one is refused by name");
	given("flag", "1");
	check(ublk_conf_string(&b, &conf, "note", &s) == 0 && !strcmp(s, "untouched"),
	      "string: absent is 0, the default left as it was");
	given(NULL, NULL);
	check(ublk_conf_string(&b, &conf, "name", &s) == -EINVAL &&
		      said("missing parameter 'name': the test backend needs it (what it is called)"),
	      "string: a required one absent is refused, with its help");
	check(string_is("uri", "nbd+unix:///e?socket=/s", NULL),
	      "uri: one with an allowed prefix is taken");
	check(string_is("uri", "http://host/e",
			"must be a string starting with nbd://, nbd+unix://"),
	      "uri: another prefix is refused, the allowed ones listed");
}

static void test_bool(void)
{
	static const char *const yes[] = { "1", "true" }, *const no[] = { "0", "false" };
	bool v;
	int ok = 1;

	for (int i = 0; i < 2; i++) {
		given("flag", yes[i]);
		v = false;
		ok = ok && ublk_conf_bool(&b, &conf, "flag", &v) == 1 && v;
		given("flag", no[i]);
		v = true;
		ok = ok && ublk_conf_bool(&b, &conf, "flag", &v) == 1 && !v;
	}
	check(ok, "bool: 1 and true are set, 0 and false are not");
	given("flag", "yes");
	check(ublk_conf_bool(&b, &conf, "flag", &v) == -EINVAL &&
		      said_bad("flag", "yes", "must be true or false"),
	      "bool: anything else is refused");
}

/* ublk_conf_uint, _ms and _choice: a number into an unsigned */
typedef int (*reader)(struct ublk_backend *b, const struct ublk_backend_conf *c,
		      const char *name, unsigned *out);

/* Does `read` take `value` of option `name` as `want`? */
static bool reads(reader read, const char *name, const char *value, unsigned want)
{
	unsigned v = ~want;

	given(name, value);
	return read(&b, &conf, name, &v) == 1 && v == want;
}

/* Absent, is it 0 with the caller's default left as it was? */
static bool absent(reader read, const char *name)
{
	unsigned v = 7;

	given("flag", "1");
	return read(&b, &conf, name, &v) == 0 && v == 7;
}

/* Does `read` refuse each of the n values in bad[], saying "bad parameter
 * 'NAME' = "VALUE": for the test backend RULE"? */
static bool refuses(reader read, const char *name, const char *const *bad, size_t n,
		    const char *rule)
{
	bool ok = true;
	unsigned v;

	for (size_t i = 0; i < n; i++) {
		given(name, bad[i]);
		if (read(&b, &conf, name, &v) != -EINVAL || !said_bad(name, bad[i], rule)) {
			printf("# '%s' was not refused as it should be\n", bad[i]);
			ok = false;
		}
	}
	return ok;
}

#define COUNT(a) (sizeof(a) / sizeof((a)[0]))

/* Each kind read into an unsigned: its first and last allowed, absent,
 * and what it refuses. */
static void test_unsigned_kinds(void)
{
	static const char *const int_bad[] = { "0", "4097", "-1", "+5", " 5", "5x", "", "1.5",
					       "0x10", "99999999999999999999" };
	static const char *const ms_bad[] = { "0", "86400001", "2.5" };
	static const char *const choice_bad[] = { "zero", "inlin", "inline2", "",
						  "buffer|inline" };
	static const struct {
		const char *kind, *name;
		reader read;
		const char *first, *last;
		unsigned first_is, last_is;
		const char *const *bad;
		size_t nr_bad;
		const char *rule, *bad_words;
	} kinds[] = {
		{ "int", "count", ublk_conf_uint, "1", "4096", 1, 4096, int_bad, COUNT(int_bad),
		  "must be an integer from 1 to 4096",
		  "below min, above max, signs, spaces, fractions, hex and overflow" },
		{ "seconds (as ms)", "wait", ublk_conf_ms, "1", "86400000", 1, 86400000, ms_bad,
		  COUNT(ms_bad), "must be whole milliseconds from 1 to 86400000",
		  "0, past the most and a fraction of a millisecond" },
		{ "choice", "mode", ublk_conf_choice, "buffer", "auto_reg", 0, 2, choice_bad,
		  COUNT(choice_bad), "must be \"buffer\", \"inline\" or \"auto_reg\"",
		  "another word, a prefix, a longer word, nothing or two" },
	};
	char what[192];
	unsigned v;

	for (size_t i = 0; i < COUNT(kinds); i++) {
		snprintf(what, sizeof(what), "%s: the first allowed, '%s', is %u", kinds[i].kind,
			 kinds[i].first, kinds[i].first_is);
		check(reads(kinds[i].read, kinds[i].name, kinds[i].first, kinds[i].first_is), what);
		snprintf(what, sizeof(what), "%s: the last allowed, '%s', is %u", kinds[i].kind,
			 kinds[i].last, kinds[i].last_is);
		check(reads(kinds[i].read, kinds[i].name, kinds[i].last, kinds[i].last_is), what);
		snprintf(what, sizeof(what), "%s: absent is 0, the default left as it was",
			 kinds[i].kind);
		check(absent(kinds[i].read, kinds[i].name), what);
		snprintf(what, sizeof(what), "%s: %s are refused, '%s'", kinds[i].kind,
			 kinds[i].bad_words, kinds[i].rule);
		check(refuses(kinds[i].read, kinds[i].name, kinds[i].bad, kinds[i].nr_bad,
			      kinds[i].rule), what);
	}
	given("offset", "1");
	check(ublk_conf_uint(&b, &conf, "offset", &v) == -EINVAL &&
		      said("the test backend declares 'offset' from -1 to 5: not within an unsigned"),
	      "int: one declared below 0 is not read as unsigned");
}

static void test_declaration(void)
{
	static const char tail[] = "xx\": for the test backend must be a string starting "
				   "with nbd://, nbd+unix://";
	char long_uri[400];
	unsigned v;

	given("count", "1");
	check(ublk_conf_uint(&b, &conf, "nope", &v) == -EINVAL &&
		      said("the test backend declares no integer option 'nope'"),
	      "declaration: an option the backend does not declare is a bug, said");
	check(ublk_conf_choice(&b, &conf, "count", &v) == -EINVAL &&
		      said("the test backend declares no choice option 'count'"),
	      "declaration: nor is one read as another kind");
	b.ops = NULL;
	check(ublk_conf_uint(&b, &conf, "count", &v) == -EINVAL,
	      "declaration: a backend whose ops are not set has none");
	memset(long_uri, 'x', sizeof(long_uri) - 1);
	long_uri[sizeof(long_uri) - 1] = 0;
	given("uri", long_uri);
	check(ublk_conf_string(&b, &conf, "uri", &(const char *){ NULL }) == -EINVAL &&
		      !strncmp(b.err, "bad parameter 'uri' = \"xxxx", 27) &&
		      strlen(b.err) > strlen(tail) &&
		      !strcmp(b.err + strlen(b.err) - strlen(tail), tail),
	      "message: a long value is cut, what is allowed is said whole");
}

/* A backend that sizes itself: the user's size when it fits, else the
 * whole blocks its storage holds. */
static void test_size(void)
{
	given(NULL, NULL);
	conf.size = 1 << 20;
	check(ublk_conf_size(&b, &conf, "/x", 4 << 20) == 0 && b.size == 1 << 20,
	      "size: the user's, when the storage holds that much");
	check(ublk_conf_size(&b, &conf, "/x", 1 << 20) == 0 && b.size == 1 << 20,
	      "size: the user's, when the storage holds exactly that");
	check(ublk_conf_size(&b, &conf, "/x", (1 << 20) - 512) == -EINVAL &&
		      said("'/x' holds 1048064 bytes, less than size 1048576"),
	      "size: more than the storage holds is refused, both sizes said");
	conf.size = 0;
	check(ublk_conf_size(&b, &conf, "/x", (1 << 20) + 700) == 0 && b.size == (1 << 20) + 512,
	      "size: none given, the storage's whole blocks");
	check(ublk_conf_size(&b, &conf, "nbd://h/e", 511) == -EINVAL &&
		      said("'nbd://h/e' holds 511 bytes, less than one 512-byte block"),
	      "size: none given and not one block there is refused");
	conf.size = 1 << 20;
}

/* ---- the backends' create(), called as a C caller would, no Lua ---- */

/* Backend `name` of the registry made with `o`; destroyed by done(). */
static int create(const char *name, const char **o, uint64_t size)
{
	memset(&b, 0, sizeof(b));
	b.ops = ublk_backend_find(name);
	conf.size = size;
	conf.opts = o;
	return b.ops->create(&b, &conf);
}

static void done(void)
{
	b.ops->destroy(&b);
}

static void test_copy_modes(void)
{
	static const struct {
		const char *backend, *copy;
		unsigned caps;	/* of UBLK_CAN_USER_COPY | UBLK_CAN_ZERO_COPY */
		enum ublk_zc zc_only;
	} modes[] = {
		{ "null", NULL, 0, UBLK_ZC_NONE },
		{ "null", "buffer", 0, UBLK_ZC_NONE },
		{ "null", "inline", UBLK_CAN_USER_COPY, UBLK_ZC_NONE },
		{ "null", "auto_reg", UBLK_CAN_ZERO_COPY, UBLK_ZC_AUTO_REG },
		{ "null", "register", UBLK_CAN_ZERO_COPY, UBLK_ZC_REGISTER },
		{ "memory", NULL, UBLK_CAN_USER_COPY | UBLK_CAN_ZERO_COPY, UBLK_ZC_NONE },
		{ "memory", "inline", UBLK_CAN_USER_COPY, UBLK_ZC_NONE },
		{ "memory", "ring", UBLK_CAN_USER_COPY, UBLK_ZC_NONE },
		{ "memory", "buffer", 0, UBLK_ZC_NONE },
		{ "memory", "auto_reg", UBLK_CAN_ZERO_COPY, UBLK_ZC_AUTO_REG },
		{ "memory", "register", UBLK_CAN_ZERO_COPY, UBLK_ZC_REGISTER },
	};
	const unsigned copy_caps = UBLK_CAN_USER_COPY | UBLK_CAN_ZERO_COPY;
	int ok = 1;

	for (size_t i = 0; i < COUNT(modes); i++) {
		const char *o[] = { "copy", modes[i].copy, NULL };

		if (create(modes[i].backend, modes[i].copy ? o : NULL, 1 << 20) < 0) {
			printf("# %s copy %s: %s\n", modes[i].backend, modes[i].copy, b.err);
			ok = 0;
			continue;
		}
		if ((b.caps & copy_caps) != modes[i].caps || b.zc_only != modes[i].zc_only) {
			printf("# %s copy %s: caps %#x, zc_only %d\n", modes[i].backend,
			       modes[i].copy, b.caps, b.zc_only);
			ok = 0;
		}
		done();
	}
	check(ok, "copy: each mode of null and memory, and none, takes its data path");

	const char *zero[] = { "copy", "zero", NULL };

	check(create("null", zero, 1 << 20) == -EINVAL &&
		      said("bad parameter 'copy' = \"zero\": for the null backend must be "
			   "\"buffer\", \"inline\", \"auto_reg\", \"register\" or "
			   "\"auto_reg_fallback\""),
	      "copy: null refuses another, naming its own modes");
	check(create("memory", zero, 1 << 20) == -EINVAL &&
		      said("bad parameter 'copy' = \"zero\": for the memory backend must be "
			   "\"inline\", \"ring\", \"buffer\", \"auto_reg\" or \"register\""),
	      "copy: memory refuses another, naming its own modes");
}

static void test_file(void)
{
	char path[] = "/tmp/ublk-conf-test-XXXXXX";
	int fd = mkstemp(path);
	const char *given_path[] = { "path", path, NULL };
	const char *buffer[] = { "path", path, "copy", "buffer", NULL };
	const char *bad_direct[] = { "path", "/nonexistent/x", "direct", "yes", NULL };
	const char *bad_create[] = { "path", path, "create", "2", NULL };

	check(create("file", NULL, 0) == -EINVAL &&
		      said("missing parameter 'path': the file backend needs it (the file or block "
			   "device to serve)"),
	      "file: no path is refused, the option's help said");
	check(create("file", bad_direct, 0) == -EINVAL &&
		      said("bad parameter 'direct' = \"yes\": for the file backend must be true or "
			   "false"),
	      "file: a bad direct is refused before the file is looked for");
	check(create("file", bad_create, 0) == -EINVAL && strstr(b.err, "'create' = \"2\""),
	      "file: a bad create is refused");
	check(ftruncate(fd, 1 << 20) == 0 && create("file", given_path, 0) == 0 &&
		      (b.caps & UBLK_CAN_ZERO_COPY),
	      "file: without copy it takes zero copy where the kernel has it");
	done();
	check(create("file", buffer, 0) == 0 && !(b.caps & UBLK_CAN_ZERO_COPY),
	      "file: copy = buffer never zero copy");
	done();
	check(ftruncate(fd, 100) == 0 && create("file", given_path, 0) == -EINVAL &&
		      strstr(b.err, "' holds 100 bytes, less than one 512-byte block: give a size "
				    "(and create = true) to grow it"),
	      "file: a file of less than a block without a size is refused, saying what grows it");
	close(fd);
	unlink(path);
}

/* each refused before anything is asked of a server or cluster */
static void test_remote(void)
{
	static const struct {
		const char *backend, *says;
	} missing[] = {
		{ "nbd", "missing parameter 'uri': the nbd backend needs it (the server: "
			 "nbd://host:port/export or nbd+unix:///export?socket=PATH)" },
		{ "plugin", "missing parameter 'path': the plugin backend needs it (the plugin: a "
			    "shared object built with UBLK_BACKEND_PLUGIN (docs/c-backends.md))" },
	};
	/* beside a good value of what each requires (needs[]) */
	static const struct {
		const char *backend, *name, *value, *rule;
	} bad[] = {
		{ "nbd", "uri", "http://x/e", "must be a string starting with nbd://, nbds://, "
					      "nbd+unix://, nbds+unix://, nbd+vsock://" },
		{ "nbd", "connections", "0", "must be an integer from 1 to 4096" },
		{ "nbd", "reconnect", "1001", "must be an integer from 0 to 1000" },
		{ "nbd", "connect_timeout", "0.5", "must be whole milliseconds from 1 to 86400000" },
		{ "rbd", "image", "", "must be a non-empty string" },
		{ "rbd", "client", "", "must be a non-empty string" },
		{ "rbd", "osd_timeout", "0", "must be an integer from 1 to 86400" },
		{ "rbd", "osd_timeout", "2.5", "must be an integer from 1 to 86400" },
		{ "rbd", "exclusive", "on", "must be true or false" },
	};
	static const char *const needs[][3] = { { "nbd", "uri", "nbd://x/e" },
						{ "rbd", "image", "rbd/x" } };
	bool ok = true;

	for (size_t i = 0; i < COUNT(missing); i++)
		ok = create(missing[i].backend, NULL, 0) == -EINVAL && said(missing[i].says) && ok;
	for (size_t i = 0; i < COUNT(bad); i++) {
		const char *o[5] = { bad[i].name, bad[i].value };
		char want[160];

		for (size_t n = 0; n < COUNT(needs); n++)
			if (!strcmp(needs[n][0], bad[i].backend)) {
				o[2] = needs[n][1];
				o[3] = needs[n][2];
			}
		snprintf(want, sizeof(want), "bad parameter '%s' = \"%s\": for the %s backend %s",
			 bad[i].name, bad[i].value, bad[i].backend, bad[i].rule);
		ok = create(bad[i].backend, o, 0) == -EINVAL && said(want) && ok;
	}
	check(ok, "nbd, rbd, plugin: a required option absent, and each bad value, are refused "
		  "at create, by name, with what is allowed");
}

int main(void)
{
	test_string();
	test_bool();
	test_unsigned_kinds();
	test_declaration();
	test_size();
	test_copy_modes();
	test_file();
	test_remote();
	printf("1..%d\n", checks);
	return failed ? 1 : 0;
}
