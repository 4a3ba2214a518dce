/*
 * wire_util.h — helpers shared by test_hostile.c and test_wire.c: a broker
 * on tcp://127.0.0.1:<free port>, a plain nanomsg REQ socket that sends
 * hand-built (or hand-broken) requests, a raw SP-over-TCP/IPC client made
 * of plain sockets, and what /proc tells about the broker process.
 *
 * Nothing here goes through libhandoff, so the library's own checks cannot
 * hide what the broker does with bad input. Every helper that can fail in
 * a way the test did not ask for asserts (cmocka).
 *
 * SP over TCP (nanomsg rfc/sp-tcp-mapping-01.txt): both sides first send an
 * 8-byte header "\0SP\0" + 16-bit protocol id (big endian; REQ = 48,
 * REP = 49) + 2 reserved zero bytes; nanomsg 1.1.5 closes the connection
 * when the peer's header is not "\0SP\0" + a peer protocol, or has not
 * arrived within 1 s (src/transports/utils/streamhdr.c). Then each message
 * is a 64-bit big-endian size + body; a size over the receiver's
 * NN_RCVMAXSIZE drops the connection (src/transports/tcp/stcp.c). A REQ
 * body starts with a 32-bit request id whose top bit is set
 * (rfc/sp-request-reply-01.txt); a REP reply starts with the same id.
 * Raw REP silently drops a message without such a bottom-of-stack word, or
 * with more than NN_MAXTTL (8) hops (src/protocols/reqrep/xrep.c).
 */
#ifndef HANDOFF_WIRE_UTIL_H
#define HANDOFF_WIRE_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "handoff.pb-c.h"
#include "harness.h"

typedef Handoff__Wire__Request WRequest;
typedef Handoff__Wire__Reply WReply;

#define WST(x)	    HANDOFF__WIRE__STATUS__##x
#define WIRE_SP_REQ 48
#define WIRE_SP_REP 49

/* Whether the test itself was built with AddressSanitizer (then the broker
 * is too, and its RSS carries ASan's shadow memory and quarantine). */
#if defined(__SANITIZE_ADDRESS__)
#define WIRE_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define WIRE_ASAN 1
#endif
#endif
#ifndef WIRE_ASAN
#define WIRE_ASAN 0
#endif

/* ---- broker on tcp ------------------------------------------------------ */

/* A port on 127.0.0.1 that was free a moment ago (bound to port 0). */
int wire_free_port(void);
/* broker_prepare + listen on tcp://127.0.0.1:<free port> instead of ipc +
 * broker_spawn. *port (may be NULL) receives the port. */
broker *wire_broker_start_tcp(const char *config_ini, int *port);
/* The broker process is still running (not reaped, not a zombie). */
bool wire_broker_alive(broker *b);
/* Assert the broker runs and its log shows no crash, abort, sanitizer
 * report or unusable store. */
void wire_assert_broker_ok(broker *b);

/* ---- /proc -------------------------------------------------------------- */

/* A "Vm...:" field of /proc/<pid>/status in KiB ("VmRSS", "VmHWM",
 * "VmSize"); -1 when unreadable. */
long wire_proc_kb(pid_t pid, const char *field);
/* utime + stime of pid in ms. */
uint64_t wire_cpu_ms(pid_t pid);
/* Open file descriptors of pid (entries of /proc/<pid>/fd). */
int wire_proc_fds(pid_t pid);
/* The soft "Max open files" of pid. */
long wire_proc_nofile(pid_t pid);
/* Raise our RLIMIT_NOFILE soft limit to at least want (up to the hard
 * limit); returns the soft limit now in force. */
long wire_raise_nofile(long want);
/* Wait (up to wait_ms) for pid's RSS to drop to limit_kb or below;
 * returns the last RSS seen. */
long wire_rss_settle(pid_t pid, long limit_kb, uint32_t wait_ms);

/* ---- nanomsg REQ socket ------------------------------------------------- */

/* An AF_SP NN_REQ socket connected to url: no receive size limit, resend
 * interval 1 h (so nothing is resent behind the test's back), 5 s send
 * timeout. */
