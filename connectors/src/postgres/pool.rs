//! The connection pool a worker's [`PostgresBolt`](super::PostgresBolt)
//! tasks share (Storm's `HikariCPConnectionProvider`), on `r2d2`: one pool
//! per database and pool size in a process, each pooled connection keeping
//! the statements prepared on it.

use super::PostgresConfig;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::{Duration, Instant};

/// A connection checked out again within this time is not checked with a
/// round trip (HikariCP's `aliveBypassWindowMs`, 500 ms).
const ALIVE_BYPASS: Duration = Duration::from_millis(500);

/// A pool of [`PooledClient`]s.
pub(crate) type Pool = r2d2::Pool<Manager>;

/// A pooled connection and the statements prepared on it, by SQL text, so
/// that a statement is prepared once per connection whichever task uses it.
pub(crate) struct PooledClient {
    pub(crate) client: postgres::Client,
    statements: HashMap<String, postgres::Statement>,
    /// When the connection was last checked out or checked.
    last_checked: Instant,
}

impl PooledClient {
    /// The statement for `sql`, prepared on this connection the first time.
    ///
    /// # Errors
    /// The database's refusal, or a broken connection.
    pub(crate) fn prepare_cached(
        &mut self,
        sql: &str,
    ) -> Result<postgres::Statement, postgres::Error> {
        if let Some(s) = self.statements.get(sql) {
            return Ok(s.clone());
        }
        let s = self.client.prepare(sql)?;
        self.statements.insert(sql.to_owned(), s.clone());
        Ok(s)
    }
}

/// Why a pooled connection could not be made: the message names the
/// server and the cause.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub(crate) struct ConnectError(String);

/// Makes and checks the connections of one database's pool.
#[derive(Debug)]
pub(crate) struct Manager {
    database: PostgresConfig,
}

impl r2d2::ManageConnection for Manager {
    type Connection = PooledClient;
    type Error = ConnectError;

    fn connect(&self) -> Result<PooledClient, ConnectError> {
        let client = self.database.connect().map_err(ConnectError)?;
        Ok(PooledClient {
            client,
            statements: HashMap::new(),
            last_checked: Instant::now(),
        })
    }

    /// One round trip, so that a connection the server closed (a restart)
    /// is dropped before a batch is written on it; skipped for a connection
    /// checked out within [`ALIVE_BYPASS`], as HikariCP does.
    fn is_valid(&self, conn: &mut PooledClient) -> Result<(), ConnectError> {
        let now = Instant::now();
        if now.duration_since(conn.last_checked) < ALIVE_BYPASS {
            conn.last_checked = now;
            return Ok(());
        }
        conn.client
            .simple_query("")
            .map_err(|e| ConnectError(self.database.error(&e)))?;
        conn.last_checked = now;
        Ok(())
    }

    fn has_broken(&self, conn: &mut PooledClient) -> bool {
        conn.client.is_closed()
    }
}

type Pools = Mutex<HashMap<(String, u32), Weak<Pool>>>;

/// The process's pool for `database` holding at most `max_size`
/// connections, made on first use and dropped with its last user.
/// Connections are made on demand (none up front, so a database that is
/// down does not fail this call); a checkout waits at most
/// `database.connect_timeout`.
pub(crate) fn shared(database: &PostgresConfig, max_size: u32) -> Arc<Pool> {
    static POOLS: OnceLock<Pools> = OnceLock::new();
    let mut pools = POOLS
        .get_or_init(Pools::default)
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    let key = (database.url.clone(), max_size);
    if let Some(pool) = pools.get(&key).and_then(Weak::upgrade) {
        return pool;
    }
    pools.retain(|_, p| p.strong_count() > 0);
    let pool = Arc::new(
        r2d2::Pool::builder()
            .max_size(max_size.max(1))
            .min_idle(Some(0))
            .connection_timeout(database.connect_timeout)
            .error_handler(Box::new(r2d2::NopErrorHandler))
            .build_unchecked(Manager {
                database: database.clone(),
            }),
    );
    pools.insert(key, Arc::downgrade(&pool));
    pool
}

/// `e` (a checkout that timed out, with the last connection error) as a
/// message naming the server.
pub(crate) fn checkout_error(database: &PostgresConfig, e: &r2d2::Error) -> String {
    let e = e.to_string();
    if e.contains(&database.server()) {
        e
    } else {
        format!("{}: {e}", database.server())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_pool_per_database_and_size_while_it_is_used() {
        let a = PostgresConfig::new("host=127.0.0.1 port=1 dbname=a");
        let b = PostgresConfig::new("host=127.0.0.1 port=1 dbname=b");
        let p1 = shared(&a, 2);
        assert!(Arc::ptr_eq(&p1, &shared(&a, 2)));
        assert!(!Arc::ptr_eq(&p1, &shared(&b, 2)));
        assert!(!Arc::ptr_eq(&p1, &shared(&a, 3)));
        assert_eq!(p1.max_size(), 2);
        let weak = Arc::downgrade(&p1);
        drop(p1);
        assert!(weak.upgrade().is_none());
    }
}
