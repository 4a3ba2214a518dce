/*
 * wire_util.c — see wire_util.h.
 */
#include "wire_util.h"

#include "request_mac.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <nanomsg/nn.h>
#include <nanomsg/reqrep.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* ---- broker on tcp ------------------------------------------------------ */

int wire_free_port(void)
{
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	assert_true(fd >= 0);
	struct sockaddr_in a = { .sin_family = AF_INET,
				 .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
	socklen_t len = sizeof a;
	assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &len), 0);
	close(fd);
	return ntohs(a.sin_port);
}

broker *wire_broker_start_tcp(const char *config_ini, int *port)
{
	char url[64];
	int p = wire_free_port();
	snprintf(url, sizeof url, "tcp://127.0.0.1:%d", p);
	broker *b = broker_prepare_listen(config_ini, url);
	broker_spawn(b);
	if (port)
		*port = p;
	return b;
}

bool wire_broker_alive(broker *b)
{
	if (b->pid <= 0)
		return false;
	if (broker_proc_alive(b))
		return true;
	if (WIFSIGNALED(b->status))
		fprintf(stderr, "wire: handoffd died of signal %d\n",
			WTERMSIG(b->status));
	else
		fprintf(stderr, "wire: handoffd exited with status %d\n",
			WEXITSTATUS(b->status));
	return false;
}

void wire_assert_broker_ok(broker *b)
{
	if (!wire_broker_alive(b)) {
		broker_dump_log(b);
		fail_msg("handoffd is not running");
	}
	static const char *const bad[] = {
		"event=store_unusable",
		"AddressSanitizer",
		"LeakSanitizer",
		"runtime error:",
		"Assertion failed",
		"Assertion `",
		"Aborted",
		"event=receive_failed",
		"event=poll_failed",
	};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
		if (broker_log_contains(b, bad[i])) {
			broker_dump_log(b);
			fail_msg("broker log contains '%s'", bad[i]);
		}
}

/* ---- /proc -------------------------------------------------------------- */

long wire_proc_kb(pid_t pid, const char *field)
{
	char path[64], line[256];
	snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
	FILE *f = fopen(path, "r");
	if (!f)
		return -1;
	size_t n = strlen(field);
	long v = -1;
	while (fgets(line, sizeof line, f))
		if (strncmp(line, field, n) == 0 && line[n] == ':') {
			v = strtol(line + n + 1, NULL, 10);
			break;
		}
	fclose(f);
	return v;
}

uint64_t wire_cpu_ms(pid_t pid)
{
	char path[64], buf[2048];
	snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
	FILE *f = fopen(path, "r");
	assert_non_null(f);
	size_t n = fread(buf, 1, sizeof buf - 1, f);
	fclose(f);
	buf[n] = '\0';
	/* fields after the ")" that ends comm: state is field 3; utime 14,
	 * stime 15 */
	char *p = strrchr(buf, ')');
	assert_non_null(p);
	p += 2;
	unsigned long long ut = 0, st = 0;
	int field = 3;
	char *save = NULL;
	for (char *tok = strtok_r(p, " ", &save); tok;
	     tok = strtok_r(NULL, " ", &save), field++) {
		if (field == 14)
			ut = strtoull(tok, NULL, 10);
		if (field == 15) {
			st = strtoull(tok, NULL, 10);
			break;
		}
	}
	long hz = sysconf(_SC_CLK_TCK);
	return (ut + st) * 1000ull / (unsigned long long)(hz > 0 ? hz : 100);
}

int wire_proc_fds(pid_t pid)
{
	char path[64];
	snprintf(path, sizeof path, "/proc/%d/fd", (int)pid);
	DIR *d = opendir(path);
	if (!d)
		return -1;
	int n = 0;
	struct dirent *e;
	while ((e = readdir(d)))
		if (e->d_name[0] != '.')
			n++;
	closedir(d);
	return n;
}

