//! [`PostgresBolt`]: inserts or upserts tuples into a table (Storm's
//! `JdbcInsertBolt`).

use super::pool::{self, Manager, Pool, PooledClient};
use super::types::{param, table_columns, Column, Param};
use super::PostgresConfig;
use crate::sink::{Sink, Writer};
use r2d2::PooledConnection;
use squall_topology_api::{
    Bolt, OutputCollector, OutputFieldsDeclarer, TopologyContext, Tuple, Value,
};
use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

type RowFn = dyn Fn(&Tuple) -> Result<Vec<Value>, String> + Send + Sync;

/// A [`PostgresBolt`]'s settings.
#[derive(Clone)]
pub struct PostgresBoltConfig {
    /// The database.
    pub database: PostgresConfig,
    /// The table (`name` or `schema.name`).
    pub table: String,
    /// The columns written, in order (default: every column of the table,
    /// each from the tuple field of the same name, Storm's
    /// `SimpleJdbcMapper`).
    pub columns: Option<Vec<String>>,
    /// Upsert on these key columns (`INSERT … ON CONFLICT (keys) DO UPDATE
    /// SET` every other column); plain `INSERT` when empty.
    pub upsert_keys: Vec<String>,
    /// Tuples per statement (default 500; 1 writes one row per statement).
    pub max_batch: usize,
    /// At most this many connections in the pool the worker's tasks share
    /// for this database (default 10, HikariCP's `maximumPoolSize`, the
    /// pool behind Storm's `HikariCPConnectionProvider`).
    pub max_connections: u32,
    row: Option<Arc<RowFn>>,
}

impl fmt::Debug for PostgresBoltConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PostgresBoltConfig")
            .field("database", &self.database)
            .field("table", &self.table)
            .field("columns", &self.columns)
            .field("upsert_keys", &self.upsert_keys)
            .field("max_batch", &self.max_batch)
            .field("max_connections", &self.max_connections)
            .finish_non_exhaustive()
    }
}

impl PostgresBoltConfig {
    /// Inserts into `table` of `database`.
    pub fn new(database: PostgresConfig, table: &str) -> Self {
        Self {
            database,
            table: table.to_owned(),
            columns: None,
            upsert_keys: Vec::new(),
            max_batch: 500,
            max_connections: 10,
            row: None,
        }
    }

    /// Writes only `columns`, in this order.
    pub fn with_columns(mut self, columns: &[&str]) -> Self {
        self.columns = Some(columns.iter().map(|c| (*c).to_owned()).collect());
        self
    }

    /// Upserts on the key columns `keys`.
    pub fn with_upsert(mut self, keys: &[&str]) -> Self {
        self.upsert_keys = keys.iter().map(|c| (*c).to_owned()).collect();
        self
    }

    /// At most `n` tuples per statement.
    pub fn with_max_batch(mut self, n: usize) -> Self {
        self.max_batch = n.max(1);
        self
    }

    /// At most `n` pooled connections per worker (at least 1).
    pub fn with_max_connections(mut self, n: u32) -> Self {
        self.max_connections = n.max(1);
        self
    }

    /// Makes each tuple's row (the columns' values, in order) with `row`
    /// instead of by field names; an error fails the tuple.
    pub fn with_row_mapper(
        mut self,
        row: impl Fn(&Tuple) -> Result<Vec<Value>, String> + Send + Sync + 'static,
    ) -> Self {
        self.row = Some(Arc::new(row));
        self
    }
}

/// A bolt writing each tuple as a row of a PostgreSQL table (Storm's
/// `JdbcInsertBolt` with a `SimpleJdbcMapper`).
///
/// The executor thread never waits for the database: rows go to the task's
/// I/O thread, which reads the table's columns and their types on
/// connecting (again after an error, with backoff; a failure to connect is
/// reported naming the server and the cause) and writes up to `max_batch`
/// rows per multi-row `INSERT` (or upsert). Each write borrows a
/// connection from a pool the worker's tasks share for the database (at
/// most `max_connections`; a connection the server closed is dropped on
/// checkout), and statements are prepared once per pooled connection and
/// batch size. A tuple is
/// acked once its row's transaction committed. When a batch is refused
/// (a constraint violation), it is rolled back and its rows are written
/// one by one, so only the offending tuples fail, each reported with the
/// database's reason (constraint, column, detail); a value that does not
/// fit its column's type fails its tuple before anything is sent, the
/// error naming the column. Tick tuples are acked and ignored. Declares no
/// output.
pub struct PostgresBolt {
    config: PostgresBoltConfig,
    sink: Option<Sink<Row>>,
}

