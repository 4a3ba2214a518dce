/*
 * broker.c — setting up and freeing a broker's in-memory state; see
 * broker.h.
 */
#include "broker.h"

#include <errno.h>
#include <string.h>

/* The scheduler made a delivery of sub ready: wake its held fetches. */
static void on_ready(void *ctx, uint32_t sub, uint64_t due)
{
	struct broker *b = ctx;
	(void)due;
	held_mark_ready(&b->holds, sub);
}

/* A delivery of event was acked or dead-lettered: wake its awaits. */
static void on_done(void *ctx, uint64_t event)
{
	struct broker *b = ctx;
	held_mark_done(&b->holds, event);
}

/* A lease started or ended: count it against its consumer. */
static void on_lease(void *ctx, const char *consumer, int delta,
		     uint64_t leased_ms)
{
	struct broker *b = ctx;
	/* leases from before this start are not in the table */
	if (delta < 0 && leased_ms < b->started_ms)
		return;
	leases_add(&b->leases, consumer, delta);
}

int broker_init(struct broker *b, const struct config *cfg, uint64_t started_ms)
{
	b->cfg = cfg;
	b->started_ms = started_ms;
	b->start_mark_ms = b->st.clock_mark_ms;
	arena_init(&b->arena);
	metrics_init(&b->metrics);
	telemetry_init(&b->tele);
	bg_init(&b->bg);
	b->sched = (struct sched){ .history_ms = cfg->history_ms,
				   .on_ready = on_ready,
				   .on_lease = on_lease,
				   .on_done = on_done,
				   .ctx = b };
	space_init(&b->space, cfg->storage_headroom_bytes, cfg->map_size_bytes);
	b->env = (struct handler_env){ .cfg = cfg,
				       .st = &b->st,
				       .metrics = &b->metrics,
				       .tele = &b->tele,
				       .started_ms = started_ms,
				       .start_mark_ms = b->st.clock_mark_ms,
				       .leases = &b->leases,
				       .backup = &b->backup };
	if (backup_init(&b->backup, cfg->backup_dir, &b->st))
		return ENOMEM;
	if (leases_init(&b->leases))
		return ENOMEM;
	if (auth_init(&b->auth, cfg, started_ms))
		return ENOMEM;
	return 0;
}

void broker_fini(struct broker *b)
{
	/* before the store closes: the copy reads it */
	backup_fini(&b->backup);
	holds_fini(b);
	inbox_fini(b);
	leases_fini(&b->leases);
	auth_fini(&b->auth);
	metrics_fini(&b->metrics);
	arena_fini(&b->arena);
}