long wire_proc_nofile(pid_t pid)
{
	char path[64], line[256];
	snprintf(path, sizeof path, "/proc/%d/limits", (int)pid);
	FILE *f = fopen(path, "r");
	if (!f)
		return -1;
	long v = -1;
	while (fgets(line, sizeof line, f))
		if (strncmp(line, "Max open files", 14) == 0) {
			char *p = line + 14;
			while (*p == ' ')
				p++;
			v = strncmp(p, "unlimited", 9) == 0 ?
				    1L << 30 :
				    strtol(p, NULL, 10);
			break;
		}
	fclose(f);
	return v;
}

long wire_raise_nofile(long want)
{
	struct rlimit rl;
	assert_int_equal(getrlimit(RLIMIT_NOFILE, &rl), 0);
	if (rl.rlim_cur != RLIM_INFINITY && (long)rl.rlim_cur < want) {
		rlim_t target = (rlim_t)want;
		if (rl.rlim_max != RLIM_INFINITY && rl.rlim_max < target)
			target = rl.rlim_max;
		rl.rlim_cur = target;
		setrlimit(RLIMIT_NOFILE, &rl);
		getrlimit(RLIMIT_NOFILE, &rl);
	}
	return rl.rlim_cur == RLIM_INFINITY ? 1L << 30 : (long)rl.rlim_cur;
}

long wire_rss_settle(pid_t pid, long limit_kb, uint32_t wait_ms)
{
	uint64_t until = it_now_ms() + wait_ms;
	long rss;
	for (;;) {
		rss = wire_proc_kb(pid, "VmRSS");
		if (rss <= limit_kb || it_now_ms() >= until)
			return rss;
		it_sleep_ms(100);
	}
}

/* ---- nanomsg REQ socket ------------------------------------------------- */

int wire_req_open(const char *url)
{
	int s = nn_socket(AF_SP, NN_REQ);
	assert_true(s >= 0);
	int unlimited = -1, resend = 3600 * 1000, sndtimeo = 5000;
	assert_int_equal(nn_setsockopt(s, NN_SOL_SOCKET, NN_RCVMAXSIZE,
				       &unlimited, sizeof unlimited),
			 0);
	assert_int_equal(nn_setsockopt(s, NN_REQ, NN_REQ_RESEND_IVL, &resend,
				       sizeof resend),
			 0);
	assert_int_equal(nn_setsockopt(s, NN_SOL_SOCKET, NN_SNDTIMEO, &sndtimeo,
				       sizeof sndtimeo),
			 0);
	assert_true(nn_connect(s, url) >= 0);
	return s;
}

void wire_req_close(int s)
{
	if (s >= 0)
		nn_close(s);
}

uint8_t *wire_pack(const WRequest *r, size_t *len)
{
	*len = handoff__wire__request__get_packed_size(r);
	uint8_t *buf = malloc(*len ? *len : 1);
	assert_non_null(buf);
	assert_int_equal(handoff__wire__request__pack(r, buf), *len);
	return buf;
}

WReply *wire_call_bytes(int s, const void *buf, size_t len, int timeout_ms)
{
	assert_int_equal(nn_setsockopt(s, NN_SOL_SOCKET, NN_RCVTIMEO,
				       &timeout_ms, sizeof timeout_ms),
			 0);
	int rc = nn_send(s, buf, len, 0);
	if (rc < 0)
		fail_msg("nn_send of %zu bytes: %s", len,
			 nn_strerror(nn_errno()));
	void *msg = NULL;
	int n = nn_recv(s, &msg, NN_MSG, 0);
	if (n < 0) {
		int e = nn_errno();
		if (e == ETIMEDOUT || e == EAGAIN)
			return NULL;
		fail_msg("nn_recv: %s", nn_strerror(e));
	}
	WReply *r = handoff__wire__reply__unpack(NULL, (size_t)n, msg);
	nn_freemsg(msg);
	if (!r)
		fail_msg("the broker's reply (%d bytes) does not decode", n);
	return r;
}

WReply *wire_call(int s, const WRequest *r, int timeout_ms)
{
	size_t len;
	uint8_t *buf = wire_pack(r, &len);
	WReply *rep = wire_call_bytes(s, buf, len, timeout_ms);
	free(buf);
	return rep;
}

void wire_reply_free(WReply *r)
{
	if (r)
		handoff__wire__reply__free_unpacked(r, NULL);
}

