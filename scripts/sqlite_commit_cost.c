/*
 * What one group commit costs SQLite itself, outside the server: the L shape's commit (six text messages in six
 * conversations: the dedupe lookup, the seq reservation, the inserts with the FTS5 trigger, the sender's cursor,
 * the webhook lookup) repeated, against the SQLite that sqlite-nio compiles in, with the schema's tables and
 * indexes. Prints CPU and wall time per commit; the WAL's size afterwards gives the pages a commit writes.
 * docs/benchmarks.md ("2026-12-05 22:40 UTC") has the figures. Build and run:
 *
 *   A=.build/checkouts/sqlite-nio/Sources/VaporCSQLite
 *   gcc -O2 -I$A/include -DSQLITE_ENABLE_FTS5 -DSQLITE_SECURE_DELETE -DSQLITE_THREADSAFE=1 -DSQLITE_DQS=0 \
 *       -DSQLITE_DEFAULT_MEMSTATUS=0 scripts/sqlite_commit_cost.c $A/sqlite_nio_sqlite3.c -o /tmp/commit-cost -lm
 *   rm -f /tmp/cc.db*; /tmp/commit-cost /tmp/cc.db 2000 6 "nosync,nockpt"; ls -l /tmp/cc.db-wal
 *
 * Variants (the fourth argument, comma-separated): nosync (synchronous=OFF: CPU without the disk), nockpt (no
 * checkpoints, so the WAL's size counts every page written), nofts (no FTS5 index), defer=N (the trigger queues
 * the message and every Nth commit indexes the queue: what indexing outside the commit would cost),
 * automerge=N / crisismerge=N (FTS5 settings), nosecdel (secure_delete off), nocursor (no cursor update).
 * FTSOPT in the environment replaces the FTS5 table's options.
 */
