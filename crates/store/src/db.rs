//! The small database layer the store is written once against: two pools, two kinds of
//! transaction and two kinds of row behind enums, a statement type ([`Sql`]) whose values
//! ([`Arg`]) are bound the way each engine stores them, and a [`Dialect`] that spells the few
//! things the engines spell differently.
//!
//! Every method of [`crate::Store`] except the bulk writes goes through here; the bulk writes
//! (`sqlite/bulk.rs`: prepared multi-row upserts and the index rebuild; `postgres/bulk.rs`:
//! `COPY` into staging tables) stay native, because that is where each engine is fast in its
//! own way.
//!
//! Weighed and rejected:
//! - sqlx's `Any` driver: it has no chrono types, no `TIMESTAMPTZ` and no `COPY`, so timestamps
//!   would become text and the PostgreSQL bulk path would have to leave it anyway.
//! - Generic code over `sqlx::Database`: every function grows bounds such as
//!   `for<'q> <DB as HasArguments<'q>>::Arguments: IntoArguments<'q, DB>` plus one `Encode` and
//!   `Decode` bound per type, which hide the SQL the function is about.
//! - One crate per backend: moves the twin implementations into two crates without removing them.
//! - An ORM or query builder: it would rewrite SQL whose plans were measured (BENCHMARKS.md).
//!
//! The cost is one `match` per statement and per column read, nothing per row of a bulk write.

use std::borrow::Cow;

use chrono::{DateTime, NaiveDate, Utc};
use sqlx::postgres::{PgArguments, PgConnection, PgPool, PgRow};
use sqlx::query::Query;
use sqlx::sqlite::{SqliteArguments, SqliteConnection, SqlitePool, SqliteRow};
use sqlx::{AssertSqlSafe, Postgres, Row as _, Sqlite, TypeInfo, ValueRef};

use crate::common::{RowExt, from_micros, micros, truncate_micros};
use crate::error::{Result, StoreError};
use crate::types::Backend;

pub(crate) fn db(op: &'static str) -> impl FnOnce(sqlx::Error) -> StoreError {
    StoreError::db(op)
}

// ---- values ------------------------------------------------------------------------------------

/// A bind value. Each engine binds it as it stores the type: timestamps as INTEGER microseconds
/// on SQLite and TIMESTAMPTZ on PostgreSQL, id lists as one JSON text on SQLite (expanded with
/// `json_each`) and as an array on PostgreSQL.
#[derive(Debug, Clone)]
pub(crate) enum Arg {
    Int(i64),
    Text(String),
    Time(DateTime<Utc>),
    Float(f64),
    Bool(bool),
    Bytes(Vec<u8>),
    Date(NaiveDate),
    Ints(Vec<i64>),
    Texts(Vec<String>),
    /// A NULL of the given type (PostgreSQL types every parameter).
    Null(Kind),
}

#[derive(Debug, Clone, Copy)]
pub(crate) enum Kind {
    Int,
    Text,
    Time,
    Float,
    Bool,
    Bytes,
    Date,
}

/// A Rust value that binds as an [`Arg`].
pub(crate) trait ToArg {
    fn to_arg(self) -> Arg;
}

/// A [`ToArg`] whose NULL has a type, so that `Option<T>` binds too.
pub(crate) trait Typed: ToArg {
    const KIND: Kind;
}

impl ToArg for Arg {
    fn to_arg(self) -> Arg {
        self
    }
}

impl<T: Typed> ToArg for Option<T> {
    fn to_arg(self) -> Arg {
        self.map_or(Arg::Null(T::KIND), ToArg::to_arg)
    }
}

macro_rules! typed {
    ($kind:ident: $($t:ty => |$v:ident| $e:expr),+ $(,)?) => {$(
        impl ToArg for $t {
            fn to_arg(self) -> Arg {
                let $v = self;
                Arg::$kind($e)
            }
        }
        impl Typed for $t {
            const KIND: Kind = Kind::$kind;
        }
    )+};
}

typed!(Int: i64 => |v| v, i32 => |v| i64::from(v), u32 => |v| i64::from(v),
    rampart_model::IntegrationId => |v| v.get(), rampart_model::RunId => |v| v.get());