const char *wire_status_name(int status)
{
	static const char *const names[] = {
		"OK",
		"BAD_REQUEST",
		"UNSUPPORTED_VERSION",
		"NO_SUBSCRIPTIONS",
		"NOT_FOUND",
		"CONFLICT",
		"LEASE_LOST",
		"LIMIT_EXCEEDED",
		"STORAGE_FULL",
		"SHUTTING_DOWN",
		"INTERNAL",
	};
	if (status >= 0 && status < (int)(sizeof names / sizeof names[0]))
		return names[status];
	return "?";
}

WReply *wire_expect_bytes(int s, const void *buf, size_t len, int status,
			  const char *needle, const char *what, bool keep)
{
	WReply *r = wire_call_bytes(s, buf, len, 10000);
	if (!r)
		fail_msg("%s: no reply within 10 s (expected %s)", what,
			 wire_status_name(status));
	if ((int)r->status != status)
		fail_msg("%s: status %s \"%s\", expected %s", what,
			 wire_status_name((int)r->status),
			 r->message ? r->message : "",
			 wire_status_name(status));
	if (r->protocol_version != 1)
		fail_msg("%s: reply protocol_version %u", what,
			 r->protocol_version);
	if (needle && (!r->message || !strstr(r->message, needle)))
		fail_msg("%s: message \"%s\" lacks \"%s\"", what,
			 r->message ? r->message : "", needle);
	if (!keep) {
		wire_reply_free(r);
		return NULL;
	}
	return r;
}

WReply *wire_expect(int s, const WRequest *req, int status, const char *needle,
		    const char *what, bool keep)
{
	size_t len;
	uint8_t *buf = wire_pack(req, &len);
	WReply *r = wire_expect_bytes(s, buf, len, status, needle, what, keep);
	free(buf);
	return r;
}

void wire_expect_silence(int s, const void *buf, size_t len, int timeout_ms,
			 const char *what)
{
	WReply *r = wire_call_bytes(s, buf, len, timeout_ms);
	if (r) {
		int st = (int)r->status;
		char msg[256];
		snprintf(msg, sizeof msg, "%s", r->message ? r->message : "");
		wire_reply_free(r);
		fail_msg("%s: expected no reply, got %s \"%s\"", what,
			 wire_status_name(st), msg);
	}
}

WRequest wire_ping_request(void)
{
	static _Thread_local Handoff__Wire__PingRequest ping;
	handoff__wire__ping_request__init(&ping);
	WRequest r = HANDOFF__WIRE__REQUEST__INIT;
	r.protocol_version = 1;
	r.body_case = HANDOFF__WIRE__REQUEST__BODY_PING;
	r.ping = &ping;
	return r;
}

/* ---- control latency ------------------------------------------------------ */

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

static double now_ms_f(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1000.0 + (double)ts.tv_nsec / 1e6;
}

wire_latency wire_ping_latency(int s, int n)
{
	double v[64];
	assert_true(n > 0 && n <= 64);
	WRequest req = wire_ping_request();
	size_t len;
	uint8_t *buf = wire_pack(&req, &len);
	for (int i = 0; i < n; i++) {
		double t0 = now_ms_f();
		WReply *r = wire_call_bytes(s, buf, len, 10000);
		v[i] = now_ms_f() - t0;
		if (!r)
			fail_msg("control ping %d: no reply within 10 s", i);
		assert_int_equal(r->status, WST(OK));
		assert_int_equal(r->body_case, HANDOFF__WIRE__REPLY__BODY_PING);
		wire_reply_free(r);
	}
	free(buf);
	qsort(v, (size_t)n, sizeof v[0], cmp_double);
	wire_latency l = { .median_ms = v[n / 2], .max_ms = v[n - 1], .n = n };
	return l;
}