#include "sqlite_nio_sqlite3.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/resource.h>
#define S(x) sqlite_nio_sqlite3_##x
static sqlite3 *db;
static void ex(const char *sql) { char *e = 0; if (S(exec)(db, sql, 0, 0, &e) != SQLITE_OK) { fprintf(stderr, "%s: %s\n", sql, e); exit(1); } }
static double cpu(void) { struct rusage r; getrusage(RUSAGE_SELF, &r); return r.ru_utime.tv_sec + r.ru_utime.tv_usec/1e6 + r.ru_stime.tv_sec + r.ru_stime.tv_usec/1e6; }
static double wall(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec + t.tv_nsec/1e9; }
static sqlite3_stmt *prep(const char *sql) { sqlite3_stmt *s; if (S(prepare_v3)(db, sql, -1, SQLITE_PREPARE_PERSISTENT, &s, 0)) { fprintf(stderr, "%s: %s\n", sql, S(errmsg)(db)); exit(1);} return s; }
static void run(sqlite3_stmt *s) { while (S(step)(s) == SQLITE_ROW) {} S(reset)(s); S(clear_bindings)(s); }
int main(int argc, char **argv) {
  const char *path = argv[1]; int commits = atoi(argv[2]); int per = atoi(argv[3]);
  const char *variant = argc > 4 ? argv[4] : "";
  S(open_v2)(path, &db, SQLITE_OPEN_CREATE|SQLITE_OPEN_READWRITE|SQLITE_OPEN_NOMUTEX, 0);
  ex("PRAGMA journal_mode=WAL"); ex(strstr(variant,"nosync") ? "PRAGMA synchronous=OFF" : "PRAGMA synchronous=FULL"); ex(strstr(variant,"nockpt") ? "PRAGMA wal_autocheckpoint=0" : "PRAGMA wal_autocheckpoint=4000");
  if (strstr(variant, "nosecdel")) ex("PRAGMA secure_delete=OFF");
  ex("CREATE TABLE IF NOT EXISTS conversations (id INTEGER PRIMARY KEY, type TEXT NOT NULL, name TEXT, last_seq INTEGER NOT NULL DEFAULT 0, direct_key TEXT UNIQUE, created_at INTEGER NOT NULL, send_muted_until INTEGER)");
  ex("CREATE INDEX IF NOT EXISTS conversations_groups ON conversations(id) WHERE type = 'group'");
  ex("CREATE TABLE IF NOT EXISTS members (conv_id INTEGER NOT NULL, user_id INTEGER NOT NULL, role TEXT NOT NULL, read_seq INTEGER NOT NULL DEFAULT 0, delivered_seq INTEGER NOT NULL DEFAULT 0, muted_until INTEGER, send_muted_until INTEGER, PRIMARY KEY (conv_id, user_id)) WITHOUT ROWID");
  ex("CREATE INDEX IF NOT EXISTS members_user ON members(user_id)");
  ex("CREATE TABLE IF NOT EXISTS messages (conv_id INTEGER NOT NULL, seq INTEGER NOT NULL, sender INTEGER NOT NULL, cid TEXT NOT NULL, kind TEXT NOT NULL, text TEXT, data TEXT, attachment TEXT, target INTEGER, ts INTEGER NOT NULL, edited_at INTEGER, recalled INTEGER NOT NULL DEFAULT 0, reply_to INTEGER, mentions TEXT, mention_all INTEGER NOT NULL DEFAULT 0, forwarded TEXT, PRIMARY KEY (conv_id, seq)) WITHOUT ROWID");
  ex("CREATE UNIQUE INDEX IF NOT EXISTS messages_sender_cid ON messages(sender, cid)");
  ex("CREATE INDEX IF NOT EXISTS messages_sender_ts ON messages(sender, ts)");
  ex("CREATE TABLE IF NOT EXISTS webhook_subscriptions (id INTEGER PRIMARY KEY, owner_bot INTEGER, url TEXT, secret TEXT, events TEXT, conv_id INTEGER, enabled INTEGER, disabled_reason TEXT, created_at INTEGER)");
  int defer = strstr(variant, "defer=") ? atoi(strstr(variant, "defer=")+6) : 0;
  if (defer) {
  ex("CREATE VIRTUAL TABLE IF NOT EXISTS message_fts USING fts5(text, content='', contentless_delete=1, tokenize='trigram')");
  ex("CREATE TABLE IF NOT EXISTS fts_pending (conv_id INTEGER NOT NULL, seq INTEGER NOT NULL)");
  ex("CREATE TRIGGER IF NOT EXISTS message_fts_insert AFTER INSERT ON messages WHEN NEW.kind IN ('text', 'attachment') AND NEW.text IS NOT NULL AND NEW.recalled = 0 BEGIN INSERT INTO fts_pending (conv_id, seq) VALUES (NEW.conv_id, NEW.seq); END");
  } else
  if (!strstr(variant, "nofts")) {
  { const char *o = getenv("FTSOPT"); char q[400]; snprintf(q, sizeof q, "CREATE VIRTUAL TABLE IF NOT EXISTS message_fts USING fts5(text, content='', %s tokenize='trigram')", o ? o : "contentless_delete=1,"); ex(q); }
  ex("CREATE TRIGGER IF NOT EXISTS message_fts_insert AFTER INSERT ON messages WHEN NEW.kind IN ('text', 'attachment') AND NEW.text IS NOT NULL AND NEW.recalled = 0 BEGIN INSERT INTO message_fts (rowid, text) VALUES (NEW.conv_id * 4294967296 + NEW.seq, NEW.text); END");
  }
  char *am = strstr(variant, "automerge=");
  if (am) { char q[200]; snprintf(q, sizeof q, "INSERT INTO message_fts(message_fts, rank) VALUES('automerge', %d)", atoi(am+10)); ex(q); }
  char *cm = strstr(variant, "crisismerge=");
  if (cm) { char q[200]; snprintf(q, sizeof q, "INSERT INTO message_fts(message_fts, rank) VALUES('crisismerge', %d)", atoi(cm+12)); ex(q); }
  ex("INSERT OR IGNORE INTO conversations (id, type, last_seq, created_at) SELECT value, 'direct', 0, 0 FROM (WITH RECURSIVE g(value) AS (SELECT 1 UNION ALL SELECT value+1 FROM g WHERE value < 50) SELECT value FROM g)");
  ex("INSERT OR IGNORE INTO members (conv_id, user_id, role) SELECT value, value*2, 'member' FROM (WITH RECURSIVE g(value) AS (SELECT 1 UNION ALL SELECT value+1 FROM g WHERE value < 50) SELECT value FROM g)");
  ex("INSERT OR IGNORE INTO members (conv_id, user_id, role) SELECT value, value*2+1, 'member' FROM (WITH RECURSIVE g(value) AS (SELECT 1 UNION ALL SELECT value+1 FROM g WHERE value < 50) SELECT value FROM g)");
  // per-commit statements, single-row forms prepared once (what the C driver could do)
  sqlite3_stmt *begin = prep("BEGIN IMMEDIATE"), *commit = prep("COMMIT");
  sqlite3_stmt *dedupe = prep("SELECT conv_id FROM messages WHERE sender = ?1 AND cid = ?2");
  sqlite3_stmt *reserve = prep("UPDATE conversations SET last_seq = last_seq + ?2 WHERE id = ?1 RETURNING id, last_seq");
  sqlite3_stmt *ins = prep("INSERT INTO messages (conv_id, seq, sender, cid, kind, text, data, attachment, target, ts, edited_at, recalled, reply_to, mentions, mention_all, forwarded) VALUES (?1, ?2, ?3, ?4, 'text', ?5, NULL, NULL, NULL, ?6, NULL, 0, NULL, NULL, 0, NULL)");
  sqlite3_stmt *cur = prep("UPDATE members SET read_seq = ?3, delivered_seq = ?3 WHERE conv_id = ?1 AND user_id = ?2 AND read_seq < ?3");
  sqlite3_stmt *subs = prep("SELECT id, owner_bot, events, conv_id FROM webhook_subscriptions WHERE enabled = 1");
  static int msgno = 0; int conv = 0;
  double c0 = cpu(), w0 = wall(); double maxw = 0;
  double *lat = malloc(sizeof(double) * commits);
  for (int k = 0; k < commits; k++) {
    double ws = wall();
    run(begin);
    int convs[64], seqs[64];
    for (int i = 0; i < per; i++) { convs[i] = (conv++ % 10) + 1; }
    for (int i = 0; i < per; i++) { char cid[64]; snprintf(cid, sizeof cid, "tagx-%d-%d", convs[i], msgno + i); S(bind_int64)(dedupe, 1, convs[i]*2); S(bind_text)(dedupe, 2, cid, -1, SQLITE_TRANSIENT); run(dedupe); }
    for (int i = 0; i < per; i++) { S(bind_int64)(reserve, 1, convs[i]); S(bind_int64)(reserve, 2, 1); if (S(step)(reserve) == SQLITE_ROW) seqs[i] = S(column_int64)(reserve, 1); while (S(step)(reserve) == SQLITE_ROW) {} S(reset)(reserve); }
    for (int i = 0; i < per; i++) {
      char cid[64], text[96]; snprintf(cid, sizeof cid, "tagx-%d-%d", convs[i], msgno); snprintf(text, sizeof text, "tagx:%d:%d:%lld", convs[i], msgno, 1733400000000000000LL + msgno * 7919LL);
      msgno++;
      S(bind_int64)(ins, 1, convs[i]); S(bind_int64)(ins, 2, seqs[i]); S(bind_int64)(ins, 3, convs[i]*2); S(bind_text)(ins, 4, cid, -1, SQLITE_TRANSIENT);
      S(bind_text)(ins, 5, text, -1, SQLITE_TRANSIENT); S(bind_int64)(ins, 6, 1733400000000LL + msgno); run(ins);
      if (!strstr(variant, "nocursor")) { S(bind_int64)(cur, 1, convs[i]); S(bind_int64)(cur, 2, convs[i]*2); S(bind_int64)(cur, 3, seqs[i]); run(cur); }
    }
    run(subs);
    if (defer && (k % defer) == defer - 1) {
      ex("INSERT INTO message_fts (rowid, text) SELECT m.conv_id * 4294967296 + m.seq, m.text FROM fts_pending p JOIN messages m ON m.conv_id = p.conv_id AND m.seq = p.seq WHERE m.text IS NOT NULL AND m.recalled = 0");
      ex("DELETE FROM fts_pending");
    }
    run(commit);
    lat[k] = wall() - ws;
  }
  double c1 = cpu(), w1 = wall();
  int cmp(const void *a, const void *b) { double x = *(double*)a, y = *(double*)b; return x < y ? -1 : x > y; }
  qsort(lat, commits, sizeof(double), cmp);
  printf("%-30s commits %d x %d: cpu/commit %.1f us, wall/commit %.1f us, p50 %.1f us p99 %.1f us, cpu/msg %.1f us\n", variant, commits, per,
    (c1-c0)/commits*1e6, (w1-w0)/commits*1e6, lat[commits/2]*1e6, lat[commits*99/100]*1e6, (c1-c0)/commits/per*1e6);
  S(close)(db);
  return 0;
}