typed!(Text: String => |v| v, &str => |v| v.to_owned(), &String => |v| v.clone(),
    Cow<'_, str> => |v| v.into_owned());
typed!(Time: DateTime<Utc> => |v| v);
typed!(Float: f64 => |v| v);
typed!(Bool: bool => |v| v);
typed!(Bytes: &[u8] => |v| v.to_vec(), &Vec<u8> => |v| v.clone());
typed!(Date: NaiveDate => |v| v);

/// A statement: SQL text with `$n` placeholders (both engines take them) and the values to bind,
/// in order. User input only ever travels as a bound value.
#[derive(Debug, Default)]
pub(crate) struct Sql {
    pub text: String,
    pub args: Vec<Arg>,
    /// Whether the outer query has its WHERE yet (subqueries in the text have their own).
    has_where: bool,
}

/// A statement of fixed text; add its values with [`Sql::bind`].
pub(crate) fn q(text: &str) -> Sql {
    Sql::new(text)
}

impl Sql {
    pub(crate) fn new(text: &str) -> Self {
        Self {
            text: text.to_owned(),
            args: Vec::new(),
            has_where: false,
        }
    }

    /// Adds the next value.
    pub(crate) fn bind(mut self, v: impl ToArg) -> Self {
        self.args.push(v.to_arg());
        self
    }

    /// Adds a value and returns its placeholder.
    pub(crate) fn arg(&mut self, a: Arg) -> String {
        self.args.push(a);
        format!("${}", self.args.len())
    }

    pub(crate) fn and(&mut self, clause: &str) {
        self.text
            .push_str(if self.has_where { " AND " } else { " WHERE " });
        self.has_where = true;
        self.text.push_str(clause);
    }
}

fn json<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_string(v).unwrap_or_else(|_| "[]".to_owned())
}

pub(crate) fn bind_sqlite<'q>(
    mut q: Query<'q, Sqlite, SqliteArguments>,
    args: &'q [Arg],
) -> Query<'q, Sqlite, SqliteArguments> {
    for a in args {
        q = match a {
            Arg::Int(v) => q.bind(*v),
            Arg::Text(v) => q.bind(v.as_str()),
            Arg::Time(v) => q.bind(micros(*v)),
            Arg::Float(v) => q.bind(*v),
            Arg::Bool(v) => q.bind(*v),
            Arg::Bytes(v) => q.bind(v.as_slice()),
            Arg::Date(v) => q.bind(*v),
            Arg::Ints(v) => q.bind(json(v)),
            Arg::Texts(v) => q.bind(json(v)),
            Arg::Null(Kind::Int | Kind::Time) => q.bind(None::<i64>),
            Arg::Null(Kind::Text) => q.bind(None::<String>),
            Arg::Null(Kind::Float) => q.bind(None::<f64>),
            Arg::Null(Kind::Bool) => q.bind(None::<bool>),
            Arg::Null(Kind::Bytes) => q.bind(None::<Vec<u8>>),
            Arg::Null(Kind::Date) => q.bind(None::<NaiveDate>),
        };
    }
    q
}

pub(crate) fn bind_postgres<'q>(
    mut q: Query<'q, Postgres, PgArguments>,
    args: &'q [Arg],
) -> Query<'q, Postgres, PgArguments> {
    for a in args {
        q = match a {
            Arg::Int(v) => q.bind(*v),
            Arg::Text(v) => q.bind(v.as_str()),
            Arg::Time(v) => q.bind(truncate_micros(*v)),
            Arg::Float(v) => q.bind(*v),
            Arg::Bool(v) => q.bind(*v),
            Arg::Bytes(v) => q.bind(v.as_slice()),
            Arg::Date(v) => q.bind(*v),
            Arg::Ints(v) => q.bind(v.as_slice()),
            Arg::Texts(v) => q.bind(v.as_slice()),
            Arg::Null(Kind::Int) => q.bind(None::<i64>),
            Arg::Null(Kind::Text) => q.bind(None::<String>),
            Arg::Null(Kind::Time) => q.bind(None::<DateTime<Utc>>),
            Arg::Null(Kind::Float) => q.bind(None::<f64>),
            Arg::Null(Kind::Bool) => q.bind(None::<bool>),
            Arg::Null(Kind::Bytes) => q.bind(None::<Vec<u8>>),
            Arg::Null(Kind::Date) => q.bind(None::<NaiveDate>),
        };
    }
    q
}

