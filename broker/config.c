/*
 * config.c — handoffd's settings: defaults, the INI file, command-line
 * overrides, and the cross-field checks run once all three are in.
 *
 * The file is read with libinih. inih's handler is not told the line
 * number (Debian builds it without INI_HANDLER_LINENO), so the file is fed
 * through our own line reader, which counts lines and refuses lines too
 * long for inih's fixed buffer instead of letting inih split them. The
 * first error stops the parse: a broker with a half-understood config must
 * not start.
 *
 * Every key maps to one row of a table (section, key, kind, field), so a
 * new setting is one line here plus its default in config_init().
 */
#include "config.h"

#include <errno.h>
#include <ini.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>

#include <fcntl.h>
#include <sodium.h>
#include <sys/stat.h>
#include <unistd.h>

#include "duration.h"

#define DEFAULT_DATA_DIR "./handoff-data"
#define DEFAULT_LISTEN	 "tcp://127.0.0.1:7450"

#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

static const char *const listen_schemes[] = { "ipc://", "tcp://", "inproc://" };

enum kind {
	K_STRING,  /* char * (data_dir) */
	K_LISTEN,  /* appended to listen[] */
	K_SIZE64,  /* uint64_t, K/M/G suffixes */
	K_SIZE32,  /* uint32_t, K/M/G suffixes */
	K_COUNT32, /* uint32_t, plain decimal */
	K_MS64,	   /* uint64_t milliseconds, ms/s/m/h/d suffixes */
	K_MS32,	   /* uint32_t milliseconds */
	K_BOOL,	   /* int 0/1 */
	K_HTTP,	   /* appended to http_listen[]; "off" empties it */
	K_LOGFMT,  /* int: CONFIG_LOG_KV or CONFIG_LOG_JSON */
};

struct key {
	const char *section;
	const char *name;
	enum kind kind;
	size_t offset;
};

#define KEY(sec, name, kind, field)                             \
	{                                                       \
		sec, name, kind, offsetof(struct config, field) \
	}

static const struct key keys[] = {
	KEY("broker", "data_dir", K_STRING, data_dir),
	KEY("broker", "backup_dir", K_STRING, backup_dir),
	KEY("broker", "listen", K_LISTEN, listen),
	KEY("broker", "map_size", K_SIZE64, map_size_bytes),
	KEY("broker", "log_debug", K_BOOL, log_debug),
	KEY("broker", "log_format", K_LOGFMT, log_format),
	KEY("broker", "liveness_timeout", K_MS32, liveness_timeout_ms),
	KEY("broker", "allow_wildcard", K_BOOL, allow_wildcard),
	KEY("access", "request_window", K_MS64, request_window_ms),
	KEY("limits", "max_payload", K_SIZE32, max_payload_bytes),
	KEY("limits", "max_request", K_SIZE32, max_request_bytes),
	KEY("limits", "max_batch", K_COUNT32, max_batch),
	KEY("limits", "max_subscriptions", K_COUNT32, max_subscriptions),
	KEY("limits", "max_held_fetches", K_COUNT32, max_held_fetches),
	KEY("limits", "max_wait", K_MS32, max_wait_ms),
	KEY("limits", "max_name", K_SIZE32, max_name_bytes),
	KEY("limits", "max_backlog", K_COUNT32, max_backlog),
	KEY("limits", "max_leases_per_consumer", K_COUNT32,
	    max_leases_per_consumer),
	KEY("limits", "storage_headroom", K_SIZE64, storage_headroom_bytes),
	KEY("retention", "dedup_window", K_MS64, dedup_window_ms),
	KEY("retention", "history", K_MS64, history_ms),
	KEY("defaults", "max_attempts", K_COUNT32, max_attempts),
	KEY("defaults", "ack_deadline", K_MS32, ack_deadline_ms),
	KEY("defaults", "backoff_min", K_MS32, backoff_min_ms),
	KEY("defaults", "backoff_max", K_MS32, backoff_max_ms),
	KEY("http", "listen", K_HTTP, http_listen),
	KEY("http", "tls_cert", K_STRING, http_tls_cert),
	KEY("http", "tls_key", K_STRING, http_tls_key),
	KEY("http", "max_connections", K_COUNT32, http_max_connections),
	KEY("http", "max_connections_per_ip", K_COUNT32,
	    http_max_connections_per_ip),
	KEY("http", "timeout", K_MS32, http_timeout_ms),
	KEY("push", "deny_private", K_BOOL, push_deny_private),
};

