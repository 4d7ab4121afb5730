//! The copy: every table in batches (resumable), then the cache data, then the verification.

use std::collections::HashMap;
use std::time::Instant;

use serde::Serialize;

use super::cache::{self, CacheData, CacheReport, CategoryReport, Members};
use super::mysql::MysqlDb;
use super::redis_side::RedisSide;
use super::sqlite::SqliteDb;
use super::tables::{Checksum, TABLES, TableSpec, row_key};
use super::{
    CopyObserver, CopyOptions, DEFAULT_BATCH, Db, DbUrl, MigrateError, MigrateResult, Progress,
};

/// Largest batch accepted: a batch is held in memory and written in one transaction.
const MAX_BATCH: usize = 100_000;

/// The outcome of [`copy`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CopyReport {
    /// Source (password hidden).
    pub from: String,
    /// Destination (password hidden).
    pub to: String,
    /// Per table, in copy order.
    pub tables: Vec<TableReport>,
    /// The cache data, when both sides have a cache.
    pub cache: Option<CacheReport>,
    /// Whether every table and cache category matched; `None` without verification.
    pub verified: Option<bool>,
    /// Things an operator should know (absent tables or columns, skipped rows, cache data
    /// left behind).
    pub warnings: Vec<String>,
    /// Rows read from the source and written (or skipped) by this run.
    pub rows_copied: u64,
    /// Wall time of this run.
    pub seconds: f64,
    /// `rows_copied / seconds` of the table phase alone.
    pub rows_per_second: f64,
}

/// One table of a [`CopyReport`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TableReport {
    /// Table (SQLite name).
    pub table: &'static str,
    /// The source has no such table (an original database has no `IMTransmitFile`).
    pub absent_in_source: bool,
    /// Rows written to the destination by this copy, all runs together.
    pub copied: u64,
    /// Rows written (or skipped) by this run.
    pub copied_now: u64,
    /// Rows left out because they repeat a destination unique key.
    pub skipped: u64,
    /// Their ids (the first hundred).
    pub skipped_ids: Vec<i64>,
    /// Rows in the source (counted at the start; recounted by the verification).
    pub source_rows: u64,
    /// Rows in the destination (verification).
    pub dest_rows: Option<u64>,
    /// Checksum of the source rows (verification).
    pub source_checksum: Option<String>,
    /// Checksum of the destination rows (verification).
    pub dest_checksum: Option<String>,
    /// Destination rows = source rows minus the skipped ones, checksums included.
    pub verified: Option<bool>,
}

/// Where cache data lives on one side.
enum CacheSide<'a> {
    Embedded(&'a SqliteDb),
    Redis(Box<RedisSide>),
}

impl CacheSide<'_> {
    fn name(&self) -> String {
        match self {
            CacheSide::Embedded(_) => "embedded".into(),
            CacheSide::Redis(r) => r.shown.clone(),
        }
    }

    async fn read(&self) -> MigrateResult<CacheData> {
        match self {
            CacheSide::Embedded(db) => cache::read_embedded(db).await,
            CacheSide::Redis(r) => r.read().await,
        }
    }
}