// ---- the differences in spelling ---------------------------------------------------------------

/// What the two engines spell differently.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Dialect {
    pub backend: Backend,
    /// `LIKE` on SQLite (case-insensitive for ASCII), `ILIKE` on PostgreSQL.
    pub ilike: &'static str,
    /// Appended to a text expression to compare it byte-wise, as SQLite does: empty on SQLite,
    /// ` COLLATE "C"` on PostgreSQL (whose default collation depends on the server's locale).
    pub collate_c: &'static str,
    /// The two-argument minimum: `min` on SQLite, `LEAST` on PostgreSQL.
    pub least: &'static str,
    /// Appended to a SELECT that reads rows a transaction is about to change: ` FOR UPDATE` on
    /// PostgreSQL; nothing on SQLite, whose write transactions start with the write lock.
    pub for_update: &'static str,
    /// Appended to the SELECT that picks a job: a job another worker is claiming right now is
    /// passed over, not waited for (PostgreSQL). SQLite's single writer picks atomically.
    pub skip_locked: &'static str,
    /// Run first in a claim's transaction so that claims happen one at a time across processes
    /// (a transaction-scoped advisory lock on PostgreSQL; SQLite's `BEGIN IMMEDIATE` already
    /// holds its only write lock). Claims are rare and short, so nobody waits long.
    pub serialise_claims: Option<&'static str>,
    /// A duration of zero, of the type a difference of two timestamps has: microseconds on
    /// SQLite, an interval on PostgreSQL.
    pub zero_duration: &'static str,
    /// The aggregate listing the distinct values of a text expression, separated by commas.
    pub distinct_list: fn(&str) -> String,
}

impl Dialect {
    pub(crate) const SQLITE: Dialect = Dialect {
        backend: Backend::Sqlite,
        ilike: "LIKE",
        collate_c: "",
        least: "min",
        for_update: "",
        skip_locked: "",
        serialise_claims: None,
        zero_duration: "0",
        distinct_list: |e| format!("group_concat(DISTINCT {e})"),
    };

    pub(crate) const POSTGRES: Dialect = Dialect {
        backend: Backend::Postgres,
        ilike: "ILIKE",
        collate_c: " COLLATE \"C\"",
        least: "LEAST",
        for_update: " FOR UPDATE",
        skip_locked: " FOR UPDATE SKIP LOCKED",
        // The key is Rampart's own: "ramp" in ASCII.
        serialise_claims: Some("SELECT pg_advisory_xact_lock(1918987632)"),
        zero_duration: "interval '0'",
        distinct_list: |e| format!("string_agg(DISTINCT {e}, ',')"),
    };

    /// The keyset condition `(key, id) cmp (pk, pid)` (`cmp` is `<` or `>`) that each engine reads
    /// as a range of an index on (key, id), as EXPLAIN shows: PostgreSQL takes the row comparison
    /// as an index condition; SQLite walks the index from its start for it, and needs the key's
    /// bound spelt out.
    pub(crate) fn keyset(&self, key: &str, id: &str, cmp: &str, pk: &str, pid: &str) -> String {
        match self.backend {
            Backend::Sqlite => {
                format!("{key} {cmp}= {pk} AND ({key} {cmp} {pk} OR {id} {cmp} {pid})")
            }
            Backend::Postgres => format!("({key}, {id}) {cmp} ({pk}, {pid})"),
        }
    }

    /// `column IN` the list bound at `ph` ([`Arg::Ints`] or [`Arg::Texts`]): one parameter,
    /// whatever the count.
    pub(crate) fn in_list(&self, column: &str, ph: &str) -> String {
        match self.backend {
            Backend::Sqlite => format!("{column} IN (SELECT value FROM json_each({ph}))"),
            Backend::Postgres => format!("{column} = ANY({ph})"),
        }
    }
}

// ---- pools, transactions, statements -------------------------------------------------------------

