/*
 * duration.h — parse "250ms", "30s", "5m", "2h", "7d" (a bare number is ms)
 * and "64K", "16M", "1G" (a bare number is bytes). Shared by handoffd's
 * config and the handoff CLI. Pure functions, thread-safe.
 */
#ifndef HANDOFF_COMMON_DURATION_H
#define HANDOFF_COMMON_DURATION_H

#include <stdint.h>

/* 0 on success with *ms set; EINVAL on bad syntax; ERANGE on overflow. */
int parse_duration_ms(const char *s, uint64_t *ms);
int parse_size_bytes(const char *s, uint64_t *bytes);

#endif
