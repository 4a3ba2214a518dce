/*
 * transport.h — handoffd's one request socket: a raw-mode nanomsg REP
 * (AF_SP_RAW) bound to every --listen endpoint, so the broker can receive
 * many requests, hold some (long polls) and answer in any order.
 *
 * Each received request carries an opaque control header naming its
 * sender; the reply must be sent with that header. nanomsg frees the header
 * on a successful send; transport_reply frees it on a failed one.
 * A successful send is not a delivery: nanomsg drops replies to vanished
 * peers silently, so every request must be safe to receive again.
 *
 * Threads: every call from one thread, the network thread (pump.h), which
 * makes all of handoffd's nanomsg calls; the store thread never touches
 * the socket.
 */
#ifndef HANDOFF_BROKER_TRANSPORT_H
#define HANDOFF_BROKER_TRANSPORT_H

#include <stddef.h>
#include <stdint.h>

struct transport {
	int sock;
	int rcvfd; /* readable while a message waits: poll() it */
};

struct inbound {
	void *body; /* nanomsg-owned message; transport_release() */
	size_t len;
	void *ctrl; /* sender header; passes to transport_reply() */
};

/* Bind urls; max_msg bounds what is received (NN_RCVMAXSIZE). */
int transport_open(struct transport *tr, char *const *urls, size_t n,
		   uint32_t max_msg, char *err, size_t errlen);
/* Receive without waiting: 0, EAGAIN when nothing waits, else errno. */
int transport_recv(struct transport *tr, struct inbound *in);
void transport_release(struct inbound *in);
/* Send len bytes (copied) to ctrl's sender; takes ownership of ctrl.
 * Returns 0 or errno (the reply is then lost; the client will resend). */
int transport_reply(struct transport *tr, void *ctrl, const void *buf,
		    size_t len);
/* Allocate a message buffer to fill and pass to transport_reply_msg. */
void *transport_alloc(size_t len);
/* Send a buffer from transport_alloc (ownership passes in all cases). */
int transport_reply_msg(struct transport *tr, void *ctrl, void *msg);
void transport_drop_ctrl(void *ctrl);
void transport_close(struct transport *tr);

#endif
