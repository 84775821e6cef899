//! Where a Redis connector connects, and its error text.

use std::time::Duration;

/// A Redis server to connect to (Storm's `JedisPoolConfig`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedisConfig {
    /// `redis://[[user]:password@]host:port[/db]`.
    pub url: String,
    /// How long a connect, a read or a write may take (default 2 s): a
    /// server that does not answer fails the call, never hangs the task.
    pub timeout: Duration,
}

impl RedisConfig {
    /// The server at `url` (`redis://host:port/db`, with `:password@`
    /// before the host when it needs one).
    pub fn new(url: &str) -> Self {
        Self {
            url: url.to_owned(),
            timeout: Duration::from_secs(2),
        }
    }

    /// The same server with calls timing out after `timeout`.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The server's address without credentials, for messages:
    /// `host:port/db`.
    pub fn server(&self) -> String {
        let rest = self
            .url
            .split_once("://")
            .map_or(self.url.as_str(), |(_, r)| r);
        let rest = rest.rsplit_once('@').map_or(rest, |(_, r)| r);
        format!("Redis at {}", rest.trim_end_matches('/'))
    }

    /// A new connection with the timeouts set.
    ///
    /// # Errors
    /// A message naming the server and the cause (refused, timed out,
    /// wrong password, bad URL).
    pub fn connect(&self) -> Result<redis::Connection, String> {
        let client = redis::Client::open(self.url.as_str())
            .map_err(|e| format!("{}: bad URL: {e}", self.server()))?;
        let con = client
            .get_connection_with_timeout(self.timeout)
            .map_err(|e| self.error(&e))?;
        con.set_read_timeout(Some(self.timeout))
            .and_then(|()| con.set_write_timeout(Some(self.timeout)))
            .map_err(|e| self.error(&e))?;
        Ok(con)
    }

    /// `e` with the server named.
    pub fn error(&self, e: &redis::RedisError) -> String {
        format!("{}: {e}", self.server())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_server_is_named_without_its_password() {
        let c = RedisConfig::new("redis://:secret@10.0.0.1:6380/2");
        assert_eq!(c.server(), "Redis at 10.0.0.1:6380/2");
        assert_eq!(
            RedisConfig::new("redis://127.0.0.1:6379/").server(),
            "Redis at 127.0.0.1:6379"
        );
    }
}
