/*
 * dlq.c — the dead-letter queue of a subscription: list, show, replay,
 * purge. Replay and purge share one request shape (DlqActionRequest) and
 * one reply (dlq_action).
 */
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "client_internal.h"

/* NULL filter: the caller left wf at its all-zero init, matching all. */
static int copy_filter(const handoff_dlq_filter *f,
		       Handoff__Wire__DlqFilter *wf)
{
	if (f == NULL)
		return HANDOFF_OK;
	if ((int)f->reason < HANDOFF_DEAD_NONE ||
	    (int)f->reason > HANDOFF_DEAD_CORRUPT)
		return HANDOFF_EINVAL;
	wf->after_event_id = f->after_event_id;
	wf->dead_since_ms = f->dead_since_ms;
	wf->dead_until_ms = f->dead_until_ms;
	wf->reason = (Handoff__Wire__DeadReason)f->reason;
	/* Only read by packing. */
	wf->error_contains =
		(char *)(f->error_contains ? f->error_contains : "");
	return HANDOFF_OK;
}

static void dead_letter_fini(handoff_dead_letter *d)
{
	free(d->topic);
	free(d->key);
	free(d->error);
	hc_attempts_free(d->history, d->n_history);
	free(d->payload);
	free(d->headers); /* one block with its strings */
}

void handoff_dead_letters_free(handoff_dead_letter *d, size_t n)
{
	if (d == NULL)
		return;
	for (size_t i = 0; i < n; i++)
		dead_letter_fini(&d[i]);
	free(d);
}

/* full: also the payload, headers and history that only dlq_show sends. */
static int copy_dead_letter(const Handoff__Wire__DeadLetter *w,
			    handoff_dead_letter *d, bool full)
{
	d->event_id = w->event_id;
	d->reason = (handoff_dead_reason)w->reason;
	d->dead_ms = w->dead_ms;
	d->published_ms = w->published_ms;
	d->attempts = w->attempts;
	d->replays = w->replays;
	d->topic = hc_strdup(w->topic);
	d->key = hc_strdup(w->key);
	d->error = hc_strdup(w->error);
	if (d->topic == NULL || d->key == NULL || d->error == NULL)
		return HANDOFF_ENOMEM;
	if (!full)
		return HANDOFF_OK;

	if (hc_copy_attempts(w->history, w->n_history, &d->history) !=
	    HANDOFF_OK)
		return HANDOFF_ENOMEM;
	d->n_history = w->n_history;
	if (hc_copy_headers(w->headers, w->n_headers, &d->headers) !=
	    HANDOFF_OK)
		return HANDOFF_ENOMEM;
	d->n_headers = w->n_headers;
	d->payload = hc_memdup(&w->payload);
	if (d->payload == NULL)
		return HANDOFF_ENOMEM;
	d->payload_len = w->payload.data != NULL ? w->payload.len : 0;
	return HANDOFF_OK;
}

int handoff_dlq_list(handoff_client *c, const char *sub,
		     const handoff_dlq_filter *filter, uint32_t limit,
		     handoff_dead_letter **out, size_t *n, bool *more)
{
	Handoff__Wire__Request req = HANDOFF__WIRE__REQUEST__INIT;
	Handoff__Wire__DlqListRequest list =
		HANDOFF__WIRE__DLQ_LIST_REQUEST__INIT;
	Handoff__Wire__DlqFilter wf = HANDOFF__WIRE__DLQ_FILTER__INIT;
	Handoff__Wire__Reply *reply = NULL;
	const Handoff__Wire__DlqListReply *r;
	handoff_dead_letter *d = NULL;
	size_t count = 0;
	int rc;

	if (out != NULL)
		*out = NULL;
	if (n != NULL)
		*n = 0;
	if (more != NULL)
		*more = false;
	if (c == NULL || sub == NULL || out == NULL || n == NULL)
		return HANDOFF_EINVAL;
	rc = copy_filter(filter, &wf);
	if (rc != HANDOFF_OK)
		return rc;
	list.subscription = (char *)sub;
	list.filter = &wf;
	list.limit = limit ? limit : HC_DEFAULT_DLQ_LIMIT;
	req.body_case = HANDOFF__WIRE__REQUEST__BODY_DLQ_LIST;
	req.dlq_list = &list;

	rc = hc_call(c, &req, HANDOFF__WIRE__REPLY__BODY_DLQ_LIST, 0, &reply);
	if (rc != HANDOFF_OK)
		goto done;
	r = reply->dlq_list;
	if (r->n_dead_letters > list.limit) {
		rc = HANDOFF_EPROTO;
		goto done;
	}
	if (r->n_dead_letters > 0) {
		d = calloc(r->n_dead_letters, sizeof(*d));
		if (d == NULL) {
			rc = HANDOFF_ENOMEM;
			goto done;
		}
	}
	for (count = 0; count < r->n_dead_letters; count++) {
		rc = copy_dead_letter(r->dead_letters[count], &d[count], false);
		if (rc != HANDOFF_OK) {
			count++; /* free the half-copied one too */
			goto done;
		}
	}
	*out = d;
	*n = count;
	if (more != NULL)
		*more = r->more;
	d = NULL;

done:
	handoff_dead_letters_free(d, count);
	hc_reply_free(reply);
	return rc;
}