/// Copies `from` into `to` (see the module documentation of [`super`]).
pub async fn copy(
    from: &str,
    to: &str,
    options: &CopyOptions,
    observer: &dyn CopyObserver,
) -> MigrateResult<CopyReport> {
    let started = Instant::now();
    let (from_url, to_url) = (DbUrl::parse(from)?, DbUrl::parse(to)?);
    let (source_name, dest_name) = (from_url.display(), to_url.display());
    if source_name == dest_name {
        return Err(MigrateError::Source(format!(
            "{source_name} is both the source and the destination"
        )));
    }
    let batch = options.batch.clamp(1, MAX_BATCH);
    let src = match &from_url {
        DbUrl::Sqlite(path) => Db::Sqlite(SqliteDb::open_source(path).await?),
        DbUrl::Mysql(url) => Db::Mysql(MysqlDb::open_source(url).await?),
    };
    if options.teamtalk_import {
        let user = super::tables::table("IMUser")
            .ok_or_else(|| MigrateError::Source("IMUser is missing from the table list".into()))?;
        if !matches!(src, Db::Mysql(_)) || !src.exists(user).await? {
            return Err(MigrateError::Source(format!(
                "{source_name}: not an original TeamTalk database (expected mysql://... with \
                 the IMUser table)"
            )));
        }
    }
    let dst = match &to_url {
        DbUrl::Sqlite(path) => Db::Sqlite(SqliteDb::open_destination(path).await?),
        DbUrl::Mysql(url) => Db::Mysql(MysqlDb::open_destination(url).await?.0),
    };
    let src_cache = cache_side(&src, options.from_redis.as_ref(), "--from-redis").await?;
    let dst_cache = cache_side(&dst, options.to_redis.as_ref(), "--to-redis").await?;

    if options.restart {
        dst.reset_progress().await?;
    }
    let mut progress: HashMap<String, Progress> = HashMap::new();
    for (recorded, p) in dst.load_progress().await? {
        if recorded != source_name {
            return Err(MigrateError::OtherSource {
                recorded,
                requested: source_name,
            });
        }
        progress.insert(p.table.clone(), p);
    }

    let mut warnings = Vec::new();
    let mut reports = Vec::with_capacity(TABLES.len());
    let mut batches = 0u64;
    let mut rows_copied = 0u64;
    for t in TABLES {
        let mut p = progress
            .remove(t.name)
            .unwrap_or_else(|| Progress::start(t.name));
        let absent = !src.exists(t).await?;
        let mut report = TableReport {
            table: t.name,
            absent_in_source: absent,
            copied: p.copied,
            copied_now: 0,
            skipped: p.skipped.rows,
            skipped_ids: p.skipped_ids.clone(),
            source_rows: 0,
            dest_rows: None,
            source_checksum: None,
            dest_checksum: None,
            verified: None,
        };
        if absent {
            warnings.push(format!("{}: not in the source, left empty", t.name));
            reports.push(report);
            continue;
        }
        let missing = src.missing_columns(t).await?;
        if !missing.is_empty() {
            warnings.push(format!(
                "{}: the source lacks column(s) {}; copied as 0 or ''",
                t.name,
                missing.join(", ")
            ));
        }
        report.source_rows = src.count(t).await?;
        observer.table_started(t.name, report.source_rows, p.copied + p.skipped.rows);
        let mut rows = src.read_batch(t, p.last_id, batch).await?;
        while !rows.is_empty() {
            let n = rows.len() as u64;
            let more = rows.len() == batch;
            let after = rows.last().map_or(p.last_id, row_key);
            let (written, next) = tokio::join!(dst.write_batch(t, rows, &p, &source_name), async {
                if more {
                    src.read_batch(t, after, batch).await
                } else {
                    Ok(Vec::new())
                }
            });
            p = written?;
            report.copied_now += n;
            rows_copied += n;
            observer.rows_copied(t.name, n);
            batches += 1;
            if options.stop_after_batches == Some(batches) {
                return Err(MigrateError::Stopped(batches));
            }
            if !options.pause.is_zero() {
                tokio::time::sleep(options.pause).await;
            }
            rows = next?;
        }
        observer.table_finished(t.name);
        report.copied = p.copied;
        report.skipped = p.skipped.rows;
        report.skipped_ids = p.skipped_ids.clone();
        if p.skipped.rows > 0 {
            warnings.push(format!(
                "{}: {} row(s) skipped, they repeat a unique key of an earlier row (ids {:?})",
                t.name, p.skipped.rows, p.skipped_ids
            ));
        }
        progress.insert(t.name.to_owned(), p);
        reports.push(report);
    }
    let table_seconds = started.elapsed().as_secs_f64();

    let mut cache_report = None;
    let mut expected_cache = None;
    match (&src_cache, &dst_cache) {
        (Some(from), Some(into)) => {
            observer.phase_started("cache", 1);
            let (report, expected) = copy_cache(from, into, &dst).await?;
            if !report.member_hash_mismatches.is_empty() {
                warnings.push(format!(
                    "groups {:?}: the source's Redis member hash differs from IMGroupMember; \
                     IMGroupMember was kept",
                    report.member_hash_mismatches
                ));
            }
            if report.malformed_entries > 0 {
                warnings.push(format!(
                    "{} cache entries could not be parsed and were left out",
                    report.malformed_entries
                ));
            }
            observer.phase_step("cache");
            cache_report = Some(report);
            expected_cache = Some(expected);
        }
        (None, Some(_)) => warnings.push(
            "cache data not copied: the source has none here (give --from-redis for a MySQL \
             source); unread counters and device tokens start empty, ids continue above the \
             stored messages"
                .into(),
        ),
        (Some(_), None) => warnings.push(
            "cache data not copied: give --to-redis for a MySQL destination; unread counters \
             and device tokens are left behind"
                .into(),
        ),
        (None, None) => {}
    }

    let mut verified = None;
    if options.verify {
        observer.phase_started("verify", TABLES.len() as u64 + 1);
        let mut all = true;
        let scan_batch = batch.max(DEFAULT_BATCH);
        for (t, report) in TABLES.iter().zip(reports.iter_mut()) {
            let skipped = progress.get(t.name).map(|p| p.skipped).unwrap_or_default();
            let (source, dest) = tokio::join!(
                checksum(&src, t, scan_batch, report.absent_in_source),
                checksum(&dst, t, scan_batch, false)
            );
            let (source, dest) = (source?, dest?);
            let ok = dest == source.minus(&skipped);
            all &= ok;
            report.source_rows = source.rows;
            report.dest_rows = Some(dest.rows);
            report.source_checksum = Some(source.hex());
            report.dest_checksum = Some(dest.hex());
            report.verified = Some(ok);
            observer.phase_step(t.name);
        }
        if let (Some(into), Some(report), Some(expected)) =
            (&dst_cache, cache_report.as_mut(), &expected_cache)
        {
            let back = into.read().await?;
            for (category, (_, n, digest)) in report.categories.iter_mut().zip(back.categories()) {
                let want = expected
                    .categories()
                    .into_iter()
                    .find(|(name, _, _)| *name == category.name);
                let ok = want.is_some_and(|(_, wn, wd)| wn == n && wd == digest);
                category.destination = Some(n);
                category.equal = Some(ok);
                all &= ok;
            }
        }
        observer.phase_step("cache");
        verified = Some(all);
    }
    src.close().await;
    dst.close().await;
    Ok(CopyReport {
        from: source_name,
        to: dest_name,
        tables: reports,
        cache: cache_report,
        verified,
        warnings,
        rows_copied,
        seconds: started.elapsed().as_secs_f64(),
        rows_per_second: if table_seconds > 0.0 {
            rows_copied as f64 / table_seconds
        } else {
            0.0
        },
    })
}

