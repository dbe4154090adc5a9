/* SPDX-License-Identifier: MIT */
/*
 * conf.c - what create() reads of the user's configuration (backend.h):
 * an option's value by the backend's own declaration of it, parsed as
 * its kind says and checked against its range or values here, once for
 * every backend, so that none parses its options itself.  The rules and
 * their words are those lua/ublk/options.lua checks with before a device
 * exists; these hold for callers of the C API, which skip those checks.
 * And the size of a backend that sizes itself, from the user's and what
 * its storage holds: one rule for file, nbd and rbd.
 */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../include/backend.h"

const char *ublk_conf_get(const struct ublk_backend_conf *c, const char *key)
{
	if (!c->opts)
		return NULL;
	for (const char *const *o = c->opts; o[0] && o[1]; o += 2)
		if (!strcmp(o[0], key))
			return o[1];
	return NULL;
}

bool ublk_conf_flag(const struct ublk_backend_conf *c, const char *key)
{
	const char *v = ublk_conf_get(c, key);

	return v && (!strcmp(v, "1") || !strcmp(v, "true"));
}

static const char *backend_name(const struct ublk_backend *b)
{
	return b->ops && b->ops->name ? b->ops->name : "?";
}

/* Option `name` as b's ops declare it, if of one of `kinds` (bits by
 * enum ublk_opt_kind; `what` names them for the message), into *decl,
 * and its value into *value: 1 given, 0 absent, -EINVAL as backend.h
 * says. */
static int lookup(struct ublk_backend *b, const struct ublk_backend_conf *conf,
		  const char *name, unsigned kinds, const char *what,
		  const struct ublk_backend_opt **decl, const char **value)
{
	const struct ublk_backend_opt *o = b->ops ? b->ops->opts : NULL;

	while (o && o->name && strcmp(o->name, name))
		o++;
	if (!o || !o->name || !(kinds & 1u << o->kind)) {
		snprintf(b->err, sizeof(b->err), "the %s backend declares no %s option '%s'",
			 backend_name(b), what, name);
		return -EINVAL;
	}
	*decl = o;
	*value = ublk_conf_get(conf, name);
	if (!*value && (o->flags & UBLK_OPT_REQUIRED)) {
		snprintf(b->err, sizeof(b->err), "missing parameter '%s': the %s backend needs it (%s)",
			 name, backend_name(b), o->help ? o->help : "");
		return -EINVAL;
	}
	return *value != NULL;
}

/* b->err for value v of option `name`, as params.lua words it: "bad
 * parameter 'copy' = "zero": for the memory backend must be ...", the
 * value cut short where the whole would not fit. */
static int bad(struct ublk_backend *b, const char *name, const char *v, const char *rule)
{
	static const char head[] = "bad parameter '' = \"";
	char tail[128];
	int n = snprintf(tail, sizeof(tail), "\": for the %s backend %s", backend_name(b), rule);
	int room = (int)sizeof(b->err) - 1 - (int)(sizeof(head) - 1) - (int)strlen(name) - n;

	snprintf(b->err, sizeof(b->err), "bad parameter '%s' = \"%.*s%s", name,
		 room < 16 ? 16 : room, v, tail);
	return -EINVAL;
}

/* The next of `values` ("a|b|c") from *p into *start and *len; false at
 * the end. */
static bool next_value(const char **p, const char **start, size_t *len)
{
	if (!*p || !**p)
		return false;
	*start = *p;
	*len = strcspn(*p, "|");
	*p += *len + ((*p)[*len] == '|');
	return true;
}

/* `values` in words after `lead`: a choice's quoted, the last after
 * "or" ("must be "a", "b" or "c""); a URI's prefixes as a list. */
static void values_rule(char *out, size_t n, const char *lead, const char *values, bool choice)
{
	const char *p = values, *v;
	size_t len, at = (size_t)snprintf(out, n, "%s", lead);
	unsigned i = 0, count = 0;

	while (next_value(&p, &v, &len))
		count++;
	for (p = values; next_value(&p, &v, &len) && at < n; i++) {
		const char *sep = !i ? "" : choice && i == count - 1 ? " or " : ", ";
		const char *q = choice ? "\"" : "";

		at += (size_t)snprintf(out + at, n - at, "%s%s%.*s%s", sep, q, (int)len, v, q);
	}
}

/* A decimal with no sign, space or fraction, as the Lua side writes one
 * (options.to_c: "%d"). */
static bool whole(const char *v, unsigned long long *out)
{
	char *end;

	if (*v < '0' || *v > '9')
		return false;
	errno = 0;
	*out = strtoull(v, &end, 10);
	return !errno && !*end;
}

/* Seconds as whole milliseconds, rounded up as options.to_c rounds. */
static double ms_of(double s)
{
	double ms = s * 1000;
	double whole_ms;

	if (!(ms > -1e18 && ms < 1e18))
		return ms; /* past any unsigned: whole_in() says so */
	whole_ms = (double)(long long)ms;

	return whole_ms < ms ? whole_ms + 1 : whole_ms;
}