int handoff_dlq_show(handoff_client *c, const char *sub, uint64_t event_id,
		     handoff_dead_letter **out)
{
	Handoff__Wire__Request req = HANDOFF__WIRE__REQUEST__INIT;
	Handoff__Wire__DlqShowRequest show =
		HANDOFF__WIRE__DLQ_SHOW_REQUEST__INIT;
	Handoff__Wire__Reply *reply = NULL;
	const Handoff__Wire__DeadLetter *w;
	handoff_dead_letter *d = NULL;
	int rc;

	if (out != NULL)
		*out = NULL;
	if (c == NULL || sub == NULL || out == NULL)
		return HANDOFF_EINVAL;
	show.subscription = (char *)sub;
	show.event_id = event_id;
	req.body_case = HANDOFF__WIRE__REQUEST__BODY_DLQ_SHOW;
	req.dlq_show = &show;

	rc = hc_call(c, &req, HANDOFF__WIRE__REPLY__BODY_DLQ_SHOW, 0, &reply);
	if (rc != HANDOFF_OK)
		goto done;
	w = reply->dlq_show->dead_letter;
	if (w == NULL || w->event_id != event_id) {
		rc = HANDOFF_EPROTO;
		goto done;
	}
	d = calloc(1, sizeof(*d));
	if (d == NULL) {
		rc = HANDOFF_ENOMEM;
		goto done;
	}
	rc = copy_dead_letter(w, d, true);
	if (rc != HANDOFF_OK)
		goto done;
	*out = d;
	d = NULL;

done:
	handoff_dead_letters_free(d, 1);
	hc_reply_free(reply);
	return rc;
}

void handoff_dlq_result_free(handoff_dlq_result *r)
{
	if (r == NULL)
		return;
	free(r->event_ids);
	free(r->missing);
	memset(r, 0, sizeof(*r));
}

/* Copies n ids; NULL for none, so *out is NULL exactly when n == 0. */
static int copy_ids(const uint64_t *src, size_t n, uint64_t **out)
{
	*out = NULL;
	if (n == 0)
		return HANDOFF_OK;
	*out = malloc(n * sizeof(**out)); /* n bounded by a decoded reply */
	if (*out == NULL)
		return HANDOFF_ENOMEM;
	memcpy(*out, src, n * sizeof(**out));
	return HANDOFF_OK;
}

static int dlq_action(handoff_client *c, const char *sub,
		      const handoff_dlq_action *action,
		      handoff_dlq_result *result, bool purge)
{
	Handoff__Wire__Request req = HANDOFF__WIRE__REQUEST__INIT;
	Handoff__Wire__DlqActionRequest act =
		HANDOFF__WIRE__DLQ_ACTION_REQUEST__INIT;
	Handoff__Wire__DlqFilter wf = HANDOFF__WIRE__DLQ_FILTER__INIT;
	Handoff__Wire__Reply *reply = NULL;
	const Handoff__Wire__DlqActionReply *r;
	handoff_dlq_result res = { 0 };
	int rc;

	if (result != NULL)
		memset(result, 0, sizeof(*result));
	if (c == NULL || sub == NULL || action == NULL || result == NULL)
		return HANDOFF_EINVAL;
	if (action->event_ids == NULL && action->n_event_ids > 0)
		return HANDOFF_EINVAL;
	rc = copy_filter(action->filter, &wf);
	if (rc != HANDOFF_OK)
		return rc;
	act.subscription = (char *)sub;
	act.event_ids = (uint64_t *)action->event_ids; /* only read */
	act.n_event_ids = action->n_event_ids;
	act.filter = action->filter != NULL ? &wf : NULL;
	act.limit = action->limit ? action->limit : HC_DEFAULT_DLQ_LIMIT;
	act.dry_run = action->dry_run;
	act.all = action->all;
	act.reason = (char *)(action->reason ? action->reason : "");
	/* One id per call: the broker runs a resent command once. */
	char cmd[40];
	if (action->command_id != NULL) {
		act.command_id = (char *)action->command_id;
	} else {
		unsigned char rnd[16];
		randombytes_buf(rnd, sizeof rnd);
		sodium_bin2hex(cmd, sizeof cmd, rnd, sizeof rnd);
		act.command_id = cmd;
	}
	if (purge) {
		req.body_case = HANDOFF__WIRE__REQUEST__BODY_DLQ_PURGE;
		req.dlq_purge = &act;
	} else {
		req.body_case = HANDOFF__WIRE__REQUEST__BODY_DLQ_REPLAY;
		req.dlq_replay = &act;
	}

	rc = hc_call(c, &req, HANDOFF__WIRE__REPLY__BODY_DLQ_ACTION, 0, &reply);
	if (rc != HANDOFF_OK)
		goto done;
	r = reply->dlq_action;
	rc = copy_ids(r->event_ids, r->n_event_ids, &res.event_ids);
	if (rc != HANDOFF_OK)
		goto done;
	res.n_event_ids = r->n_event_ids;
	rc = copy_ids(r->missing, r->n_missing, &res.missing);
	if (rc != HANDOFF_OK)
		goto done;
	res.n_missing = r->n_missing;
	res.more = r->more;
	*result = res;
	memset(&res, 0, sizeof(res));

done:
	handoff_dlq_result_free(&res);
	hc_reply_free(reply);
	return rc;
}

