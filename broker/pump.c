/*
 * pump.c — the network thread and the mailbox; see pump.h.
 */
#include "pump.h"

#include <errno.h>
#include <poll.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/signalfd.h>
#include <time.h>
#include <unistd.h>

#include "log.h"

#define RECV_PER_WAKE	256
#define INBOX_MAX	4096
#define INBOX_MAX_BYTES (128u << 20)

int pump_init(struct pump *p, struct transport *tr, int sigfd)
{
	pthread_condattr_t ca;
	memset(p, 0, sizeof *p);
	p->tr = tr;
	p->sigfd = sigfd;
	p->max_in = INBOX_MAX;
	p->max_in_bytes = INBOX_MAX_BYTES;
	p->notify_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (p->notify_fd < 0)
		return errno;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&p->cond, &ca);
	pthread_condattr_destroy(&ca);
	pthread_mutex_init(&p->mu, NULL);
	return 0;
}

void pump_fini(struct pump *p)
{
	for (size_t i = 0; i < p->n_in; i++) {
		free(p->in[i].body);
		if (!pump_is_local(p, p->in[i].ctrl))
			transport_drop_ctrl(p->in[i].ctrl);
	}
	free(p->http_slots);
	free(p->push_slots);
	for (size_t i = 0; i < p->n_out; i++) {
		free(p->out[i].buf);
		transport_drop_ctrl(p->out[i].ctrl);
	}
	free(p->in);
	free(p->out);
	free(p->staged);
	if (p->notify_fd >= 0)
		close(p->notify_fd);
	pthread_mutex_destroy(&p->mu);
	pthread_cond_destroy(&p->cond);
}

static bool grow(void **arr, size_t *cap, size_t need, size_t elem)
{
	if (need <= *cap)
		return true;
	size_t cap2 = *cap ? *cap : 64;
	while (cap2 < need)
		cap2 *= 2;
	void *m = realloc(*arr, cap2 * elem);
	if (!m)
		return false;
	*arr = m;
	*cap = cap2;
	return true;
}

/* ---- HTTP requests ------------------------------------------------------ */

static struct pump_http_slot *new_slots(size_t slots)
{
	struct pump_http_slot *v = calloc(slots, sizeof *v);
	for (size_t i = 0; v && i < slots; i++)
		v[i].next_free = i + 1;
	return v;
}

int pump_enable_http(struct pump *p, size_t slots, pump_http_reply_fn *reply,
		     void *ctx)
{
	p->http_slots = new_slots(slots);
	if (!p->http_slots)
		return ENOMEM;
	p->n_http_slots = slots;
	p->http_free = 0;
	p->http_reply = reply;
	p->http_ctx = ctx;
	return 0;
}

int pump_enable_push(struct pump *p, size_t slots, pump_http_reply_fn *reply,
		     void *ctx)
{
	p->push_slots = new_slots(slots);
	if (!p->push_slots)
		return ENOMEM;
	p->n_push_slots = slots;
	p->push_free = 0;
	p->push_reply = reply;
	p->push_ctx = ctx;
	return 0;
}

bool pump_is_http(const struct pump *p, const void *ctrl)
{
	const struct pump_http_slot *s = ctrl;
	return p->http_slots && s >= p->http_slots &&
	       s < p->http_slots + p->n_http_slots;
}

static bool is_push(const struct pump *p, const void *ctrl)
{
	const struct pump_http_slot *s = ctrl;
	return p->push_slots && s >= p->push_slots &&
	       s < p->push_slots + p->n_push_slots;
}

bool pump_is_local(const struct pump *p, const void *ctrl)
{
	return pump_is_http(p, ctrl) || is_push(p, ctrl);
}

/* Post body for a local caller through one of slots (free list *free_i). */
static int post_local(struct pump *p, struct pump_http_slot *slots,
		      size_t n_slots, size_t *free_i, void *call,
		      const struct config_key *caller, void *body, size_t len)
{
	int rc = 0;
	pthread_mutex_lock(&p->mu);
	if (p->stopping || p->store_done)
		rc = ESHUTDOWN;
	else if (*free_i >= n_slots || p->n_in >= p->max_in ||
		 p->in_bytes + len > p->max_in_bytes)
		rc = EAGAIN;
	else if (!grow((void **)&p->in, &p->cap_in, p->n_in + 1, sizeof *p->in))
		rc = EAGAIN;
	if (!rc) {
		struct pump_http_slot *s = &slots[*free_i];
		*free_i = s->next_free;
		s->call = call;
		p->in[p->n_in++] = (struct inmsg){ .ctrl = s,
						   .body = body,
						   .len = len,
						   .preauth = true,
						   .caller = caller };
		p->in_bytes += len;
		pthread_cond_signal(&p->cond);
	}
	pthread_mutex_unlock(&p->mu);
	return rc;
}

