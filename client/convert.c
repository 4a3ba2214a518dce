/*
 * convert.c — deep copies from decoded wire messages into the plain result
 * structs of handoff.h, shared by the files that build results. Results
 * must outlive the reply they came from, so nothing points into it.
 */
#include <stdlib.h>
#include <string.h>

#include "client_internal.h"

char *hc_strdup(const char *s)
{
	return strdup(s != NULL ? s : "");
}

void *hc_memdup(const ProtobufCBinaryData *b)
{
	size_t len = b->data != NULL ? b->len : 0;
	char *p = malloc(len + 1);

	if (p == NULL)
		return NULL;
	if (len > 0)
		memcpy(p, b->data, len);
	p[len] = '\0';
	return p;
}

int hc_copy_headers(Handoff__Wire__Header *const *src, size_t n,
		    handoff_header **out)
{
	handoff_header *h;
	size_t bytes = n * sizeof(*h);
	char *p;

	*out = NULL;
	if (n == 0)
		return HANDOFF_OK;
	/* n came from a decoded reply, so n * sizeof can't overflow. */
	for (size_t i = 0; i < n; i++) {
		const char *name = src[i]->name ? src[i]->name : "";
		const char *value = src[i]->value ? src[i]->value : "";

		bytes += strlen(name) + 1 + strlen(value) + 1;
	}
	h = malloc(bytes);
	if (h == NULL)
		return HANDOFF_ENOMEM;
	p = (char *)(h + n);
	for (size_t i = 0; i < n; i++) {
		const char *name = src[i]->name ? src[i]->name : "";
		const char *value = src[i]->value ? src[i]->value : "";
		size_t ln = strlen(name) + 1, lv = strlen(value) + 1;

		memcpy(p, name, ln);
		h[i].name = p;
		p += ln;
		memcpy(p, value, lv);
		h[i].value = p;
		p += lv;
	}
	*out = h;
	return HANDOFF_OK;
}

/* handoff.h's enums carry the wire's numbers, so fields are copied as they
 * come (a value newer than this library stays as it is). */
_Static_assert((int)HANDOFF_OUTCOME_RELEASED ==
		       (int)HANDOFF__WIRE__OUTCOME__OUTCOME_RELEASED,
	       "handoff_outcome follows the wire's Outcome");
_Static_assert((int)HANDOFF_DEAD_CORRUPT ==
		       (int)HANDOFF__WIRE__DEAD_REASON__DEAD_REASON_CORRUPT,
	       "handoff_dead_reason follows the wire's DeadReason");
_Static_assert(
	(int)HANDOFF_STATE_UNSUBSCRIBED ==
		(int)HANDOFF__WIRE__DELIVERY_STATE__DELIVERY_STATE_UNSUBSCRIBED,
	"handoff_delivery_state follows the wire's DeliveryState");

void hc_attempts_free(handoff_attempt *a, size_t n)
{
	if (a == NULL)
		return;
	for (size_t i = 0; i < n; i++) {
		free(a[i].consumer);
		free(a[i].error);
	}
	free(a);
}

int hc_copy_attempts(Handoff__Wire__Attempt *const *src, size_t n,
		     handoff_attempt **out)
{
	handoff_attempt *a;

	*out = NULL;
	if (n == 0)
		return HANDOFF_OK;
	a = calloc(n, sizeof(*a));
	if (a == NULL)
		return HANDOFF_ENOMEM;
	for (size_t i = 0; i < n; i++) {
		const Handoff__Wire__Attempt *s = src[i];

		a[i].attempt = s->attempt;
		a[i].leased_ms = s->leased_ms;
		a[i].ended_ms = s->ended_ms;
		a[i].outcome = (handoff_outcome)s->outcome;
		a[i].retry_delay_ms = s->retry_delay_ms;
		a[i].consumer = hc_strdup(s->consumer);
		a[i].error = hc_strdup(s->error);
		if (a[i].consumer == NULL || a[i].error == NULL) {
			hc_attempts_free(a, i + 1);
			return HANDOFF_ENOMEM;
		}
	}
	*out = a;
	return HANDOFF_OK;
}

void hc_copy_policy(const Handoff__Wire__Policy *src, handoff_policy *dst)
{
	memset(dst, 0, sizeof(*dst));
	if (src == NULL)
		return;
	dst->max_attempts = src->max_attempts;
	dst->ack_deadline_ms = src->ack_deadline_ms;
	dst->backoff_min_ms = src->backoff_min_ms;
	dst->backoff_max_ms = src->backoff_max_ms;
}