int handoff_dlq_replay(handoff_client *c, const char *sub,
		       const handoff_dlq_action *action,
		       handoff_dlq_result *result)
{
	return dlq_action(c, sub, action, result, false);
}

int handoff_dlq_purge(handoff_client *c, const char *sub,
		      const handoff_dlq_action *action,
		      handoff_dlq_result *result)
{
	return dlq_action(c, sub, action, result, true);
}

/* ---- operator audit --------------------------------------------------- */

void handoff_audit_free(handoff_audit_record *r, size_t n)
{
	if (r == NULL)
		return;
	for (size_t i = 0; i < n; i++) {
		free(r[i].key_id);
		free(r[i].role);
		free(r[i].action);
		free(r[i].subscription);
		free(r[i].event_ids);
		free(r[i].selector);
		free(r[i].reason);
		free(r[i].command_id);
	}
	free(r);
}

static int copy_audit(const Handoff__Wire__AuditRecord *w,
		      handoff_audit_record *r)
{
	r->seq = w->seq;
	r->at_ms = w->at_ms;
	r->missing = w->missing;
	r->key_id = hc_strdup(w->key_id);
	r->role = hc_strdup(w->role);
	r->action = hc_strdup(w->action);
	r->subscription = hc_strdup(w->subscription);
	r->selector = hc_strdup(w->selector);
	r->reason = hc_strdup(w->reason);
	r->command_id = hc_strdup(w->command_id);
	if (!r->key_id || !r->role || !r->action || !r->subscription ||
	    !r->selector || !r->reason || !r->command_id)
		return HANDOFF_ENOMEM;
	int rc = copy_ids(w->event_ids, w->n_event_ids, &r->event_ids);
	if (rc == HANDOFF_OK)
		r->n_event_ids = w->n_event_ids;
	return rc;
}

int handoff_audit_list(handoff_client *c, uint64_t after_seq, uint32_t limit,
		       handoff_audit_record **out, size_t *n, bool *more)
{
	Handoff__Wire__Request req = HANDOFF__WIRE__REQUEST__INIT;
	Handoff__Wire__AuditListRequest al =
		HANDOFF__WIRE__AUDIT_LIST_REQUEST__INIT;
	Handoff__Wire__Reply *reply = NULL;
	handoff_audit_record *v = NULL;
	size_t count = 0;
	int rc;

	if (out != NULL)
		*out = NULL;
	if (n != NULL)
		*n = 0;
	if (more != NULL)
		*more = false;
	if (c == NULL || out == NULL || n == NULL)
		return HANDOFF_EINVAL;
	al.after_seq = after_seq;
	al.limit = limit ? limit : HC_DEFAULT_DLQ_LIMIT;
	req.body_case = HANDOFF__WIRE__REQUEST__BODY_AUDIT_LIST;
	req.audit_list = &al;
	rc = hc_call(c, &req, HANDOFF__WIRE__REPLY__BODY_AUDIT_LIST, 0, &reply);
	if (rc != HANDOFF_OK)
		goto done;
	const Handoff__Wire__AuditListReply *r = reply->audit_list;
	if (r->n_records > 0) {
		v = calloc(r->n_records, sizeof *v);
		if (v == NULL) {
			rc = HANDOFF_ENOMEM;
			goto done;
		}
	}
	for (size_t i = 0; i < r->n_records; i++) {
		count = i + 1;
		rc = copy_audit(r->records[i], &v[i]);
		if (rc != HANDOFF_OK)
			goto done;
	}
	if (more != NULL)
		*more = r->more;
	*out = v;
	*n = count;
	v = NULL;
	count = 0;
done:
	handoff_audit_free(v, count);
	hc_reply_free(reply);
	return rc;
}
