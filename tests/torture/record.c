/* record.c — see record.h. */
#include "record.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tt.h"

int rec_open(struct rec_writer *w, const char *path)
{
	memset(w, 0, sizeof(*w));
	w->fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_APPEND | O_CLOEXEC,
		     0644);
	if (w->fd < 0)
		return errno;
	return 0;
}

int rec_add(struct rec_writer *w, const char *fmt, ...)
{
	char line[1024];
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(line, sizeof(line) - 1, fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= sizeof(line) - 1)
		return w->err = EINVAL;
	line[n++] = '\n';
	if (w->len + (size_t)n > w->cap) {
		size_t cap = w->cap ? w->cap * 2 : 8192;
		while (cap < w->len + (size_t)n)
			cap *= 2;
		char *nb = realloc(w->buf, cap);
		if (!nb)
			return w->err = ENOMEM;
		w->buf = nb;
		w->cap = cap;
	}
	memcpy(w->buf + w->len, line, (size_t)n);
	w->len += (size_t)n;
	return 0;
}

int rec_sync(struct rec_writer *w)
{
	size_t off = 0;
	if (w->err)
		return w->err;
	if (w->len == 0)
		return 0;
	/* One write() for the batch: a kill can only cut its tail. */
	while (off < w->len) {
		ssize_t k = write(w->fd, w->buf + off, w->len - off);
		if (k < 0 && errno == EINTR)
			continue;
		if (k < 0)
			return w->err = errno;
		off += (size_t)k;
	}
	w->len = 0;
	while (fdatasync(w->fd)) {
		if (errno != EINTR)
			return w->err = errno;
	}
	return 0;
}

void rec_close(struct rec_writer *w)
{
	if (w->fd >= 0) {
		rec_sync(w);
		close(w->fd);
	}
	free(w->buf);
	memset(w, 0, sizeof(*w));
	w->fd = -1;
}

int rec_read(const char *path, rec_line_fn fn, void *ctx, size_t *partial)
{
	size_t len = 0;
	char *buf = tt_read_file(path, &len);
	int rc = 0;
	if (partial)
		*partial = 0;
	if (!buf)
		return errno ? errno : EIO;
	char *p = buf, *end = buf + len;
	while (p < end) {
		char *nl = memchr(p, '\n', (size_t)(end - p));
		if (!nl) {
			/* the process was killed inside its last write */
			if (partial)
				*partial = (size_t)(end - p);
			break;
		}
		*nl = '\0';
		if (nl > p && (rc = fn(ctx, path, p)) != 0)
			break;
		p = nl + 1;
	}
	free(buf);
	return rc;
}
