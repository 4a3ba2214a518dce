/*
 * bump_format.c — test-only: raise a store's format version (meta
 * "schema") by one, as a newer handoff would have written it, so a test
 * can check that this build refuses the store without touching it.
 * Talks to LMDB directly (a test tool, not the broker).
 *
 *   bump-format DATA_DIR     prints "OLD NEW"; exit 0, or 1 on error
 */
#include <lmdb.h>
#include <stdint.h>
#include <stdio.h>

int main(int argc, char **argv)
{
	MDB_env *env = NULL;
	MDB_txn *txn = NULL;
	MDB_dbi meta;
	MDB_val k = { 6, "schema" }, d;
	int rc;

	if (argc != 2) {
		fprintf(stderr, "usage: bump-format DATA_DIR\n");
		return 1;
	}
	rc = mdb_env_create(&env);
	if (!rc)
		rc = mdb_env_set_maxdbs(env, 32);
	if (!rc)
		rc = mdb_env_open(env, argv[1], 0, 0600);
	if (!rc)
		rc = mdb_txn_begin(env, NULL, 0, &txn);
	if (!rc)
		rc = mdb_dbi_open(txn, "meta", 0, &meta);
	if (!rc)
		rc = mdb_get(txn, meta, &k, &d);
	if (!rc && d.mv_size != 4)
		rc = MDB_INCOMPATIBLE;
	if (rc)
		goto out;
	const uint8_t *b = d.mv_data;
	uint32_t old = (uint32_t)b[0] << 24 | (uint32_t)b[1] << 16 |
		       (uint32_t)b[2] << 8 | b[3];
	uint32_t v = old + 1;
	uint8_t nb[4] = { (uint8_t)(v >> 24), (uint8_t)(v >> 16),
			  (uint8_t)(v >> 8), (uint8_t)v };
	MDB_val nd = { 4, nb };
	rc = mdb_put(txn, meta, &k, &nd, 0);
	if (!rc) {
		rc = mdb_txn_commit(txn);
		txn = NULL;
	}
	if (!rc)
		printf("%u %u\n", old, v);
out:
	if (txn)
		mdb_txn_abort(txn);
	if (env)
		mdb_env_close(env);
	if (rc)
		fprintf(stderr, "bump-format %s: %s\n", argv[1],
			mdb_strerror(rc));
	return rc ? 1 : 0;
}