/// The connections of a store. SQLite has one writer: a pool of one write connection beside a
/// pool of read-only connections (readers never wait for the writer in WAL mode).
#[derive(Debug)]
pub(crate) enum Pool {
    Sqlite { read: SqlitePool, write: SqlitePool },
    Postgres(PgPool),
}

/// A transaction on either engine.
pub(crate) enum Tx {
    Sqlite(sqlx::Transaction<'static, Sqlite>),
    Postgres(sqlx::Transaction<'static, Postgres>),
}

/// Where a statement runs: a pool (any of its connections) or one connection (a transaction's).
pub(crate) enum On<'c> {
    SqlitePool(&'c SqlitePool),
    PgPool(&'c PgPool),
    Sqlite(&'c mut SqliteConnection),
    Postgres(&'c mut PgConnection),
}

/// A result row of either engine; decoded with [`RowExt`].
pub(crate) enum Row {
    Sqlite(SqliteRow),
    Postgres(PgRow),
}

impl Pool {
    pub(crate) fn dialect(&self) -> Dialect {
        match self {
            Pool::Sqlite { .. } => Dialect::SQLITE,
            Pool::Postgres(_) => Dialect::POSTGRES,
        }
    }

    /// For statements that only read.
    pub(crate) fn read(&self) -> On<'_> {
        match self {
            Pool::Sqlite { read, .. } => On::SqlitePool(read),
            Pool::Postgres(p) => On::PgPool(p),
        }
    }

    /// For a statement that writes, on its own (it is its own transaction).
    pub(crate) fn write(&self) -> On<'_> {
        match self {
            Pool::Sqlite { write, .. } => On::SqlitePool(write),
            Pool::Postgres(p) => On::PgPool(p),
        }
    }

    /// A write transaction. On SQLite it starts with `BEGIN IMMEDIATE`, which takes the write
    /// lock up front: a deferred transaction that reads first and writes later could fail at once
    /// with SQLITE_BUSY when another process wrote in between, instead of waiting for the busy
    /// timeout.
    pub(crate) async fn begin(&self) -> Result<Tx> {
        let op = "starting a write transaction";
        Ok(match self {
            Pool::Sqlite { write, .. } => {
                Tx::Sqlite(write.begin_with("BEGIN IMMEDIATE").await.map_err(db(op))?)
            }
            Pool::Postgres(p) => Tx::Postgres(p.begin().await.map_err(db(op))?),
        })
    }

    /// A read-only transaction: one snapshot for a page and the rows it refers to (on SQLite a
    /// read transaction in WAL mode is a snapshot already).
    pub(crate) async fn begin_read(&self) -> Result<Tx> {
        let op = "starting a read";
        Ok(match self {
            Pool::Sqlite { read, .. } => Tx::Sqlite(read.begin().await.map_err(db(op))?),
            Pool::Postgres(p) => {
                let mut tx = p.begin().await.map_err(db(op))?;
                sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
                    .execute(&mut *tx)
                    .await
                    .map_err(db(op))?;
                Tx::Postgres(tx)
            }
        })
    }

    pub(crate) async fn close(&self) {
        match self {
            Pool::Sqlite { read, write } => {
                read.close().await;
                write.close().await;
            }
            Pool::Postgres(p) => p.close().await,
        }
    }
}

impl Tx {
    pub(crate) fn on(&mut self) -> On<'_> {
        match self {
            Tx::Sqlite(tx) => On::Sqlite(tx),
            Tx::Postgres(tx) => On::Postgres(tx),
        }
    }

    pub(crate) async fn commit(self, op: &'static str) -> Result<()> {
        match self {
            Tx::Sqlite(tx) => tx.commit().await,
            Tx::Postgres(tx) => tx.commit().await,
        }
        .map_err(db(op))
    }

    /// SQLite: sets the writer's page cache for a statement that reads all of an integration's
    /// findings once (a count, a summary): such a pass gains nothing from a big cache, and the
    /// cache also bounds SQLite's sorter. The fix roll-up's GROUP BY over 2 M findings took
    /// 0.91 s and 37 MB with the writer's 16 MB, 0.63 s and 12 MB with 4 MB; the SLA snapshot's
    /// held a first load's peak memory ~40 MB up. [`Tx::writer_cache`] puts it back.
    pub(crate) async fn scan_cache(&mut self, op: &'static str) -> Result<()> {
        match self {
            Tx::Sqlite(c) => {
                crate::sqlite::bulk::set_cache_kib(c, crate::sqlite::bulk::SCAN_CACHE_KIB, op).await
            }
            Tx::Postgres(_) => Ok(()),
        }
    }

    /// SQLite: the writer's own page cache again, after [`Tx::scan_cache`].
    pub(crate) async fn writer_cache(&mut self, op: &'static str) -> Result<()> {
        match self {
            Tx::Sqlite(c) => {
                crate::sqlite::bulk::set_cache_kib(c, crate::sqlite::bulk::WRITER_CACHE_KIB, op)
                    .await
            }
            Tx::Postgres(_) => Ok(()),
        }
    }

    /// PostgreSQL: how this transaction's one-pass counts over an integration's findings are
    /// planned. The exceptions' correlated subqueries in them (crate::exceptions) inflate their
    /// estimated cost, so PostgreSQL compiled them with JIT (489 functions for the SLA snapshot)
    /// and, with costs that high either way, sorted 1.8 M rows to group them into a dozen groups.
    /// Measured at 20,000 devices: the snapshot 6.0 s with JIT, 2.8 s without, 1.45 s grouped by
    /// hashing (`hash_groups`); the remediation plan's count (grouped by sorting: it counts
    /// distinct values) 2.4–2.7 s with JIT, 2.2–2.3 s without. SQLite has neither: nothing to do.
    pub(crate) async fn plan_counts(&mut self, hash_groups: bool, op: &'static str) -> Result<()> {
        let Tx::Postgres(tx) = self else {
            return Ok(());
        };
        sqlx::query("SET LOCAL jit = off")
            .execute(&mut **tx)
            .await
            .map_err(db(op))?;
        if hash_groups {
            sqlx::query("SET LOCAL enable_sort = off")
                .execute(&mut **tx)
                .await
                .map_err(db(op))?;
        }
        Ok(())
    }
}

/// Runs `$q` on `$on` with `$method`, binding values the way the engine stores them.
macro_rules! run {
    ($on:expr, $sql:expr, $method:ident, $op:expr, |$r:ident| $map:expr) => {{
        let sql = $sql;
        let text = AssertSqlSafe(sql.text.as_str());
        match $on {
            On::SqlitePool(p) => bind_sqlite(sqlx::query(text), &sql.args)
                .$method(p)
                .await
                .map_err(db($op))
                .map(|$r| $map(Row::Sqlite)),
            On::Sqlite(c) => bind_sqlite(sqlx::query(text), &sql.args)
                .$method(&mut *c)
                .await
                .map_err(db($op))
                .map(|$r| $map(Row::Sqlite)),
            On::PgPool(p) => bind_postgres(sqlx::query(text), &sql.args)
                .$method(p)
                .await
                .map_err(db($op))
                .map(|$r| $map(Row::Postgres)),
            On::Postgres(c) => bind_postgres(sqlx::query(text), &sql.args)
                .$method(&mut *c)
                .await
                .map_err(db($op))
                .map(|$r| $map(Row::Postgres)),
        }
    }};
}

impl On<'_> {
    pub(crate) async fn fetch_all(self, sql: &Sql, op: &'static str) -> Result<Vec<Row>> {
        run!(self, sql, fetch_all, op, |rows| |wrap| rows
            .into_iter()
            .map(wrap)
            .collect())
    }

    pub(crate) async fn fetch_optional(self, sql: &Sql, op: &'static str) -> Result<Option<Row>> {
        run!(self, sql, fetch_optional, op, |row| |wrap| row.map(wrap))
    }

    pub(crate) async fn fetch_one(self, sql: &Sql, op: &'static str) -> Result<Row> {
        run!(self, sql, fetch_one, op, |row| |wrap: fn(_) -> Row| wrap(
            row
        ))
    }

    /// Every row, decoded.
    pub(crate) async fn all<T>(
        self,
        sql: &Sql,
        op: &'static str,
        decode: impl Fn(&Row) -> Result<T>,
    ) -> Result<Vec<T>> {
        self.fetch_all(sql, op).await?.iter().map(decode).collect()
    }

    /// The row, if any, decoded.
    pub(crate) async fn maybe<T>(
        self,
        sql: &Sql,
        op: &'static str,
        decode: impl FnOnce(&Row) -> Result<T>,
    ) -> Result<Option<T>> {
        self.fetch_optional(sql, op)
            .await?
            .as_ref()
            .map(decode)
            .transpose()
    }

    /// Runs a statement and returns how many rows it changed.
    pub(crate) async fn execute(self, sql: &Sql, op: &'static str) -> Result<u64> {
        run!(self, sql, execute, op, |done| |_: fn(_) -> Row| done
            .rows_affected())
    }
}

// ---- errors of constraints ------------------------------------------------------------------------

impl StoreError {
    fn database_error(&self) -> Option<&dyn sqlx::error::DatabaseError> {
        match self {
            StoreError::Database {
                source: crate::error::DriverError::Sqlx(source),
                ..
            } => source.as_database_error(),
            _ => None,
        }
    }