wire_latency wire_check_control(int s, const wire_latency *base, int n,
				const char *after)
{
	wire_latency l = wire_ping_latency(s, n);
	double bound = base->median_ms * 10.0;
	if (bound < 1000.0)
		bound = 1000.0;
	fprintf(stderr,
		"wire: control ping after %-34s median %7.2f ms "
		"(max %7.2f) vs baseline %6.2f ms; bound %6.0f ms\n",
		after, l.median_ms, l.max_ms, base->median_ms, bound);
	if (l.median_ms >= bound)
		fail_msg("control latency after %s: median %.1f ms >= %.0f ms",
			 after, l.median_ms, bound);
	return l;
}

/* ---- raw SP client -------------------------------------------------------- */

int wire_raw_tcp(int port, int rcvbuf)
{
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	assert_true(fd >= 0);
	if (rcvbuf > 0)
		setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf);
	struct sockaddr_in a = { .sin_family = AF_INET,
				 .sin_port = htons((uint16_t)port),
				 .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	int rc;
	while ((rc = connect(fd, (struct sockaddr *)&a, sizeof a)) < 0 &&
	       errno == EINTR)
		;
	if (rc < 0) {
		close(fd);
		return -1;
	}
	int one = 1;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
	return fd;
}

int wire_raw_ipc(const char *path)
{
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	assert_true(fd >= 0);
	struct sockaddr_un a = { .sun_family = AF_UNIX };
	assert_true(strlen(path) < sizeof a.sun_path);
	strcpy(a.sun_path, path);
	if (connect(fd, (struct sockaddr *)&a, sizeof a) < 0) {
		close(fd);
		return -1;
	}
	return fd;
}

void wire_sp_header(uint8_t out[8], uint16_t proto)
{
	memcpy(out, "\0SP\0", 4);
	out[4] = (uint8_t)(proto >> 8);
	out[5] = (uint8_t)proto;
	out[6] = 0;
	out[7] = 0;
}

bool wire_write_all(int fd, const void *p, size_t n, int timeout_ms)
{
	const uint8_t *c = p;
	uint64_t until = it_now_ms() + (uint64_t)timeout_ms;
	while (n) {
		ssize_t w = send(fd, c, n, MSG_NOSIGNAL | MSG_DONTWAIT);
		if (w > 0) {
			c += w;
			n -= (size_t)w;
			continue;
		}
		if (w < 0 && errno != EAGAIN && errno != EINTR)
			return false;
		uint64_t now = it_now_ms();
		if (now >= until)
			return false;
		struct pollfd pf = { fd, POLLOUT, 0 };
		poll(&pf, 1, (int)(until - now));
	}
	return true;
}

ssize_t wire_read_full(int fd, void *p, size_t n, int timeout_ms)
{
	uint8_t *c = p;
	size_t got = 0;
	uint64_t until = it_now_ms() + (uint64_t)timeout_ms;
	while (got < n) {
		uint64_t now = it_now_ms();
		if (now >= until)
			return -1;
		struct pollfd pf = { fd, POLLIN, 0 };
		int pr = poll(&pf, 1, (int)(until - now));
		if (pr < 0 && errno == EINTR)
			continue;
		if (pr <= 0)
			return -1;
		ssize_t r = recv(fd, c + got, n - got, MSG_DONTWAIT);
		if (r == 0)
			return 0;
		if (r < 0) {
			if (errno == EAGAIN || errno == EINTR)
				continue;
			return 0; /* reset counts as closed */
		}
		got += (size_t)r;
	}
	return (ssize_t)got;
}

bool wire_sp_handshake(int fd, uint16_t proto, int timeout_ms)
{
	uint8_t mine[8], theirs[8], want[8];
	wire_sp_header(mine, proto);
	wire_sp_header(want, WIRE_SP_REP);
	if (!wire_write_all(fd, mine, sizeof mine, timeout_ms))
		return false;
	if (wire_read_full(fd, theirs, sizeof theirs, timeout_ms) != 8)
		return false;
	return memcmp(theirs, want, 8) == 0;
}

static void put_be64(uint8_t *p, uint64_t v)
{
	for (int i = 7; i >= 0; i--, v >>= 8)
		p[i] = (uint8_t)v;
}

static uint64_t get_be64(const uint8_t *p)
{
	uint64_t v = 0;
	for (int i = 0; i < 8; i++)
		v = v << 8 | p[i];
	return v;
}