int wire_req_open(const char *url);
void wire_req_close(int s);
/* Pack r (malloc'd; free()). */
uint8_t *wire_pack(const WRequest *r, size_t *len);
/* Send len bytes and wait up to timeout_ms for the reply: the decoded
 * reply (free with wire_reply_free), or NULL when none came. A reply that
 * does not decode fails the test. */
WReply *wire_call_bytes(int s, const void *buf, size_t len, int timeout_ms);
WReply *wire_call(int s, const WRequest *r, int timeout_ms);
void wire_reply_free(WReply *r);
/*
 * Send and assert the reply's status (and, if needle is not NULL, that
 * its message contains needle). what names the case in the failure
 * message. Returns the reply for more checks (free it) — or frees it
 * and returns NULL when keep is false.
 */
WReply *wire_expect_bytes(int s, const void *buf, size_t len, int status,
			  const char *needle, const char *what, bool keep);
WReply *wire_expect(int s, const WRequest *r, int status, const char *needle,
		    const char *what, bool keep);
/* Send and assert that no reply comes within timeout_ms. */
void wire_expect_silence(int s, const void *buf, size_t len, int timeout_ms,
			 const char *what);
/* The name of a wire status ("OK", "BAD_REQUEST", ...). */
const char *wire_status_name(int status);

/* A fresh Request with protocol_version 1 and a ping body (static parts:
 * valid until the next call from the same thread). */
WRequest wire_ping_request(void);

/* ---- control latency ------------------------------------------------------ */

typedef struct wire_latency {
	double median_ms;
	double max_ms;
	int n;
} wire_latency;

/* n pings on REQ socket s, each answered OK within 10 s (asserts). */
wire_latency wire_ping_latency(int s, int n);
/* Measure n pings and assert the median is below max(10 × base median,
 * 1000 ms); prints both. Returns the measurement. */
wire_latency wire_check_control(int s, const wire_latency *base, int n,
				const char *after);

/* ---- raw SP client (plain sockets) --------------------------------------- */

/* A blocking TCP connection to 127.0.0.1:port with TCP_NODELAY (rcvbuf > 0
 * sets SO_RCVBUF first); -1 when connect fails. */
int wire_raw_tcp(int port, int rcvbuf);
/* A blocking unix-socket connection to path; -1 when connect fails. */
int wire_raw_ipc(const char *path);
/* The 8-byte SP header for protocol id proto. */
void wire_sp_header(uint8_t out[8], uint16_t proto);
/* Write all n bytes, waiting up to timeout_ms; false on error/timeout. */
bool wire_write_all(int fd, const void *p, size_t n, int timeout_ms);
/* Read exactly n bytes within timeout_ms: n, 0 on EOF/reset, -1 on
 * timeout. */
ssize_t wire_read_full(int fd, void *p, size_t n, int timeout_ms);
/* Send our SP header for proto and read and check the broker's (a REP
 * header "\0SP\0\0\x31\0\0"). */
bool wire_sp_handshake(int fd, uint16_t proto, int timeout_ms);
/* Frame body (len bytes) after a 4-byte request id (top bit forced on). */
bool wire_sp_send_req(int fd, uint32_t id, const void *body, size_t len);
/* Read one framed reply: returns the decoded Reply, *id its request id;
 * NULL on timeout or EOF. */
WReply *wire_sp_recv_reply(int fd, uint32_t *id, int timeout_ms);
/* Wait until the peer closes the connection (EOF or reset), discarding
 * what it sends; false when it is still open after timeout_ms. */
bool wire_wait_closed(int fd, int timeout_ms);
/* Whether the connection is still open right now (no EOF/reset pending). */
bool wire_still_open(int fd);

/* req packed, then its Auth (PROTOCOL.md §1.1, as client/call.c sends
 * it): signed by key with the secret hex (64 hex digits) for session, seq
 * and the time ts_ms. Sets req->protocol_version to 1. *len gets the size;
 * the buffer is malloc'd (free it). Asserts on failure. */
uint8_t *wire_sign(WRequest *req, const char *key, const char *hex,
		   uint64_t session, uint64_t seq, uint64_t ts_ms, size_t *len);

#endif