    pub(crate) fn is_unique_violation(&self) -> bool {
        self.database_error()
            .is_some_and(|d| d.is_unique_violation())
    }

    pub(crate) fn is_foreign_key_violation(&self) -> bool {
        self.database_error()
            .is_some_and(|d| d.is_foreign_key_violation())
    }

    /// A deadlock (40P01) or serialization failure (40001): the transaction was rolled back and
    /// can simply run again.
    pub(crate) fn is_lock_conflict(&self) -> bool {
        self.database_error()
            .and_then(|d| d.code())
            .is_some_and(|c| c == "40P01" || c == "40001")
    }
}

// ---- rows -----------------------------------------------------------------------------------------

/// Reads a column as the type asked for; a failure names the column.
fn get<'r, T, R>(row: &'r R, col: &str) -> Result<T>
where
    R: sqlx::Row,
    T: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'c> &'c str: sqlx::ColumnIndex<R>,
{
    row.try_get(col).map_err(db("reading a row"))
}

/// A column of a type both engines decode alike.
macro_rules! either {
    ($row:expr, $col:expr) => {
        match $row {
            Row::Sqlite(r) => get(r, $col),
            Row::Postgres(r) => get(r, $col),
        }
    };
}

impl RowExt for Row {
    fn int(&self, col: &str) -> Result<i64> {
        self.opt_int(col)?
            .ok_or_else(|| StoreError::Corrupt(format!("{col} is empty")))
    }
    /// PostgreSQL's SMALLINT and INTEGER columns widen to i64, so the decoders need not care.
    fn opt_int(&self, col: &str) -> Result<Option<i64>> {
        let r = match self {
            Row::Sqlite(r) => return get(r, col),
            Row::Postgres(r) => r,
        };
        let raw = r.try_get_raw(col).map_err(db("reading a row"))?;
        if raw.is_null() {
            return Ok(None);
        }
        let ty = raw.type_info().name().to_owned();
        match ty.as_str() {
            "INT2" => get::<i16, _>(r, col).map(i64::from),
            "INT4" => get::<i32, _>(r, col).map(i64::from),
            _ => get::<i64, _>(r, col),
        }
        .map(Some)
    }
    fn text(&self, col: &str) -> Result<String> {
        either!(self, col)
    }
    fn opt_text(&self, col: &str) -> Result<Option<String>> {
        either!(self, col)
    }
    fn opt_f64(&self, col: &str) -> Result<Option<f64>> {
        either!(self, col)
    }
    fn flag(&self, col: &str) -> Result<bool> {
        either!(self, col)
    }
    fn opt_flag(&self, col: &str) -> Result<Option<bool>> {
        either!(self, col)
    }
    /// SQLite keeps timestamps as INTEGER microseconds, PostgreSQL as TIMESTAMPTZ.
    fn opt_ts(&self, col: &str) -> Result<Option<DateTime<Utc>>> {
        match self {
            Row::Sqlite(r) => get::<Option<i64>, _>(r, col)?.map(from_micros).transpose(),
            Row::Postgres(r) => get(r, col),
        }
    }
    fn opt_date(&self, col: &str) -> Result<Option<NaiveDate>> {
        either!(self, col)
    }
    fn bytes(&self, col: &str) -> Result<Vec<u8>> {
        either!(self, col)
    }
}
