/*
 * transport.c — the raw REP socket; see transport.h. Checks what nanomsg
 * 1.1.5 would otherwise assert on (long ipc paths) before binding, and makes
 * ipc socket files private to the owner (nanomsg has no mode option, the
 * file takes the umask).
 */
#include "transport.h"

#include <errno.h>
#include <nanomsg/nn.h>
#include <nanomsg/reqrep.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

/*
 * On ipc, file permissions are the only guard (nanomsg checks no peer
 * credentials, and a peer that sends a malformed frame can abort it): the
 * socket's directory must be ours (or root's) and writable by nobody else,
 * or someone could replace the socket file with their own.
 */
static int check_ipc_dir(const char *path, char *err, size_t errlen)
{
	char dir[sizeof(((struct sockaddr_un *)0)->sun_path)];
	struct stat sb;
	snprintf(dir, sizeof dir, "%s", path);
	char *slash = strrchr(dir, '/');
	if (!slash)
		snprintf(dir, sizeof dir, ".");
	else if (slash == dir)
		dir[1] = '\0';
	else
		*slash = '\0';
	if (stat(dir, &sb)) {
		int e = errno;
		snprintf(err, errlen, "ipc socket directory %s: %s", dir,
			 strerror(e));
		return e;
	}
	if ((sb.st_uid != geteuid() && sb.st_uid != 0) ||
	    (sb.st_mode & (S_IWGRP | S_IWOTH))) {
		snprintf(
			err, errlen,
			"ipc socket directory %s can be written by "
			"other users (mode %03o, owner %u): put the socket in a "
			"directory only this user can write",
			dir, (unsigned)(sb.st_mode & 0777),
			(unsigned)sb.st_uid);
		return EPERM;
	}
	return 0;
}

int transport_open(struct transport *tr, char *const *urls, size_t n,
		   uint32_t max_msg, char *err, size_t errlen)
{
	size_t optlen = sizeof tr->rcvfd;
	/* nanomsg checks NN_RCVMAXSIZE against the whole message, the REQ
	 * peer's 4-byte request id included: allow max_msg bytes of Request */
	uint64_t lim = (uint64_t)max_msg + 4;
	int maxsz = lim > INT32_MAX ? INT32_MAX : (int)lim;
	tr->sock = nn_socket(AF_SP_RAW, NN_REP);
	if (tr->sock < 0) {
		snprintf(err, errlen, "nn_socket: %s", nn_strerror(nn_errno()));
		return nn_errno();
	}
	if (nn_setsockopt(tr->sock, NN_SOL_SOCKET, NN_RCVMAXSIZE, &maxsz,
			  sizeof maxsz) ||
	    nn_getsockopt(tr->sock, NN_SOL_SOCKET, NN_RCVFD, &tr->rcvfd,
			  &optlen)) {
		int e = nn_errno();
		snprintf(err, errlen, "socket options: %s", nn_strerror(e));
		nn_close(tr->sock);
		return e;
	}
	for (size_t i = 0; i < n; i++) {
		const char *url = urls[i];
		int is_ipc = strncmp(url, "ipc://", 6) == 0;
		if (is_ipc &&
		    strlen(url + 6) >=
			    sizeof(((struct sockaddr_un *)0)->sun_path)) {
			snprintf(err, errlen,
				 "%s: ipc path too long (max %zu bytes)", url,
				 sizeof(((struct sockaddr_un *)0)->sun_path) -
					 1);
			nn_close(tr->sock);
			return ENAMETOOLONG;
		}
		if (is_ipc) {
			int e = check_ipc_dir(url + 6, err, errlen);
			if (e) {
				nn_close(tr->sock);
				return e;
			}
		}
		mode_t old = umask(077);
		int rc = nn_bind(tr->sock, url);
		umask(old);
		if (rc < 0) {
			int e = nn_errno();
			snprintf(err, errlen, "listen %s: %s", url,
				 nn_strerror(e));
			nn_close(tr->sock);
			return e;
		}
		if (is_ipc)
			chmod(url + 6, 0600); /* in case the file came first */
	}
	return 0;
}

int transport_recv(struct transport *tr, struct inbound *in)
{
	void *body = NULL, *ctrl = NULL;
	struct nn_iovec iov = { &body, NN_MSG };
	struct nn_msghdr h = { &iov, 1, &ctrl, NN_MSG };
	int r = nn_recvmsg(tr->sock, &h, NN_DONTWAIT);
	if (r < 0)
		return nn_errno();
	in->body = body;
	in->len = (size_t)r;
	in->ctrl = ctrl;
	return 0;
}

void transport_release(struct inbound *in)
{
	if (in->body)
		nn_freemsg(in->body);
	in->body = NULL;
}

void *transport_alloc(size_t len)
{
	return nn_allocmsg(len ? len : 1, 0);
}

int transport_reply_msg(struct transport *tr, void *ctrl, void *msg)
{
	struct nn_iovec iov = { &msg, NN_MSG };
	struct nn_msghdr h = { &iov, 1, &ctrl, NN_MSG };
	if (nn_sendmsg(tr->sock, &h, NN_DONTWAIT) < 0) {
		int e = nn_errno();
		nn_freemsg(msg);
		nn_freemsg(ctrl);
		return e;
	}
	return 0;
}

int transport_reply(struct transport *tr, void *ctrl, const void *buf,
		    size_t len)
{
	void *msg = transport_alloc(len);
	if (!msg) {
		nn_freemsg(ctrl);
		return ENOMEM;
	}
	memcpy(msg, buf, len);
	return transport_reply_msg(tr, ctrl, msg);
}

void transport_drop_ctrl(void *ctrl)
{
	if (ctrl)
		nn_freemsg(ctrl);
}

void transport_close(struct transport *tr)
{
	if (tr->sock >= 0)
		nn_close(tr->sock);
	tr->sock = -1;
}