int pump_post_http(struct pump *p, void *call, const struct config_key *caller,
		   void *body, size_t len)
{
	return post_local(p, p->http_slots, p->n_http_slots, &p->http_free,
			  call, caller, body, len);
}

int pump_post_push(struct pump *p, void *call, const struct config_key *caller,
		   void *body, size_t len)
{
	return post_local(p, p->push_slots, p->n_push_slots, &p->push_free,
			  call, caller, body, len);
}

/* Hand a local request's reply to its module (HTTP or push) and free its
 * slot. */
static void local_out(struct pump *p, void *ctrl, void *buf, size_t len)
{
	struct pump_http_slot *s = ctrl;
	bool http = pump_is_http(p, ctrl);
	pthread_mutex_lock(&p->mu);
	void *call = s->call;
	s->call = NULL;
	if (http) {
		s->next_free = p->http_free;
		p->http_free = (size_t)(s - p->http_slots);
	} else {
		s->next_free = p->push_free;
		p->push_free = (size_t)(s - p->push_slots);
	}
	pthread_mutex_unlock(&p->mu);
	if (http)
		p->http_reply(p->http_ctx, call, buf, len);
	else
		p->push_reply(p->push_ctx, call, buf, len);
}

/* ---- store side --------------------------------------------------------- */

size_t pump_take(struct pump *p, struct inmsg *out, size_t max,
		 size_t max_bytes, int timeout_ms, bool *stopping)
{
	struct timespec until;
	clock_gettime(CLOCK_MONOTONIC, &until);
	until.tv_sec += timeout_ms / 1000;
	until.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
	if (until.tv_nsec >= 1000000000L) {
		until.tv_sec++;
		until.tv_nsec -= 1000000000L;
	}
	pthread_mutex_lock(&p->mu);
	while (p->n_in == 0 && !p->stopping && timeout_ms > 0) {
		if (pthread_cond_timedwait(&p->cond, &p->mu, &until) ==
		    ETIMEDOUT)
			break;
	}
	size_t n = 0, bytes = 0;
	while (n < p->n_in && n < max &&
	       (n == 0 || bytes + p->in[n].len <= max_bytes))
		bytes += p->in[n++].len;
	if (n) {
		memcpy(out, p->in, n * sizeof *out);
		if (p->n_in > n)
			memmove(p->in, p->in + n,
				(p->n_in - n) * sizeof *p->in);
	}
	p->n_in -= n;
	for (size_t i = 0; i < n; i++)
		p->in_bytes -= out[i].len;
	*stopping = p->stopping;
	pthread_mutex_unlock(&p->mu);
	return n;
}

void pump_send(struct pump *p, void *ctrl, void *buf, size_t len)
{
	if (!grow((void **)&p->staged, &p->cap_staged, p->n_staged + 1,
		  sizeof *p->staged) &&
	    pump_is_local(p, ctrl)) {
		free(buf); /* the HTTP side answers "not applied" */
		local_out(p, ctrl, NULL, 0);
		log_event(LOG_ERROR, "reply_dropped",
			  LS("reason", "out of memory"), LOG_END);
		return;
	}
	if (p->n_staged + 1 > p->cap_staged) {
		/* Without room to queue it, the reply is lost like a dropped
		 * connection's; the client resends. The ctrl leaks: nanomsg
		 * memory may only be freed on the network thread. */
		free(buf);
		log_event(LOG_ERROR, "reply_dropped",
			  LS("reason", "out of memory"), LOG_END);
		return;
	}
	p->staged[p->n_staged++] = (struct outmsg){ ctrl, buf, len };
}

static void notify(struct pump *p)
{
	uint64_t one = 1;
	ssize_t w = write(p->notify_fd, &one, sizeof one);
	(void)w; /* an eventfd write only fails on overflow: still readable */
}

void pump_flush(struct pump *p)
{
	if (p->n_staged == 0)
		return;
	if (p->http_slots || p->push_slots) { /* local replies go to their
					       * module */
		size_t k = 0;
		for (size_t i = 0; i < p->n_staged; i++) {
			struct outmsg *m = &p->staged[i];
			if (pump_is_local(p, m->ctrl))
				local_out(p, m->ctrl, m->buf, m->len);
			else
				p->staged[k++] = *m;
		}
		p->n_staged = k;
		if (k == 0)
			return;
	}
	pthread_mutex_lock(&p->mu);
	bool ok = grow((void **)&p->out, &p->cap_out, p->n_out + p->n_staged,
		       sizeof *p->out);
	if (ok) {
		memcpy(p->out + p->n_out, p->staged,
		       p->n_staged * sizeof *p->staged);
		p->n_out += p->n_staged;
		p->n_staged = 0;
	}
	pthread_mutex_unlock(&p->mu);
	if (ok)
		notify(p);
}