bool wire_sp_send_req(int fd, uint32_t id, const void *body, size_t len)
{
	uint8_t *frame = malloc(12 + len);
	assert_non_null(frame);
	put_be64(frame, (uint64_t)len + 4);
	id |= 0x80000000u;
	frame[8] = (uint8_t)(id >> 24);
	frame[9] = (uint8_t)(id >> 16);
	frame[10] = (uint8_t)(id >> 8);
	frame[11] = (uint8_t)id;
	if (len)
		memcpy(frame + 12, body, len);
	bool ok = wire_write_all(fd, frame, 12 + len, 10000);
	free(frame);
	return ok;
}

WReply *wire_sp_recv_reply(int fd, uint32_t *id, int timeout_ms)
{
	uint8_t hdr[12];
	if (wire_read_full(fd, hdr, sizeof hdr, timeout_ms) !=
	    (ssize_t)sizeof hdr)
		return NULL;
	uint64_t size = get_be64(hdr);
	assert_true(size >= 4 && size < (64u << 20));
	*id = (uint32_t)hdr[8] << 24 | (uint32_t)hdr[9] << 16 |
	      (uint32_t)hdr[10] << 8 | hdr[11];
	size_t n = (size_t)size - 4;
	uint8_t *body = malloc(n ? n : 1);
	assert_non_null(body);
	if (n && wire_read_full(fd, body, n, timeout_ms) != (ssize_t)n) {
		free(body);
		return NULL;
	}
	WReply *r = handoff__wire__reply__unpack(NULL, n, body);
	free(body);
	if (!r)
		fail_msg("raw reply of %zu bytes does not decode", n);
	return r;
}

bool wire_wait_closed(int fd, int timeout_ms)
{
	uint64_t until = it_now_ms() + (uint64_t)timeout_ms;
	uint8_t sink[4096];
	for (;;) {
		uint64_t now = it_now_ms();
		if (now >= until)
			return false;
		struct pollfd pf = { fd, POLLIN, 0 };
		int pr = poll(&pf, 1, (int)(until - now));
		if (pr < 0 && errno == EINTR)
			continue;
		if (pr <= 0)
			return false;
		ssize_t r = recv(fd, sink, sizeof sink, MSG_DONTWAIT);
		if (r == 0 || (r < 0 && errno != EAGAIN && errno != EINTR))
			return true;
	}
}

bool wire_still_open(int fd)
{
	struct pollfd pf = { fd, POLLIN | POLLRDHUP, 0 };
	if (poll(&pf, 1, 0) <= 0)
		return true;
	if (pf.revents & (POLLHUP | POLLERR | POLLRDHUP))
		return false;
	uint8_t b;
	ssize_t r = recv(fd, &b, 1, MSG_PEEK | MSG_DONTWAIT);
	return r > 0 || (r < 0 && errno == EAGAIN);
}

uint8_t *wire_sign(WRequest *req, const char *key, const char *hex,
		   uint64_t session, uint64_t seq, uint64_t ts_ms, size_t *len)
{
	unsigned char secret[32];
	uint8_t mac[REQUEST_MAC_BYTES];
	assert_int_equal(handoff_parse_secret(hex, secret), HANDOFF_OK);
	req->protocol_version = 1;
	req->auth = NULL;
	size_t clen = handoff__wire__request__get_packed_size(req);
	Handoff__Wire__Auth au = HANDOFF__WIRE__AUTH__INIT;
	au.key_id = (char *)key;
	au.session = session;
	au.seq = seq;
	au.timestamp_ms = ts_ms;
	au.mac.data = mac;
	au.mac.len = sizeof mac;
	WRequest only = HANDOFF__WIRE__REQUEST__INIT;
	only.auth = &au;
	size_t alen = handoff__wire__request__get_packed_size(&only);
	uint8_t *buf = malloc(clen + alen);
	assert_non_null(buf);
	handoff__wire__request__pack(req, buf);
	request_mac(secret, key, session, seq, ts_ms, buf, clen, mac);
	handoff__wire__request__pack(&only, buf + clen);
	*len = clen + alen;
	return buf;
}