/* A whole number from lo to hi, for uint and ms: the declared range must
 * fit an unsigned. */
static int whole_in(struct ublk_backend *b, const struct ublk_backend_opt *o, const char *v,
		    double lo, double hi, const char *unit, unsigned *out)
{
	unsigned long long n;
	char rule[96];

	if (lo < 0 || hi > UINT_MAX) {
		snprintf(b->err, sizeof(b->err), "the %s backend declares '%s' from %.15g to "
			 "%.15g: not within an unsigned", backend_name(b), o->name, lo, hi);
		return -EINVAL;
	}
	if (!whole(v, &n) || (double)n < lo || (double)n > hi) {
		snprintf(rule, sizeof(rule), "must be %s from %.15g to %.15g", unit, lo, hi);
		return bad(b, o->name, v, rule);
	}
	*out = (unsigned)n;
	return 1;
}

int ublk_conf_uint(struct ublk_backend *b, const struct ublk_backend_conf *conf,
		   const char *name, unsigned *out)
{
	const struct ublk_backend_opt *o;
	const char *v;
	int ret = lookup(b, conf, name, 1u << UBLK_OPT_INT, "integer", &o, &v);

	return ret <= 0 ? ret : whole_in(b, o, v, o->min, o->max, "an integer", out);
}

int ublk_conf_ms(struct ublk_backend *b, const struct ublk_backend_conf *conf,
		 const char *name, unsigned *out)
{
	const struct ublk_backend_opt *o;
	const char *v;
	int ret = lookup(b, conf, name, 1u << UBLK_OPT_SECONDS, "seconds", &o, &v);

	return ret <= 0 ? ret : whole_in(b, o, v, ms_of(o->min), ms_of(o->max),
					 "whole milliseconds", out);
}

int ublk_conf_bool(struct ublk_backend *b, const struct ublk_backend_conf *conf,
		   const char *name, bool *out)
{
	const struct ublk_backend_opt *o;
	const char *v;
	int ret = lookup(b, conf, name, 1u << UBLK_OPT_BOOL, "boolean", &o, &v);

	if (ret <= 0)
		return ret;
	if (!strcmp(v, "1") || !strcmp(v, "true"))
		*out = true;
	else if (!strcmp(v, "0") || !strcmp(v, "false"))
		*out = false;
	else
		return bad(b, name, v, "must be true or false");
	return 1;
}

int ublk_conf_choice(struct ublk_backend *b, const struct ublk_backend_conf *conf,
		     const char *name, unsigned *out)
{
	const struct ublk_backend_opt *o;
	const char *v, *p, *c;
	char rule[128];
	size_t len;
	int ret = lookup(b, conf, name, 1u << UBLK_OPT_CHOICE, "choice", &o, &v);

	if (ret <= 0)
		return ret;
	p = o->values;
	for (unsigned i = 0; next_value(&p, &c, &len); i++)
		if (strlen(v) == len && !strncmp(v, c, len)) {
			*out = i;
			return 1;
		}
	values_rule(rule, sizeof(rule), "must be ", o->values, true);
	return bad(b, name, v, rule);
}

int ublk_conf_string(struct ublk_backend *b, const struct ublk_backend_conf *conf,
		     const char *name, const char **out)
{
	const struct ublk_backend_opt *o;
	const char *v, *p, *c;
	char rule[128];
	size_t len;
	int ret = lookup(b, conf, name, 1u << UBLK_OPT_STRING | 1u << UBLK_OPT_URI, "string",
			 &o, &v);

	if (ret <= 0)
		return ret;
	if (o->kind == UBLK_OPT_STRING) {
		if (!*v)
			return bad(b, name, v, "must be a non-empty string");
		*out = v;
		return 1;
	}
	p = o->values;
	while (next_value(&p, &c, &len))
		if (!strncmp(v, c, len)) {
			*out = v;
			return 1;
		}
	values_rule(rule, sizeof(rule), "must be a string starting with ", o->values, false);
	return bad(b, name, v, rule);
}

int ublk_conf_size(struct ublk_backend *b, const struct ublk_backend_conf *conf,
		   const char *what, uint64_t have)
{
	unsigned block = conf->block_size ? conf->block_size : 1;

	if (conf->size > have) {
		snprintf(b->err, sizeof(b->err), "'%.80s' holds %llu bytes, less than size %llu",
			 what, (unsigned long long)have, (unsigned long long)conf->size);
		return -EINVAL;
	}
	b->size = conf->size ? conf->size : have - have % block;
	if (!b->size) {
		snprintf(b->err, sizeof(b->err), "'%.80s' holds %llu bytes, less than one %u-byte "
			 "block", what, (unsigned long long)have, block);
		return -EINVAL;
	}
	return 0;
}
