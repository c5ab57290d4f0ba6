BEGIN TRANSACTION;
CREATE TABLE approvals (
        name TEXT PRIMARY KEY,
        image TEXT NOT NULL,
        at TEXT NOT NULL
    );
INSERT INTO "approvals" VALUES('biglearn-api','ami-00000002','2026-11-26T09:20:00.000000Z');
CREATE TABLE failures (
        name TEXT PRIMARY KEY,
        count INTEGER NOT NULL CHECK (count >= 0),
        reason TEXT NOT NULL,
        at TEXT NOT NULL,
        next_retry_at TEXT NOT NULL,
        revision TEXT NOT NULL,
        image TEXT NOT NULL
    );
INSERT INTO "failures" VALUES('biglearn-api',1,'migrate update rolled back: Resource creation cancelled','2026-11-26T09:30:00.000000Z','2026-11-26T09:40:00.000000Z','aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa','ami-00000002');
CREATE TABLE outbox (
        key TEXT NOT NULL,
        sink TEXT NOT NULL,
        payload TEXT NOT NULL,
        created_at TEXT NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0 CHECK (attempts >= 0),
        next_attempt_at TEXT,
        delivered_at TEXT,
        last_error TEXT,
        PRIMARY KEY (key, sink)
    );
INSERT INTO "outbox" VALUES('biglearn-api|aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa|rollout_started','default','{}','2026-11-26T09:50:00.000000Z',0,'2026-11-26T09:50:00.000000Z',NULL,NULL);
CREATE TABLE pending (
        name TEXT PRIMARY KEY,
        kind TEXT NOT NULL CHECK (kind IN ('migrate', 'switch', 'scale')),
        image TEXT NOT NULL,
        revision TEXT NOT NULL,
        token TEXT NOT NULL,
        sent_at TEXT NOT NULL,
        expected TEXT NOT NULL
    );
INSERT INTO "pending" VALUES('biglearn-api','migrate','ami-00000002','aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa','reconciler-migrate-ami-00000002-0123456789abcdef0123','2026-11-26T09:50:00.000000Z','{"MigrationDesiredCapacity":"1","MigrationLcImageId":"ami-00000002"}');
CREATE TABLE rollouts (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        name TEXT NOT NULL,
        image TEXT NOT NULL,
        revision TEXT NOT NULL,
        from_image TEXT,
        started_at TEXT NOT NULL,
        phase1_started_at TEXT,
        migrated_at TEXT,
        approved_at TEXT,
        switch_started_at TEXT,
        switched_at TEXT,
        finished_at TEXT,
        result TEXT CHECK (result IN ('succeeded', 'failed', 'superseded')),
        reason TEXT, scaling_suspended_at TEXT, scaling_resumed_at TEXT,
        CHECK ((result IS NULL) = (finished_at IS NULL))
    );
INSERT INTO "rollouts" VALUES(1,'biglearn-api','ami-00000001','0000000000000000000000000000000000000000',NULL,'2026-11-24T10:00:00.000000Z','2026-11-24T10:01:00.000000Z','2026-11-24T10:10:00.000000Z',NULL,'2026-11-24T10:11:00.000000Z','2026-11-24T10:20:00.000000Z','2026-11-24T10:21:00.000000Z','succeeded',NULL,NULL,NULL);
INSERT INTO "rollouts" VALUES(2,'worker','ami-00000001','0000000000000000000000000000000000000000',NULL,'2026-11-25T00:40:00.000000Z',NULL,NULL,NULL,NULL,NULL,'2026-11-25T01:00:00.000000Z','failed','API group not healthy: i-1','2026-11-25T00:50:00.000000Z',NULL);
INSERT INTO "rollouts" VALUES(3,'biglearn-api','ami-00000002','aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa','ami-00000001','2026-11-26T09:50:00.000000Z','2026-11-26T09:50:00.000000Z',NULL,NULL,NULL,NULL,NULL,NULL,NULL,NULL,NULL);
CREATE TABLE runtime_pauses (
        name TEXT PRIMARY KEY,
        reason TEXT NOT NULL,
        at TEXT NOT NULL,
        until TEXT
    );
INSERT INTO "runtime_pauses" VALUES('worker','incident 42','2026-11-26T08:20:00.000000Z','2026-11-26T20:00:00.000000Z');
CREATE TABLE scaling_owned (
        name TEXT PRIMARY KEY,
        processes TEXT NOT NULL
    );
INSERT INTO "scaling_owned" VALUES('worker','["AZRebalance", "Launch"]');
CREATE TABLE schema_version (version INTEGER NOT NULL);
INSERT INTO "schema_version" VALUES(4);
CREATE TABLE window_overrides (
        name TEXT PRIMARY KEY,
        reason TEXT NOT NULL,
        at TEXT NOT NULL,
        until TEXT NOT NULL
    );
INSERT INTO "window_overrides" VALUES('worker','hotfix','2026-11-26T08:30:00.000000Z','2026-11-26T10:30:00.000000Z');
CREATE UNIQUE INDEX rollouts_one_active ON rollouts (name) WHERE result IS NULL;
CREATE INDEX rollouts_by_name ON rollouts (name, id);
CREATE INDEX outbox_due ON outbox (next_attempt_at) WHERE delivered_at IS NULL;
DELETE FROM "sqlite_sequence";
INSERT INTO "sqlite_sequence" VALUES('rollouts',3);
COMMIT;
