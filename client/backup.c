/*
 * backup.c — hot backups (handoff_backup); see handoff.h.
 */
#include <stdlib.h>
#include <string.h>

#include "client_internal.h"

void handoff_backup_info_free(handoff_backup_info *b)
{
	if (b == NULL)
		return;
	free(b->name);
	free(b->path);
	free(b->error);
	b->name = b->path = b->error = NULL;
}

int handoff_backup(handoff_client *c, const char *name, bool status_only,
		   handoff_backup_info *out)
{
	Handoff__Wire__Request req = HANDOFF__WIRE__REQUEST__INIT;
	Handoff__Wire__BackupRequest b = HANDOFF__WIRE__BACKUP_REQUEST__INIT;
	Handoff__Wire__Reply *reply = NULL;

	if (out != NULL)
		memset(out, 0, sizeof *out);
	if (c == NULL || name == NULL || out == NULL)
		return HANDOFF_EINVAL;
	b.name = (char *)name; /* only read by packing */
	b.status_only = status_only;
	req.body_case = HANDOFF__WIRE__REQUEST__BODY_BACKUP;
	req.backup = &b;
	int rc = hc_call(c, &req, HANDOFF__WIRE__REPLY__BODY_BACKUP, 0, &reply);
	if (rc != HANDOFF_OK)
		return rc;
	const Handoff__Wire__BackupReply *w = reply->backup;
	out->name = hc_strdup(w->name);
	out->path = hc_strdup(w->path);
	out->error = hc_strdup(w->error);
	out->state = (handoff_backup_state)w->state;
	out->bytes = w->bytes;
	out->duration_ms = w->duration_ms;
	out->started_ms = w->started_ms;
	hc_reply_free(reply);
	if (out->name == NULL || out->path == NULL || out->error == NULL) {
		handoff_backup_info_free(out);
		memset(out, 0, sizeof *out);
		return HANDOFF_ENOMEM;
	}
	return HANDOFF_OK;
}
