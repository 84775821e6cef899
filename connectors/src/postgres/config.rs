//! Where a PostgreSQL connector connects, and its error text.

use postgres::NoTls;
use std::error::Error as _;
use std::str::FromStr;
use std::time::Duration;

/// A PostgreSQL database to connect to (Storm's `ConnectionProvider`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PostgresConfig {
    /// A libpq connection string (`host=… port=… user=… password=…
    /// dbname=…`) or URL (`postgresql://user:password@host:port/db`).
    pub url: String,
    /// How long connecting may take (default 5 s).
    pub connect_timeout: Duration,
}

impl PostgresConfig {
    /// The database `url` names.
    pub fn new(url: &str) -> Self {
        Self {
            url: url.to_owned(),
            connect_timeout: Duration::from_secs(5),
        }
    }

    /// The server and database without credentials, for messages:
    /// `PostgreSQL at host:port/db`.
    pub fn server(&self) -> String {
        let Ok(c) = postgres::Config::from_str(&self.url) else {
            return "PostgreSQL (unparsable connection string)".to_owned();
        };
        let host = c
            .get_hosts()
            .first()
            .map(|h| match h {
                postgres::config::Host::Tcp(h) => h.clone(),
                #[cfg(unix)]
                postgres::config::Host::Unix(p) => p.display().to_string(),
            })
            .unwrap_or_else(|| "localhost".to_owned());
        let port = c.get_ports().first().copied().unwrap_or(5432);
        let db = c.get_dbname().or(c.get_user()).unwrap_or("postgres");
        format!("PostgreSQL at {host}:{port}/{db}")
    }

    /// A new connection.
    ///
    /// # Errors
    /// A message naming the server and the cause (refused, wrong password,
    /// no such database, bad connection string).
    pub fn connect(&self) -> Result<postgres::Client, String> {
        let mut c = postgres::Config::from_str(&self.url)
            .map_err(|e| format!("{}: {}", self.server(), describe(&e)))?;
        c.connect_timeout(self.connect_timeout);
        c.connect(NoTls)
            .map_err(|e| format!("{}: {}", self.server(), describe(&e)))
    }

    /// `e` with the server named.
    pub fn error(&self, e: &postgres::Error) -> String {
        format!("{}: {}", self.server(), describe(e))
    }
}

/// What went wrong, as PostgreSQL said it: the message, the column,
/// constraint and detail when it gave them, or the client's error with
/// its causes.
pub fn describe(e: &postgres::Error) -> String {
    if let Some(db) = e.as_db_error() {
        let mut s = db.message().to_owned();
        if let Some(c) = db.column() {
            s.push_str(&format!(" (column {c})"));
        }
        if let Some(c) = db.constraint() {
            s.push_str(&format!(" (constraint {c})"));
        }
        if let Some(d) = db.detail() {
            s.push_str(&format!(": {d}"));
        }
        return s;
    }
    let mut s = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        s.push_str(&format!(": {c}"));
        cause = c.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_server_is_named_without_credentials() {
        let c =
            PostgresConfig::new("host=127.0.0.1 port=5433 user=u password=secret dbname=flights");
        assert_eq!(c.server(), "PostgreSQL at 127.0.0.1:5433/flights");
        let c = PostgresConfig::new("postgresql://u:secret@db.example:6000/x");
        assert_eq!(c.server(), "PostgreSQL at db.example:6000/x");
    }
}