impl fmt::Debug for PostgresBolt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PostgresBolt")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl PostgresBolt {
    /// A bolt writing as `config` says.
    pub fn new(config: PostgresBoltConfig) -> Self {
        Self { config, sink: None }
    }
}

struct PgWriter {
    config: PostgresBoltConfig,
    pool: Option<Arc<Pool>>,
    /// The columns written, read from the table on connecting.
    columns: Vec<Column>,
    /// The statement text for each batch size, made once per connect.
    sql: HashMap<usize, Arc<str>>,
}

/// A tuple's row beyond the tuple itself: `None` takes the tuple's fields
/// by column name, `Some` holds the values a row mapper made, in column
/// order.
type Row = Option<Vec<Value>>;

/// The multi-row `INSERT` (or upsert) of `rows` rows into `columns`.
fn insert_sql(config: &PostgresBoltConfig, columns: &[Column], rows: usize) -> String {
    let names: Vec<&str> = columns.iter().map(|c| c.name.as_str()).collect();
    let mut sql = format!(
        "INSERT INTO {} ({}) VALUES ",
        config.table,
        names.join(", ")
    );
    let n = names.len();
    for r in 0..rows {
        if r > 0 {
            sql.push_str(", ");
        }
        let row: Vec<String> = (1..=n).map(|i| format!("${}", r * n + i)).collect();
        sql.push_str(&format!("({})", row.join(", ")));
    }
    if !config.upsert_keys.is_empty() {
        let updates: Vec<String> = names
            .iter()
            .filter(|c| !config.upsert_keys.iter().any(|k| k == *c))
            .map(|c| format!("{c} = EXCLUDED.{c}"))
            .collect();
        sql.push_str(&format!(
            " ON CONFLICT ({}) ",
            config.upsert_keys.join(", ")
        ));
        if updates.is_empty() {
            sql.push_str("DO NOTHING");
        } else {
            sql.push_str(&format!("DO UPDATE SET {}", updates.join(", ")));
        }
    }
    sql
}

impl PgWriter {
    /// The statement text for `rows` rows, made once per size.
    fn sql(&mut self, rows: usize) -> Arc<str> {
        let (config, columns) = (&self.config, &self.columns);
        self.sql
            .entry(rows)
            .or_insert_with(|| insert_sql(config, columns, rows).into())
            .clone()
    }

    /// A connection from the pool.
    ///
    /// # Errors
    /// None came free, or none could be made, in the connect timeout.
    fn checkout(&self) -> Result<PooledConnection<Manager>, String> {
        let pool = self.pool.as_ref().ok_or("not connected")?;
        pool.get()
            .map_err(|e| pool::checkout_error(&self.config.database, &e))
    }

    /// Writes `rows` in one statement and transaction on `conn`.
    fn insert(
        &mut self,
        conn: &mut PooledClient,
        rows: &[&Vec<Param>],
    ) -> Result<(), postgres::Error> {
        let stmt = conn.prepare_cached(&self.sql(rows.len()))?;
        let params: Vec<&(dyn postgres::types::ToSql + Sync)> = rows
            .iter()
            .flat_map(|r| r.iter().map(|p| p as &(dyn postgres::types::ToSql + Sync)))
            .collect();
        let mut tx = conn.client.transaction()?;
        tx.execute(&stmt, &params)?;
        tx.commit()
    }
}

impl Writer for PgWriter {
    type Job = Row;