static void set_err(char *err, size_t errlen, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static void set_err(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	if (!err || errlen == 0)
		return;
	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
}

static void free_listen(struct config *c)
{
	size_t i;

	for (i = 0; i < c->n_listen; i++) {
		free(c->listen[i]);
		c->listen[i] = NULL;
	}
	c->n_listen = 0;
}

int config_init(struct config *c)
{
	memset(c, 0, sizeof(*c));
	c->data_dir = strdup(DEFAULT_DATA_DIR);
	c->listen[0] = strdup(DEFAULT_LISTEN);
	if (!c->data_dir || !c->listen[0]) {
		free(c->data_dir);
		free(c->listen[0]);
		memset(c, 0, sizeof(*c));
		return ENOMEM;
	}
	c->n_listen = 1;
	c->map_size_bytes = 1ULL << 30;

	c->max_payload_bytes = 1U << 20;
	c->max_request_bytes = 16U << 20;
	c->max_batch = 1000;
	c->max_subscriptions = 1000;
	c->max_held_fetches = 1024;
	c->max_wait_ms = 60 * 1000;
	c->max_name_bytes = 200;
	c->max_backlog = 0;
	c->max_leases_per_consumer = 10000;
	c->storage_headroom_bytes = 0;

	c->dedup_window_ms = 24ULL * 60 * 60 * 1000;
	c->history_ms = 7ULL * 24 * 60 * 60 * 1000;

	c->max_attempts = 5;
	c->ack_deadline_ms = 30 * 1000;
	c->backoff_min_ms = 1000;
	c->backoff_max_ms = 60 * 1000;
	c->request_window_ms = 60 * 1000;

	c->http_max_connections = 1000;
	c->http_max_connections_per_ip = 128;
	c->http_timeout_ms = 30 * 1000;

	c->log_debug = 0;
	c->log_format = CONFIG_LOG_KV;
	c->liveness_timeout_ms = 15000;
	return 0;
}

int config_parse_log_format(const char *value, int *format)
{
	if (strcmp(value, "kv") == 0 || strcmp(value, "text") == 0)
		*format = CONFIG_LOG_KV;
	else if (strcmp(value, "json") == 0)
		*format = CONFIG_LOG_JSON;
	else
		return EINVAL;
	return 0;
}

void config_free(struct config *c)
{
	if (!c)
		return;
	free(c->data_dir);
	c->data_dir = NULL;
	free_listen(c);
	for (size_t i = 0; i < c->n_http_listen; i++)
		free(c->http_listen[i]);
	c->n_http_listen = 0;
	free(c->backup_dir);
	c->backup_dir = NULL;
	free(c->http_tls_cert);
	free(c->http_tls_key);
	c->http_tls_cert = c->http_tls_key = NULL;
	for (size_t i = 0; i < c->n_keys; i++) {
		struct config_key *k = &c->keys[i];
		free(k->id);
		for (size_t j = 0; j < k->n_topics; j++)
			free(k->topics[j]);
		for (size_t j = 0; j < k->n_subs; j++)
			free(k->subs[j]);
		for (size_t j = 0; j < k->n_push_urls; j++)
			free(k->push_urls[j]);
		sodium_memzero(k->secret, sizeof k->secret);
		sodium_memzero(k->token_hash, sizeof k->token_hash);
	}
	memset(c->keys, 0, sizeof c->keys);
	c->n_keys = 0;
}

int config_set_data_dir(struct config *c, const char *dir)
{
	char *copy;

	if (!dir)
		return EINVAL;
	copy = strdup(dir);
	if (!copy)
		return ENOMEM;
	free(c->data_dir);
	c->data_dir = copy;
	return 0;
}

/* Append url; with replace set, the list is emptied first (on success). */
static int listen_put(struct config *c, const char *url, int replace)
{
	char *copy;

	if (!url)
		return EINVAL;
	if (!replace && c->n_listen >= CONFIG_MAX_LISTEN)
		return E2BIG;
	copy = strdup(url);
	if (!copy)
		return ENOMEM;
	if (replace)
		free_listen(c);
	c->listen[c->n_listen++] = copy;
	return 0;
}

/*
 * The struct keeps no "still the default" flag, so the default list is
 * recognised by its content: one entry equal to DEFAULT_LISTEN.
 */
static int listen_is_default(const struct config *c)
{
	return c->n_listen == 1 && c->listen[0] &&
	       strcmp(c->listen[0], DEFAULT_LISTEN) == 0;
}

int config_add_listen(struct config *c, const char *url)
{
	return listen_put(c, url, listen_is_default(c));
}

static int listen_scheme_ok(const char *url)
{
	size_t i;

	for (i = 0; i < ARRAY_LEN(listen_schemes); i++) {
		size_t n = strlen(listen_schemes[i]);

		if (strncmp(url, listen_schemes[i], n) == 0 && url[n] != '\0')
			return 1;
	}
	return 0;
}

/* tcp://\*:PORT, tcp://0.0.0.0:PORT or tcp://[::]:PORT, also with an
 * interface prefix (tcp://eth0;...) left out: those bind everywhere. */
static int listen_is_wildcard(const char *url)
{
	if (strncmp(url, "tcp://", 6) != 0 && strncmp(url, "ws://", 5) != 0)
		return 0;
	const char *host = strstr(url, "://") + 3;
	const char *semi = strchr(host, ';');
	if (semi)
		host = semi + 1;
	return strncmp(host, "*:", 2) == 0 ||
	       strncmp(host, "0.0.0.0:", 8) == 0 ||
	       strncmp(host, "[::]:", 5) == 0;
}

/* ---- [http] endpoints ------------------------------------------------- */

int config_split_hostport(const char *hostport, char *host, size_t hostlen,
			  unsigned *port)
{
	const char *colon, *h = hostport;
	size_t n;
	if (hostport[0] == '[') {
		const char *end = strchr(hostport, ']');
		if (!end || end[1] != ':')
			return EINVAL;
		h = hostport + 1;
		n = (size_t)(end - h);
		colon = end + 1;
	} else {
		colon = strrchr(hostport, ':');
		if (!colon || memchr(hostport, ':', (size_t)(colon - hostport)))
			return EINVAL;
		n = (size_t)(colon - hostport);
	}
	if (n == 0 || n >= hostlen)
		return EINVAL;
	uint64_t p = 0;
	const char *d = colon + 1;
	if (*d == '\0')
		return EINVAL;
	for (; *d; d++) {
		if (*d < '0' || *d > '9' || p > 65535)
			return EINVAL;
		p = p * 10 + (uint64_t)(*d - '0');
	}
	if (p == 0 || p > 65535)
		return EINVAL;
	memcpy(host, h, n);
	host[n] = '\0';
	*port = (unsigned)p;
	return 0;
}

static void free_http_listen(struct config *c)
{
	for (size_t i = 0; i < c->n_http_listen; i++) {
		free(c->http_listen[i]);
		c->http_listen[i] = NULL;
	}
	c->n_http_listen = 0;
}

/* replace: empty the list first (the first listen= of a file or flags) */
static int http_listen_put(struct config *c, const char *v, int replace)
{
	char host[256];
	unsigned port;
	if (replace)
		free_http_listen(c);
	c->http_listen_set = 1;
	if (strcmp(v, "off") == 0) {
		free_http_listen(c);
		return 0;
	}
	if (config_split_hostport(v, host, sizeof host, &port))
		return EINVAL;
	if (c->n_http_listen >= CONFIG_MAX_LISTEN)
		return E2BIG;
	char *copy = strdup(v);
	if (!copy)
		return ENOMEM;
	c->http_listen[c->n_http_listen++] = copy;
	return 0;
}

int config_add_http_listen(struct config *c, const char *hostport, int first)
{
	return http_listen_put(c, hostport, first);
}

void config_resolve_http(struct config *c)
{
	if (c->http_listen_set || !listen_is_default(c))
		return;
	c->http_listen[0] = strdup(CONFIG_HTTP_DEFAULT);
	c->n_http_listen = c->http_listen[0] ? 1 : 0;
	c->http_listen_set = 1;
}

static int http_is_wildcard(const char *hostport)
{
	return strncmp(hostport, "0.0.0.0:", 8) == 0 ||
	       strncmp(hostport, "[::]:", 5) == 0 ||
	       strncmp(hostport, "*:", 2) == 0;
}

/* ---- the INI file ------------------------------------------------------ */

struct load {
	struct config *c;
	FILE *f;
	int lineno;	      /* line last handed to inih */
	int listen_seen;      /* a listen= of this file was applied already */
	int http_listen_seen; /* the same for [http] listen= */
	int err;	      /* first error (errno value), 0 if none */
	int err_line;
	char msg[256]; /* "what", without the FILE:LINE: prefix */
	char *buf;     /* getline buffer */
	size_t cap;
};

static void load_fail(struct load *ld, int err, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static void load_fail(struct load *ld, int err, const char *fmt, ...)
{
	va_list ap;

	if (ld->err)
		return;
	ld->err = err;
	ld->err_line = ld->lineno;
	va_start(ap, fmt);
	vsnprintf(ld->msg, sizeof(ld->msg), fmt, ap);
	va_end(ap);
}

/* inih line reader: fgets semantics, one whole line per call, counted. */
static char *read_line(char *str, int num, void *stream)
{
	struct load *ld = stream;
	ssize_t n;

	if (ld->err)
		return NULL; /* stop at the first error */
	n = getline(&ld->buf, &ld->cap, ld->f);
	if (n < 0)
		return NULL;
	ld->lineno++;
	if (memchr(ld->buf, '\0', (size_t)n)) {
		load_fail(ld, EINVAL, "NUL byte in line");
		return NULL;
	}
	if (n >= num) {
		load_fail(ld, EINVAL, "line too long (at most %d bytes)",
			  num - 2);
		return NULL;
	}
	memcpy(str, ld->buf, (size_t)n + 1);
	return str;
}

static int parse_bool(const char *v, int *out)
{
	static const char *const yes[] = { "true", "yes", "on", "1" };
	static const char *const no[] = { "false", "no", "off", "0" };
	size_t i;

	for (i = 0; i < ARRAY_LEN(yes); i++) {
		if (strcmp(v, yes[i]) == 0) {
			*out = 1;
			return 0;
		}
		if (strcmp(v, no[i]) == 0) {
			*out = 0;
			return 0;
		}
	}
	return EINVAL;
}

/* Plain decimal count: digits only, no sign, no suffix. */
static int parse_count(const char *v, uint64_t *out)
{
	uint64_t n = 0;

	if (*v == '\0')
		return EINVAL;
	for (; *v; v++) {
		if (*v < '0' || *v > '9')
			return EINVAL;
		if (n > (UINT64_MAX - (uint64_t)(*v - '0')) / 10)
			return ERANGE;
		n = n * 10 + (uint64_t)(*v - '0');
	}
	*out = n;
	return 0;
}

/* Apply one key; 0, EINVAL (bad value), E2BIG (listen list) or ENOMEM. */
static int apply(struct load *ld, const struct key *k, const char *value)
{
	char *field = (char *)ld->c + k->offset;
	uint64_t n = 0;
	int b, rc;

	switch (k->kind) {
	case K_STRING: {
		char *copy;

		if (*value == '\0')
			return EINVAL;
		copy = strdup(value);
		if (!copy)
			return ENOMEM;
		free(*(char **)(void *)field);
		*(char **)(void *)field = copy;
		return 0;
	}
	case K_LISTEN:
		if (!listen_scheme_ok(value))
			return EINVAL;
		rc = listen_put(ld->c, value, !ld->listen_seen);
		if (rc == 0)
			ld->listen_seen = 1;
		return rc;
	case K_HTTP:
		rc = http_listen_put(ld->c, value, !ld->http_listen_seen);
		if (rc == 0)
			ld->http_listen_seen = 1;
		return rc;
	case K_LOGFMT:
		return config_parse_log_format(value, (int *)(void *)field);
	case K_BOOL:
		if (parse_bool(value, &b))
			return EINVAL;
		*(int *)(void *)field = b;
		return 0;
	case K_SIZE64:
	case K_SIZE32:
		rc = parse_size_bytes(value, &n);
		break;
	case K_MS64:
	case K_MS32:
		rc = parse_duration_ms(value, &n);
		break;
	case K_COUNT32:
		rc = parse_count(value, &n);
		break;
	default:
		return EINVAL;
	}
	if (rc)
		return EINVAL;
	if (k->kind == K_SIZE64 || k->kind == K_MS64) {
		*(uint64_t *)(void *)field = n;
	} else {
		if (n > UINT32_MAX)
			return EINVAL;
		*(uint32_t *)(void *)field = (uint32_t)n;
	}
	return 0;
}

/* ---- [key NAME] sections ------------------------------------------------ */

static struct config_key *key_section(struct load *ld, const char *id)
{
	struct config *c = ld->c;
	for (size_t i = 0; i < c->n_keys; i++)
		if (strcmp(c->keys[i].id, id) == 0)
			return &c->keys[i];
	if (c->n_keys >= CONFIG_MAX_KEYS) {
		load_fail(ld, EINVAL, "too many [key] sections (at most %d)",
			  CONFIG_MAX_KEYS);
		return NULL;
	}
	struct config_key *k = &c->keys[c->n_keys];
	k->id = strdup(id);
	if (!k->id) {
		load_fail(ld, ENOMEM, "out of memory");
		return NULL;
	}
	c->n_keys++;
	return k;
}

static int parse_roles(const char *v, unsigned *out)
{
	char buf[128];
	unsigned roles = 0;
	if (strlen(v) >= sizeof buf)
		return EINVAL;
	strcpy(buf, v);
	for (char *save, *tok = strtok_r(buf, ", ", &save); tok;
	     tok = strtok_r(NULL, ", ", &save)) {
		if (strcmp(tok, "producer") == 0)
			roles |= ROLE_PRODUCER;
		else if (strcmp(tok, "consumer") == 0)
			roles |= ROLE_CONSUMER;
		else if (strcmp(tok, "operator") == 0)
			roles |= ROLE_OPERATOR;
		else if (strcmp(tok, "monitor") == 0)
			roles |= ROLE_MONITOR;
		else
			return EINVAL;
	}
	*out = roles;
	return roles ? 0 : EINVAL;
}

static int parse_patterns(const char *v, char **list, size_t *n)
{
	char buf[2048];
	if (strlen(v) >= sizeof buf)
		return EINVAL;
	strcpy(buf, v);
	for (char *save, *tok = strtok_r(buf, ", ", &save); tok;
	     tok = strtok_r(NULL, ", ", &save)) {
		if (*n >= CONFIG_MAX_PATTERNS)
			return E2BIG;
		list[*n] = strdup(tok);
		if (!list[*n])
			return ENOMEM;
		(*n)++;
	}
	return 0;
}

static int parse_secret_hex(const char *hex, uint8_t *out)
{
	size_t len = 0;
	const char *end;
	if (strlen(hex) != 2 * CONFIG_SECRET_BYTES)
		return EINVAL;
	if (sodium_hex2bin(out, CONFIG_SECRET_BYTES, hex, strlen(hex), NULL,
			   &len, &end) ||
	    len != CONFIG_SECRET_BYTES || *end)
		return EINVAL;
	return 0;
}

/* A private file (secret_file, token_file): readable by its owner only;
 * its text, without a trailing newline, into buf (len bytes). 0, or EINVAL
 * with the reason given to the loader; what is read is the caller's to
 * wipe. */
static int read_private_file(struct load *ld, const char *setting,
			     const char *path, char *buf, size_t len)
{
	struct stat sb;
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		load_fail(ld, EINVAL, "%s %s: %s", setting, path,
			  strerror(errno));
		return EINVAL;
	}
	if (fstat(fd, &sb) || (sb.st_mode & 077)) {
		close(fd);
		load_fail(ld, EINVAL,
			  "%s %s can be read by others (chmod 600 it)", setting,
			  path);
		return EINVAL;
	}
	ssize_t n = read(fd, buf, len - 1);
	close(fd);
	if (n < 0)
		n = 0;
	buf[n] = '\0';
	while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r'))
		buf[--n] = '\0';
	return 0;
}

/* A secret file holds the 64 hex digits (and maybe a newline). */
static int read_secret_file(struct load *ld, const char *path, uint8_t *out)
{
	char buf[2 * CONFIG_SECRET_BYTES + 4];
	int rc = read_private_file(ld, "secret_file", path, buf, sizeof buf);
	if (rc)
		return rc;
	rc = parse_secret_hex(buf, out);
	sodium_memzero(buf, sizeof buf);
	if (rc)
		load_fail(ld, EINVAL, "secret_file %s must hold %d hex digits",
			  path, 2 * CONFIG_SECRET_BYTES);
	return rc;
}

/* A bearer token: 16-512 visible ASCII characters (no spaces). Only its
 * hash is kept. */
static int set_token(struct config_key *k, const char *tok)
{
	size_t n = strlen(tok);
	if (n < 16 || n > 512)
		return EINVAL;
	for (size_t i = 0; i < n; i++)
		if (tok[i] <= ' ' || tok[i] > '~')
			return EINVAL;
	if (sodium_init() < 0)
		return ENOMEM;
	crypto_generichash(k->token_hash, sizeof k->token_hash,
			   (const unsigned char *)tok, n, NULL, 0);
	if (!k->has_secret) /* no native signing with this key */
		randombytes_buf(k->secret, sizeof k->secret);
	k->has_token = 1;
	return 0;
}

/* A token file holds the token (and maybe a newline). */
static int read_token_file(struct load *ld, const char *path,
			   struct config_key *k)
{
	char buf[520];
	int rc = read_private_file(ld, "token_file", path, buf, sizeof buf);
	if (rc)
		return rc;
	rc = set_token(k, buf);
	sodium_memzero(buf, sizeof buf);
	if (rc)
		load_fail(ld, EINVAL,
			  "token_file %s must hold one token of 16-512 "
			  "visible characters",
			  path);
	return rc;
}

/* Values are never echoed back in errors: one of them may be a secret. */
static void on_key_section(struct load *ld, const char *id, const char *name,
			   const char *value)
{
	struct config_key *k = key_section(ld, id);
	int rc = 0;
	if (!k)
		return;
	if (strcmp(name, "role") == 0 || strcmp(name, "roles") == 0) {
		rc = parse_roles(value, &k->roles);
		if (rc)
			load_fail(ld, EINVAL,
				  "[key %s] role must be producer, "
				  "consumer, operator and/or monitor",
				  id);
	} else if (strcmp(name, "secret") == 0) {
		rc = parse_secret_hex(value, k->secret);
		if (rc)
			load_fail(ld, EINVAL,
				  "[key %s] secret must be %d hex "
				  "digits",
				  id, 2 * CONFIG_SECRET_BYTES);
		k->has_secret = rc == 0;
	} else if (strcmp(name, "secret_file") == 0) {
		rc = read_secret_file(ld, value, k->secret);
		k->has_secret = rc == 0;
	} else if (strcmp(name, "token") == 0) {
		rc = set_token(k, value);
		if (rc)
			load_fail(ld, EINVAL,
				  "[key %s] token must be 16-512 visible "
				  "characters",
				  id);
	} else if (strcmp(name, "token_file") == 0) {
		rc = read_token_file(ld, value, k);
	} else if (strcmp(name, "topics") == 0) {
		rc = parse_patterns(value, k->topics, &k->n_topics);
	} else if (strcmp(name, "subscriptions") == 0) {
		rc = parse_patterns(value, k->subs, &k->n_subs);
	} else if (strcmp(name, "push_urls") == 0) {
		rc = parse_patterns(value, k->push_urls, &k->n_push_urls);
	} else {
		load_fail(ld, EINVAL, "unknown key '%s' in [key %s]", name, id);
		return;
	}
	if (rc == ENOMEM)
		load_fail(ld, ENOMEM, "out of memory");
	else if (rc)
		load_fail(ld, EINVAL, "bad value for '%s' in [key %s]", name,
			  id);
}

static int on_key(void *user, const char *section, const char *name,
		  const char *value)
{
	struct load *ld = user;
	size_t i;
	int rc;

	if (ld->err)
		return 0;
	if (strncmp(section, "key ", 4) == 0 && section[4]) {
		on_key_section(ld, section + 4, name, value);
		return ld->err == 0;
	}
	for (i = 0; i < ARRAY_LEN(keys); i++) {
		if (strcmp(section, keys[i].section) == 0 &&
		    strcmp(name, keys[i].name) == 0)
			break;
	}
	if (i == ARRAY_LEN(keys)) {
		load_fail(ld, EINVAL, "unknown key '%s' in [%s]", name,
			  section);
		return 0;
	}
	rc = apply(ld, &keys[i], value);
	if (rc == E2BIG)
		load_fail(ld, EINVAL, "too many listen URLs (at most %d)",
			  CONFIG_MAX_LISTEN);
	else if (rc == ENOMEM)
		load_fail(ld, ENOMEM, "out of memory");
	else if (rc)
		load_fail(ld, EINVAL, "bad value for '%s': '%s'", name, value);
	return rc == 0;
}

int config_load_file(struct config *c, const char *path, char *err,
		     size_t errlen)
{
	struct load ld;
	int line, rc;

	if (!c || !path) {
		set_err(err, errlen, "no config file given");
		return EINVAL;
	}
	memset(&ld, 0, sizeof(ld));
	ld.c = c;
	ld.f = fopen(path, "r");
	if (!ld.f) {
		rc = errno ? errno : EIO;
		set_err(err, errlen, "%s: %s", path, strerror(rc));
		return rc;
	}
	line = ini_parse_stream(read_line, &ld, on_key, &ld);
	if (!ld.err && ferror(ld.f)) {
		rc = errno ? errno : EIO;
		set_err(err, errlen, "%s:%d: read error: %s", path,
			ld.lineno + 1, strerror(rc));
		free(ld.buf);
		fclose(ld.f);
		return rc;
	}
	free(ld.buf);
	fclose(ld.f);

	if (line > 0 && (!ld.err || line < ld.err_line)) {
		/* inih's own complaint: no '=', unclosed '[', ... */
		set_err(err, errlen,
			"%s:%d: syntax error (expected [section] or key = value)",
			path, line);
		return EINVAL;
	}
	if (line < 0) {
		/* only with INI_USE_STACK=0 builds: inih's malloc failed */
		set_err(err, errlen, "%s: out of memory", path);
		return ENOMEM;
	}
	if (ld.err) {
		set_err(err, errlen, "%s:%d: %s", path, ld.err_line, ld.msg);
		return ld.err;
	}
	return 0;
}

int config_validate(const struct config *c, char *err, size_t errlen)
{
#define LIMIT(name, field)                           \
	{                                            \
		name, offsetof(struct config, field) \
	}
	static const struct {
		const char *name;
		size_t offset;
	} limits[] = {
		LIMIT("max_payload", max_payload_bytes),
		LIMIT("max_request", max_request_bytes),
		LIMIT("max_batch", max_batch),
		LIMIT("max_subscriptions", max_subscriptions),
		LIMIT("max_held_fetches", max_held_fetches),
		LIMIT("max_wait", max_wait_ms),
		LIMIT("max_name", max_name_bytes),
	};
#undef LIMIT
	size_t i;

	if (!c->data_dir || c->data_dir[0] == '\0') {
		set_err(err, errlen, "data_dir is empty");
		return EINVAL;
	}
	if (c->n_listen == 0) {
		set_err(err, errlen, "no listen URL");
		return EINVAL;
	}
	for (i = 0; i < c->n_listen; i++) {
		if (!c->listen[i] || !listen_scheme_ok(c->listen[i])) {
			set_err(err, errlen,
				"listen URL '%s' must start with ipc://, tcp:// or inproc://",
				c->listen[i] ? c->listen[i] : "");
			return EINVAL;
		}
	}
	if (c->map_size_bytes == 0) {
		set_err(err, errlen, "map_size must be greater than 0");
		return EINVAL;
	}
	/* topic + '\0' + subscription must fit one LMDB key (511 bytes) */
	if (c->max_name_bytes > 240) {
		set_err(err, errlen, "max_name must be at most 240");
		return EINVAL;
	}
	for (i = 0; i < c->n_keys; i++) {
		const struct config_key *k = &c->keys[i];
		if (!(k->has_secret || k->has_token) || !k->roles) {
			set_err(err, errlen,
				"[key %s] needs a role and a secret "
				"(or secret_file), or an HTTP token (or "
				"token_file)",
				k->id);
			return EINVAL;
		}
		if ((k->roles & ROLE_PRODUCER) && k->n_topics == 0) {
			set_err(err, errlen,
				"[key %s] is a producer: list its "
				"topics (topics = pattern, ...; * for all)",
				k->id);
			return EINVAL;
		}
		if ((k->roles & ROLE_CONSUMER) && k->n_subs == 0) {
			set_err(err, errlen,
				"[key %s] is a consumer: list its "
				"subscriptions (subscriptions = pattern, ...)",
				k->id);
			return EINVAL;
		}
	}
	for (i = 0; i < c->n_listen; i++) {
		if (!c->allow_wildcard && listen_is_wildcard(c->listen[i])) {
			set_err(err, errlen,
				"listen URL '%s' binds every "
				"interface: give an address, or set "
				"allow_wildcard = true in [broker]",
				c->listen[i]);
			return EINVAL;
		}
	}
	for (i = 0; i < c->n_http_listen; i++) {
		char host[256];
		unsigned port;
		if (config_split_hostport(c->http_listen[i], host, sizeof host,
					  &port)) {
			set_err(err, errlen,
				"[http] listen '%s' must be HOST:PORT, "
				"[V6]:PORT or off",
				c->http_listen[i]);
			return EINVAL;
		}
		if (!c->allow_wildcard && http_is_wildcard(c->http_listen[i])) {
			set_err(err, errlen,
				"[http] listen '%s' binds every interface: "
				"give an address, or set allow_wildcard = "
				"true in [broker]",
				c->http_listen[i]);
			return EINVAL;
		}
	}
	if (!c->http_tls_cert != !c->http_tls_key) {
		set_err(err, errlen, "[http] tls_cert and tls_key go together");
		return EINVAL;
	}
	if (c->http_max_connections == 0 ||
	    c->http_max_connections_per_ip == 0 || c->http_timeout_ms < 1000) {
		set_err(err, errlen,
			"[http] max_connections and max_connections_per_ip "
			"must be greater than 0, timeout at least 1s");
		return EINVAL;
	}
	if (c->storage_headroom_bytes &&
	    c->storage_headroom_bytes > c->map_size_bytes / 2) {
		set_err(err, errlen,
			"storage_headroom (%llu bytes) must be at most half of "
			"map_size (%llu bytes)",
			(unsigned long long)c->storage_headroom_bytes,
			(unsigned long long)c->map_size_bytes);
		return EINVAL;
	}
	for (i = 0; i < ARRAY_LEN(limits); i++) {
		const char *base = (const char *)c;
		uint32_t v;

		memcpy(&v, base + limits[i].offset, sizeof(v));
		if (v == 0) {
			set_err(err, errlen, "%s must be greater than 0",
				limits[i].name);
			return EINVAL;
		}
	}
	if (c->max_payload_bytes > c->max_request_bytes) {
		set_err(err, errlen,
			"max_payload (%u bytes) is larger than max_request (%u bytes)",
			c->max_payload_bytes, c->max_request_bytes);
		return EINVAL;
	}
	if (c->max_attempts < 1) {
		set_err(err, errlen, "max_attempts must be at least 1");
		return EINVAL;
	}
	if (c->ack_deadline_ms < 1) {
		set_err(err, errlen, "ack_deadline must be at least 1ms");
		return EINVAL;
	}
	if (c->backoff_min_ms > c->backoff_max_ms) {
		set_err(err, errlen,
			"backoff_min (%u ms) is greater than backoff_max (%u ms)",
			c->backoff_min_ms, c->backoff_max_ms);
		return EINVAL;
	}
	return 0;
}