void pump_store_done(struct pump *p)
{
	pump_flush(p);
	pthread_mutex_lock(&p->mu);
	p->store_done = true;
	pthread_mutex_unlock(&p->mu);
	notify(p);
}

/* ---- network side ------------------------------------------------------- */

static void send_outbox(struct pump *p)
{
	struct outmsg *out;
	size_t n;
	uint64_t count;
	ssize_t r = read(p->notify_fd, &count, sizeof count);
	(void)r; /* EAGAIN: a spurious wake-up; the outbox tells the truth */
	pthread_mutex_lock(&p->mu);
	out = p->out;
	n = p->n_out;
	p->out = NULL;
	p->n_out = 0;
	p->cap_out = 0;
	pthread_mutex_unlock(&p->mu);
	for (size_t i = 0; i < n; i++) {
		if (!out[i].buf) {
			transport_drop_ctrl(out[i].ctrl);
			continue;
		}
		int rc = transport_reply(p->tr, out[i].ctrl, out[i].buf,
					 out[i].len);
		if (rc)
			log_event(LOG_WARN, "reply_not_sent",
				  LS("error", strerror(rc)), LOG_END);
		free(out[i].buf);
	}
	free(out);
}

static void receive(struct pump *p)
{
	struct inmsg batch[RECV_PER_WAKE];
	size_t n = 0;
	while (n < RECV_PER_WAKE) {
		struct inbound in;
		int rc = transport_recv(p->tr, &in);
		if (rc == EAGAIN)
			break;
		if (rc) {
			if (rc != EINTR)
				log_event(LOG_ERROR, "receive_failed",
					  LS("error", strerror(rc)), LOG_END);
			break;
		}
		void *copy = malloc(in.len ? in.len : 1);
		if (!copy) {
			/* as if lost on the wire: the client resends */
			transport_release(&in);
			transport_drop_ctrl(in.ctrl);
			log_event(LOG_ERROR, "request_dropped",
				  LS("reason", "out of memory"), LOG_END);
			continue;
		}
		memcpy(copy, in.body, in.len);
		transport_release(&in);
		batch[n++] = (struct inmsg){ .ctrl = in.ctrl,
					     .body = copy,
					     .len = in.len };
	}
	if (n == 0)
		return;
	pthread_mutex_lock(&p->mu);
	if (grow((void **)&p->in, &p->cap_in, p->n_in + n, sizeof *p->in)) {
		memcpy(p->in + p->n_in, batch, n * sizeof *batch);
		p->n_in += n;
		for (size_t i = 0; i < n; i++)
			p->in_bytes += batch[i].len;
		n = 0;
	}
	pthread_cond_signal(&p->cond);
	pthread_mutex_unlock(&p->mu);
	for (size_t i = 0; i < n; i++) { /* inbox could not grow */
		free(batch[i].body);
		transport_drop_ctrl(batch[i].ctrl);
	}
}

void pump_run(struct pump *p)
{
	for (;;) {
		pthread_mutex_lock(&p->mu);
		bool done = p->store_done, stopping = p->stopping;
		bool full =
			p->n_in >= p->max_in || p->in_bytes >= p->max_in_bytes;
		pthread_mutex_unlock(&p->mu);
		if (done) {
			send_outbox(p);
			return;
		}
		/* A full inbox is backpressure: leave requests in nanomsg's
		 * buffers until the store thread catches up. After a stop
		 * signal nothing new is taken. */
		bool take = !full && !stopping;
		struct pollfd fds[3] = {
			{ .fd = p->notify_fd, .events = POLLIN },
			{ .fd = p->sigfd, .events = POLLIN },
			{ .fd = p->tr->rcvfd, .events = take ? POLLIN : 0 },
		};
		int rc = poll(fds, 3, take ? 1000 : 10);
		if (rc < 0 && errno != EINTR) {
			log_event(LOG_ERROR, "poll_failed",
				  LS("error", strerror(errno)), LOG_END);
			rc = 0;
		}
		if (rc > 0 && (fds[1].revents & POLLIN)) {
			struct signalfd_siginfo si;
			if (read(p->sigfd, &si, sizeof si) ==
			    (ssize_t)sizeof si)
				log_event(LOG_INFO, "broker_stopping",
					  LU("signal", si.ssi_signo), LOG_END);
			pthread_mutex_lock(&p->mu);
			p->stopping = true;
			pthread_cond_signal(&p->cond);
			pthread_mutex_unlock(&p->mu);
		}
		if (rc > 0 && (fds[0].revents & POLLIN))
			send_outbox(p);
		if (rc > 0 && take && (fds[2].revents & POLLIN))
			receive(p);
	}
}