/// The cache side of a database: SQLite's own tables, or the Redis given for MySQL.
async fn cache_side<'a>(
    db: &'a Db,
    redis: Option<&crate::config::RedisConfig>,
    flag: &str,
) -> MigrateResult<Option<CacheSide<'a>>> {
    match (db, redis) {
        (Db::Sqlite(_), Some(_)) => Err(MigrateError::Url(format!(
            "{flag}: a SQLite database keeps its cache data in its own file; give a Redis \
             only for a MySQL side"
        ))),
        (Db::Sqlite(db), None) => Ok(Some(CacheSide::Embedded(db))),
        (Db::Mysql(_), Some(config)) => Ok(Some(CacheSide::Redis(Box::new(
            RedisSide::connect(config).await?,
        )))),
        (Db::Mysql(_), None) => Ok(None),
    }
}

/// Copies the cache data; returns the report and what the destination must hold now.
async fn copy_cache(
    from: &CacheSide<'_>,
    into: &CacheSide<'_>,
    dst: &Db,
) -> MigrateResult<(CacheReport, CacheData)> {
    let mut data = from.read().await?;
    let raised = data.raise_to_floors(&dst.floors().await?);
    let members = cache::members_from_tables(dst, DEFAULT_BATCH).await?;
    let mismatches = match from {
        CacheSide::Redis(_) => cache::member_mismatches(&data.group_members, &members),
        CacheSide::Embedded(_) => Vec::new(),
    };
    let malformed = data.malformed;
    data.malformed = 0;
    data.group_members = match into {
        CacheSide::Embedded(db) => {
            cache::write_embedded(db, &data).await?;
            Members::new()
        }
        CacheSide::Redis(r) => {
            r.write(&data, &members).await?;
            members
        }
    };
    let report = CacheReport {
        source: from.name(),
        destination: into.name(),
        categories: data
            .categories()
            .into_iter()
            .map(|(name, n, _)| CategoryReport {
                name,
                source: n,
                destination: None,
                equal: None,
            })
            .collect(),
        malformed_entries: malformed,
        raised_sequences: raised,
        member_hash_mismatches: mismatches,
    };
    Ok((report, data))
}

/// Row count and checksum of a whole table (empty when `absent`).
async fn checksum(db: &Db, t: &TableSpec, batch: usize, absent: bool) -> MigrateResult<Checksum> {
    let mut sum = Checksum::default();
    if absent {
        return Ok(sum);
    }
    let mut after = i64::MIN;
    loop {
        let rows = db.read_batch(t, after, batch).await?;
        let Some(last) = rows.last() else {
            return Ok(sum);
        };
        after = row_key(last);
        rows.iter().for_each(|row| sum.add(row));
    }
}