    fn connect(&mut self) -> Result<(), String> {
        let pool = pool::shared(&self.config.database, self.config.max_connections);
        self.pool = Some(pool);
        let mut conn = self.checkout()?;
        let server = self.config.database.server();
        let table = &self.config.table;
        let all = table_columns(&mut conn.client, table)
            .map_err(|e| format!("{server}: table {table}: {e}"))?;
        self.columns = match &self.config.columns {
            None => all,
            Some(names) => names
                .iter()
                .map(|n| {
                    all.iter()
                        .find(|c| &c.name == n)
                        .cloned()
                        .ok_or_else(|| format!("{server}: table {table} has no column {n}"))
                })
                .collect::<Result<_, _>>()?,
        };
        self.sql.clear();
        let one = self.sql(1);
        conn.prepare_cached(&one)
            .map_err(|e| self.config.database.error(&e))?;
        Ok(())
    }

    fn write(&mut self, jobs: &[(Tuple, Row)]) -> Result<Vec<Result<(), String>>, String> {
        let table = self.config.table.clone();
        let mut out: Vec<Result<(), String>> = Vec::with_capacity(jobs.len());
        let mut rows: Vec<(usize, Vec<Param>)> = Vec::new();
        for (i, (tuple, row)) in jobs.iter().enumerate() {
            match row_params(tuple, row.as_deref(), &self.columns) {
                Ok(params) => {
                    rows.push((i, params));
                    out.push(Ok(()));
                }
                Err(e) => out.push(Err(format!("table {table}: {e}"))),
            }
        }
        if rows.is_empty() {
            return Ok(out);
        }
        let mut conn = self.checkout()?;
        let all: Vec<&Vec<Param>> = rows.iter().map(|(_, p)| p).collect();
        let whole = self.insert(&mut conn, &all);
        let Err(e) = whole else { return Ok(out) };
        if conn.client.is_closed() || e.as_db_error().is_none() {
            return Err(self.config.database.error(&e));
        }
        // Refused: each row alone, so only the offending ones fail.
        for (i, params) in &rows {
            if let Err(e) = self.insert(&mut conn, &[params]) {
                if conn.client.is_closed() {
                    return Err(self.config.database.error(&e));
                }
                out[*i] = Err(format!("table {table}: {}", super::config::describe(&e)));
            }
        }
        Ok(out)
    }
}

/// The parameters for `columns` of the mapped `values`, or of `tuple`'s
/// fields when there are none.
///
/// # Errors
/// A message naming the missing field or the column a value does not fit.
fn row_params(
    tuple: &Tuple,
    values: Option<&[Value]>,
    columns: &[Column],
) -> Result<Vec<Param>, String> {
    match values {
        Some(values) if values.len() != columns.len() => Err(format!(
            "the row has {} values for {} columns",
            values.len(),
            columns.len()
        )),
        Some(values) => values
            .iter()
            .zip(columns)
            .map(|(v, c)| param(v, c))
            .collect(),
        None => columns
            .iter()
            .map(|c| {
                let v = tuple
                    .value_by_field(&c.name)
                    .map_err(|_| format!("the tuple has no field {0} for column {0}", c.name))?;
                param(v, c)
            })
            .collect(),
    }
}

impl Bolt for PostgresBolt {
    fn prepare(&mut self, context: &TopologyContext) {
        let writer = PgWriter {
            config: self.config.clone(),
            pool: None,
            columns: Vec::new(),
            sql: HashMap::new(),
        };
        self.sink = Some(Sink::start(
            &format!("postgres-bolt-{}", context.this_task_id()),
            writer,
            self.config.max_batch,
            10_000,
            context.waker().cloned(),
        ));
    }

    fn execute(&mut self, tuple: &Tuple, collector: &mut OutputCollector<'_>) {
        let (row, table) = (&self.config.row, &self.config.table);
        crate::sink::execute(
            self.sink.as_mut(),
            tuple,
            collector,
            |t| match row {
                Some(f) => f(t).map(|v| Some(Some(v))),
                None => Ok(Some(None)),
            },
            |e| format!("table {table}: {e}"),
        );
    }

    fn wake(&mut self, collector: &mut OutputCollector<'_>) {
        if let Some(sink) = &mut self.sink {
            sink.settle_ready(collector);
        }
    }

    fn cleanup(&mut self) {
        self.sink = None;
    }

    fn declare_output_fields(&self, _declarer: &mut OutputFieldsDeclarer) {}
}
