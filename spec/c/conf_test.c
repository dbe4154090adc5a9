/* SPDX-License-Identifier: MIT */
/*
 * spec/c/conf_test.c - a backend's options as create() reads them
 * (runtime/backends/conf.c): each kind's accessor takes what its
 * declaration allows and refuses the rest, with the message the Lua
 * checks give, also to a caller of the C API, which skips those checks.
 * No Lua, no kernel.  Prints TAP.  Build: make build/conf-test
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

static void test_string(void)
{
	const char *s = "untouched";

	given("note", "hello");
	check(ublk_conf_string(&b, &conf, "note", &s) == 1 && !strcmp(s, "hello"),
	      "string: a value given is 1 and the value");
	given("note", "");
	check(ublk_conf_string(&b, &conf, "note", &s) == -EINVAL &&
		      said("bad parameter 'note' = \"\": for the test backend must be a non-empty "
			   "string"),
	      "string: an empty one is refused by name");
	given("flag", "1");
	s = "untouched";
	check(ublk_conf_string(&b, &conf, "note", &s) == 0 && !strcmp(s, "untouched"),
	      "string: absent is 0, the default left as it was");
	given(NULL, NULL);
	check(ublk_conf_string(&b, &conf, "name", &s) == -EINVAL &&
		      said("missing parameter 'name': the test backend needs it (what it is called)"),
	      "string: a required one absent is refused, with its help");
	given("uri", "nbd+unix:///e?socket=/s");
	check(ublk_conf_string(&b, &conf, "uri", &s) == 1 && !strcmp(s, "nbd+unix:///e?socket=/s"),
	      "uri: one with an allowed prefix is taken");
	given("uri", "http://host/e");
	check(ublk_conf_string(&b, &conf, "uri", &s) == -EINVAL &&
		      said("bad parameter 'uri' = \"http://host/e\": for the test backend must be a "
			   "string starting with nbd://, nbd+unix://"),
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
		      said("bad parameter 'flag' = \"yes\": for the test backend must be true or "
			   "false"),
	      "bool: anything else is refused");
}

static void test_uint(void)
{
	static const char *const bad[] = { "0", "4097", "-1", "+5", " 5", "5x", "", "1.5",
					   "0x10", "99999999999999999999" };
	unsigned v = 7;
	int ok = 1;

	given("count", "1");
	check(ublk_conf_uint(&b, &conf, "count", &v) == 1 && v == 1, "int: the minimum is taken");
	given("count", "4096");
	check(ublk_conf_uint(&b, &conf, "count", &v) == 1 && v == 4096, "int: the maximum is taken");
	given("flag", "1");
	v = 7;
	check(ublk_conf_uint(&b, &conf, "count", &v) == 0 && v == 7,
	      "int: absent is 0, the default left as it was");
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		char want[160];

		given("count", bad[i]);
		snprintf(want, sizeof(want), "bad parameter 'count' = \"%s\": for the test backend "
			 "must be an integer from 1 to 4096", bad[i]);
		if (ublk_conf_uint(&b, &conf, "count", &v) != -EINVAL || !said(want)) {
			printf("# '%s' was not refused as it should be\n", bad[i]);
			ok = 0;
		}
	}
	check(ok, "int: below min, above max, signs, spaces, fractions, hex and overflow "
		  "are refused, the range said");
	given("offset", "1");
	check(ublk_conf_uint(&b, &conf, "offset", &v) == -EINVAL &&
		      said("the test backend declares 'offset' from -1 to 5: not within an unsigned"),
	      "int: one declared below 0 is not read as unsigned");
}

static void test_ms(void)
{
	unsigned v = 0;

	given("wait", "1");
	check(ublk_conf_ms(&b, &conf, "wait", &v) == 1 && v == 1,
	      "seconds: 0.001 s is 1 ms, the least allowed");
	given("wait", "86400000");
	check(ublk_conf_ms(&b, &conf, "wait", &v) == 1 && v == 86400000,
	      "seconds: 86400 s is the most");
	given("wait", "0");
	check(ublk_conf_ms(&b, &conf, "wait", &v) == -EINVAL &&
		      said("bad parameter 'wait' = \"0\": for the test backend must be whole "
			   "milliseconds from 1 to 86400000"),
	      "seconds: 0 ms is refused, the range said in milliseconds");
	given("wait", "86400001");
	check(ublk_conf_ms(&b, &conf, "wait", &v) == -EINVAL, "seconds: past the most is refused");
	given("wait", "2.5");
	check(ublk_conf_ms(&b, &conf, "wait", &v) == -EINVAL,
	      "seconds: a fraction of a millisecond is refused (create() gets whole ones)");
}

static void test_choice(void)
{
	static const char *const bad[] = { "zero", "inlin", "inline2", "", "buffer|inline" };
	unsigned v = 9;
	int ok = 1;

	given("mode", "buffer");
	check(ublk_conf_choice(&b, &conf, "mode", &v) == 1 && v == 0, "choice: the first is 0");
	given("mode", "auto_reg");
	check(ublk_conf_choice(&b, &conf, "mode", &v) == 1 && v == 2, "choice: the last is 2");
	given("flag", "1");
	v = 9;
	check(ublk_conf_choice(&b, &conf, "mode", &v) == 0 && v == 9,
	      "choice: absent is 0, the default left as it was");
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		char want[160];

		given("mode", bad[i]);
		snprintf(want, sizeof(want), "bad parameter 'mode' = \"%s\": for the test backend "
			 "must be \"buffer\", \"inline\" or \"auto_reg\"", bad[i]);
		ok = ok && ublk_conf_choice(&b, &conf, "mode", &v) == -EINVAL && said(want);
	}
	check(ok, "choice: another word, a prefix, a longer word, nothing or two are refused, "
		  "the values listed");
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

	for (size_t i = 0; i < sizeof(modes) / sizeof(modes[0]); i++) {
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
			   "\"buffer\", \"inline\", \"auto_reg\" or \"register\""),
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
		const char *backend, *opts[5], *says;
	} bad[] = {
		{ "nbd", { NULL }, "missing parameter 'uri': the nbd backend needs it (the server: "
				   "nbd://host:port/export or nbd+unix:///export?socket=PATH)" },
		{ "nbd", { "uri", "http://x/e" },
		  "bad parameter 'uri' = \"http://x/e\": for the nbd backend must be a string "
		  "starting with nbd://, nbds://, nbd+unix://, nbds+unix://, nbd+vsock://" },
		{ "nbd", { "uri", "nbd://x/e", "connections", "0" },
		  "bad parameter 'connections' = \"0\": for the nbd backend must be an integer "
		  "from 1 to 4096" },
		{ "nbd", { "uri", "nbd://x/e", "reconnect", "1001" },
		  "bad parameter 'reconnect' = \"1001\": for the nbd backend must be an integer "
		  "from 0 to 1000" },
		{ "nbd", { "uri", "nbd://x/e", "connect_timeout", "0.5" },
		  "bad parameter 'connect_timeout' = \"0.5\": for the nbd backend must be whole "
		  "milliseconds from 1 to 86400000" },
		{ "rbd", { "image", "" },
		  "bad parameter 'image' = \"\": for the rbd backend must be a non-empty string" },
		{ "rbd", { "image", "rbd/x", "osd_timeout", "0" },
		  "bad parameter 'osd_timeout' = \"0\": for the rbd backend must be an integer "
		  "from 1 to 86400" },
		{ "rbd", { "image", "rbd/x", "osd_timeout", "2.5" },
		  "bad parameter 'osd_timeout' = \"2.5\": for the rbd backend must be an integer "
		  "from 1 to 86400" },
		{ "rbd", { "image", "rbd/x", "exclusive", "on" },
		  "bad parameter 'exclusive' = \"on\": for the rbd backend must be true or false" },
		{ "plugin", { NULL }, "missing parameter 'path': the plugin backend needs it (the "
				      "plugin: a shared object built with UBLK_BACKEND_PLUGIN "
				      "(docs/c-backends.md))" },
	};
	int ok = 1;

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		if (create(bad[i].backend, (const char **)bad[i].opts, 0) != -EINVAL ||
		    !said(bad[i].says))
			ok = 0;
	check(ok, "nbd, rbd, plugin: each bad option is refused at create, by name, with "
		  "what is allowed");
}

int main(void)
{
	test_string();
	test_bool();
	test_uint();
	test_ms();
	test_choice();
	test_declaration();
	test_size();
	test_copy_modes();
	test_file();
	test_remote();
	printf("1..%d\n", checks);
	return failed ? 1 : 0;
}
