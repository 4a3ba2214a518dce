/*
 * config.h — handoffd's settings: built-in defaults, then the optional INI
 * file (--config), then command-line flags, each overriding the one before.
 *
 * Ownership: a struct config owns every string in it; config_free()
 * releases them. Not thread-safe; the broker fills it once at start.
 */
#ifndef HANDOFF_BROKER_CONFIG_H
#define HANDOFF_BROKER_CONFIG_H

#include <stddef.h>
#include <stdint.h>

#define CONFIG_MAX_LISTEN   16
#define CONFIG_MAX_KEYS	    64
#define CONFIG_MAX_PATTERNS 32
#define CONFIG_SECRET_BYTES 32
#define CONFIG_TOKEN_HASH   32 /* BLAKE2b of a bearer token */
#define CONFIG_HTTP_DEFAULT "127.0.0.1:7451"
/* [broker] log_format: key=value lines (the default) or JSON lines */
#define CONFIG_LOG_KV	0
#define CONFIG_LOG_JSON 1

enum config_role {
	ROLE_PRODUCER = 1, /* publish to its topics */
	ROLE_CONSUMER = 2, /* fetch, ack, nack on its subscriptions */
	/* subscriptions, dead letters, trace, stats, audit */
	ROLE_OPERATOR = 4,
	/* stats and the subscription list only (GET /metrics): what a
	 * metrics scraper needs, without an operator's power to purge */
	ROLE_MONITOR = 8,
};

/* One [key NAME] section: who may do what, proven with the secret. */
struct config_key {
	char *id;
	unsigned roles; /* enum config_role bits */
	uint8_t secret[CONFIG_SECRET_BYTES];
	int has_secret;
	/* HTTP bearer token (token = / token_file =): only its hash is kept,
	 * compared in constant time. A key with a token and no secret gets a
	 * random secret nobody knows, so it cannot sign native requests. */
	uint8_t token_hash[CONFIG_TOKEN_HASH];
	int has_token;
	char *topics[CONFIG_MAX_PATTERNS]; /* fnmatch patterns (producer) */
	size_t n_topics;
	char *subs[CONFIG_MAX_PATTERNS]; /* fnmatch patterns (consumer) */
	size_t n_subs;
	/* push_urls = PATTERN ...: the URLs (fnmatch) this key may create
	 * push subscriptions to; none: no push subscriptions */
	char *push_urls[CONFIG_MAX_PATTERNS];
	size_t n_push_urls;
};

struct config {
	char *data_dir; /* default "./handoff-data" */
	/* default { "tcp://127.0.0.1:7450" } */
	char *listen[CONFIG_MAX_LISTEN];
	size_t n_listen;
	uint64_t map_size_bytes; /* LMDB map; default 1 GiB */
	/* where backup requests write (backup.h): BACKUP_DIR/NAME/data.mdb;
	 * NULL (default): backups are refused */
	char *backup_dir;

	/* limits: going over one gets LIMIT_EXCEEDED */
	uint32_t max_payload_bytes; /* default 1 MiB */
	uint32_t max_request_bytes; /* NN_RCVMAXSIZE; default 16 MiB */
	/* events per publish, items per ack/nack/fetch; default 1000 */
	uint32_t max_batch;
	uint32_t max_subscriptions; /* default 1000 */
	uint32_t max_held_fetches;  /* long polls held at once; default 1024 */
	uint32_t max_wait_ms;	    /* longest long poll; default 60000 */
	/* topic / subscription name; default 200, at most 240 */
	uint32_t max_name_bytes;
	uint32_t max_backlog; /* deliveries owed per subscription (ready,
					 * delayed, leased); 0 = no limit (default) */
	uint32_t max_leases_per_consumer; /* open leases one consumer may hold;
					 * 0 = no limit; default 10000 */
	uint64_t storage_headroom_bytes;  /* space kept free for acks, nacks and
					 * purges; publishes are refused below it;
					 * 0 = map_size/64 within [1 MiB, 64 MiB] */

	uint64_t dedup_window_ms; /* idempotency records kept; default 24 h */
	uint64_t history_ms; /* trace records kept after done; default 7 d */

	/* subscription policy defaults */
	uint32_t max_attempts;	  /* default 5 */
	uint32_t ack_deadline_ms; /* default 30000 */
	uint32_t backoff_min_ms;  /* default 1000 */
	uint32_t backoff_max_ms;  /* default 60000 */

	int log_debug;	/* 1: also log debug lines */
	int log_format; /* CONFIG_LOG_KV (default) or CONFIG_LOG_JSON */
	uint32_t liveness_timeout_ms; /* store loop idle longer: not live
				       * (health.h); default 15 s */
	int allow_wildcard;	      /* 1: tcp://\* and 0.0.0.0 may be bound */

	/* access control: on when any key is configured */
	struct config_key keys[CONFIG_MAX_KEYS];
	size_t n_keys;
	uint64_t request_window_ms; /* signed requests older are stale; 60 s */

	/* [http]: the JSON API (broker/http.h). listen = HOST:PORT, repeatable;
	 * "off" empties it. Unset (http_listen_set 0) it is CONFIG_HTTP_DEFAULT
	 * when the native endpoints are the default too, else off
	 * (config_resolve_http). */
	char *http_listen[CONFIG_MAX_LISTEN];
	size_t n_http_listen;
	int http_listen_set;
	char *http_tls_cert; /* PEM files: both or neither (then plain HTTP) */
	char *http_tls_key;
	uint32_t http_max_connections;	      /* all endpoints; default 1000 */
	uint32_t http_max_connections_per_ip; /* default 128 */
	uint32_t http_timeout_ms; /* idle or slow connection; default 30 s */

	/* [push]: push delivery (broker/push.h) */
	int push_deny_private; /* 1: never connect to private, loopback or
				* link-local addresses; default 0 */
};

/* Fill c with the defaults above. Returns 0, or ENOMEM. */
int config_init(struct config *c);
/*
 * Read an INI file into c (keys override). Sections and keys: see
 * README "Configuration". Durations take ms/s/m/h/d suffixes, sizes
 * K/M/G. listen= may repeat; the first listen= in a file replaces the
 * default list. On error returns EINVAL (or errno of the open) and writes
 * "FILE:LINE: what" into err (errlen bytes).
 */
int config_load_file(struct config *c, const char *path, char *err,
		     size_t errlen);
/* Replace the data dir / append a listen URL (the first call replaces the
 * default list). Return 0, ENOMEM or E2BIG (too many listen URLs). */
int config_set_data_dir(struct config *c, const char *dir);
int config_add_listen(struct config *c, const char *url);
/* [http] listen from a flag: "off" turns HTTP off, HOST:PORT adds an
 * endpoint; first (the first flag) replaces the file's list. 0, EINVAL,
 * ENOMEM or E2BIG. */
int config_add_http_listen(struct config *c, const char *hostport, int first);
/* Apply the HTTP default endpoint rule (see http_listen above); call once
 * after the file and the flags. */
void config_resolve_http(struct config *c);
/* Split HOST:PORT ([V6]:PORT) into host (without brackets) and port. 0 or
 * EINVAL. */
int config_split_hostport(const char *hostport, char *host, size_t hostlen,
			  unsigned *port);
/* Check cross-field rules (min <= max, non-zero limits). 0 or EINVAL with
 * the reason in err. */
int config_validate(const struct config *c, char *err, size_t errlen);
/* "kv" (or "text") or "json" into *format; 0 or EINVAL. */
int config_parse_log_format(const char *value, int *format);
void config_free(struct config *c);

#endif
