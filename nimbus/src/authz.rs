//! Who may do what, with security on (Storm's `SimpleACLAuthorizer`
//! model): a pure decision from the caller's principal, the request, the
//! daemon settings and the topology's record.
//!
//! - `nimbus.admins`: everything.
//! - `nimbus.supervisor.users` (the daemons): download any binary, list,
//!   read any topology and the cluster.
//! - `nimbus.users` (every authenticated principal when empty): upload and
//!   submit.
//! - A topology's submitter and its `topology.users`: kill, activate,
//!   deactivate, rebalance, read it and download its binary.
//! - Its `topology.readonly.users`: list and read it.
//! - Every authenticated principal: the cluster summary.

use squall_cluster::rpc::{ErrorKind, Request, RpcError};
use squall_cluster::schema::TopologyRecord;
use squall_topology_api::ClusterConfig;

/// Whom a request comes from.
#[derive(Debug, Clone, Copy)]
pub struct Caller<'a> {
    /// The connection's peer address (per-client limits count by it).
    pub peer: &'a str,
    /// The principal its certificate names; `None` with security off,
    /// where every request is allowed.
    pub principal: Option<&'a str>,
}

impl Caller<'_> {
    /// The principal for logs: `anonymous` with security off.
    pub fn name(&self) -> &str {
        self.principal.unwrap_or("anonymous")
    }
}

/// What a request does to a topology.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Sees it (list, info).
    Read,
    /// Changes it, or reads its binary.
    Write,
}

fn listed(list: &[String], principal: &str) -> bool {
    list.iter().any(|p| p == principal)
}

/// Whether `principal` is a Nimbus admin.
pub fn is_admin(config: &ClusterConfig, principal: &str) -> bool {
    listed(&config.nimbus_admins, principal)
}

/// Whether `principal` may `access` topology `t`.
pub fn may(config: &ClusterConfig, principal: &str, t: &TopologyRecord, access: Access) -> bool {
    if is_admin(config, principal) || t.owner.as_deref() == Some(principal) {
        return true;
    }
    if listed(&t.config.topology_users, principal) {
        return true;
    }
    access == Access::Read
        && (listed(&t.config.topology_readonly_users, principal)
            || listed(&config.nimbus_supervisor_users, principal))
}

/// Refuses `principal` the `op` on topology `name`.
pub fn denied(principal: &str, op: &str, name: &str) -> RpcError {
    RpcError::new(
        ErrorKind::Unauthorized,
        format!(
            "{principal} may not {op} topology {name:?}: not in nimbus.admins, not its submitter, not in its topology.users{}",
            if op == "read" { " or topology.readonly.users" } else { "" }
        ),
    )
}

/// The caller a daemon's [`Request::OnBehalfOf`] acts as: `principal`,
/// when the daemon is in `nimbus.supervisor.users` (with security off,
/// the request runs as sent).
///
/// # Errors
/// [`ErrorKind::Unauthorized`] when the caller is not a daemon;
/// [`ErrorKind::Invalid`] for a nested one.
pub fn on_behalf_of<'a>(
    config: &ClusterConfig,
    caller: Caller<'a>,
    principal: &'a str,
    request: &Request,
) -> Result<Caller<'a>, RpcError> {
    if matches!(request, Request::OnBehalfOf { .. }) {
        return Err(RpcError::new(
            ErrorKind::Invalid,
            "a request on behalf of a user cannot hold another",
        ));
    }
    let Some(daemon) = caller.principal else {
        return Ok(caller);
    };
    if !listed(&config.nimbus_supervisor_users, daemon) {
        return Err(RpcError::new(
            ErrorKind::Unauthorized,
            format!("{daemon} may not act on behalf of {principal}: only daemons (nimbus.supervisor.users) may"),
        ));
    }
    Ok(Caller {
        peer: caller.peer,
        principal: Some(principal),
    })
}

/// What `req` needs that does not depend on a topology: upload and submit
/// need `nimbus.users` (or admin); workers' heartbeats come only from
/// daemons (`nimbus.supervisor.users`); a download of another's binary is
/// checked by the caller against the topologies using it.
///
/// # Errors
/// [`ErrorKind::Unauthorized`] naming the principal, the operation and
/// the setting that would allow it.
pub fn check_request(
    config: &ClusterConfig,
    principal: &str,
    req: &Request,
) -> Result<(), RpcError> {
    let submitter = is_admin(config, principal)
        || config.nimbus_users.is_empty()
        || listed(&config.nimbus_users, principal);
    match req {
        Request::BeginUpload { .. }
        | Request::UploadChunk { .. }
        | Request::FinishUpload { .. }
        | Request::Submit { .. }
            if !submitter =>
        {
            Err(RpcError::new(
                ErrorKind::Unauthorized,
                format!("{principal} may not upload or submit topologies: not in nimbus.users or nimbus.admins"),
            ))
        }
        Request::SupervisorHeartbeats { .. }
            if !listed(&config.nimbus_supervisor_users, principal) =>
        {
            Err(RpcError::new(
                ErrorKind::Unauthorized,
                format!("{principal} may not report workers' heartbeats: only daemons (nimbus.supervisor.users) may"),
            ))
        }
        _ => Ok(()),
    }
}

/// Whether `principal` may download blob `sha256`, given the live
/// `topologies`: admins and daemons any, others only a binary of a
/// topology they may change.
pub fn may_download(
    config: &ClusterConfig,
    principal: &str,
    sha256: &str,
    topologies: &[TopologyRecord],
) -> bool {
    is_admin(config, principal)
        || listed(&config.nimbus_supervisor_users, principal)
        || topologies.iter().any(|t| {
            t.binary_hash.as_deref() == Some(sha256) && may(config, principal, t, Access::Write)
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use squall_cluster::schema::TopologyStatus;
    use squall_topology_api::spec::TopologySpec;
    use squall_topology_api::Config;

    fn config() -> ClusterConfig {
        ClusterConfig {
            nimbus_admins: vec!["admin".into()],
            nimbus_supervisor_users: vec!["squall-daemon".into()],
            ..ClusterConfig::default()
        }
    }

    fn topology() -> TopologyRecord {
        let mut config = Config::new();
        config.topology_users = vec!["bob".into()];
        config.topology_readonly_users = vec!["reader".into()];
        TopologyRecord {
            id: "wc-1-1".into(),
            name: "wc".into(),
            status: TopologyStatus::Active,
            spec: TopologySpec::default(),
            config,
            binary_hash: Some("abc".into()),
            spec_hash: String::new(),
            submitted_at_ms: 0,
            args: Vec::new(),
            pending: None,
            owner: Some("alice".into()),
            secret: None,
            log_config: Default::default(),
            debug: Default::default(),
        }
    }

    #[test]
    fn storms_roles_decide_topology_access() {
        let (c, t) = (config(), topology());
        for (who, read, write) in [
            ("admin", true, true),
            ("alice", true, true),
            ("bob", true, true),
            ("reader", true, false),
            ("squall-daemon", true, false),
            ("mallory", false, false),
        ] {
            assert_eq!(may(&c, who, &t, Access::Read), read, "{who} read");
            assert_eq!(may(&c, who, &t, Access::Write), write, "{who} write");
        }
    }

    #[test]
    fn only_daemons_admins_and_the_topologys_users_download_its_binary() {
        let (c, t) = (config(), topology());
        let ts = [t];
        for (who, ok) in [
            ("squall-daemon", true),
            ("admin", true),
            ("alice", true),
            ("reader", false),
            ("mallory", false),
        ] {
            assert_eq!(may_download(&c, who, "abc", &ts), ok, "{who}");
        }
        assert!(!may_download(&c, "alice", "other", &ts));
    }

    #[test]
    fn only_daemons_act_on_behalf_of_users() {
        let c = config();
        let list = Request::List;
        let as_daemon = Caller {
            peer: "p",
            principal: Some("squall-daemon"),
        };
        let user = on_behalf_of(&c, as_daemon, "bob", &list).unwrap();
        assert_eq!(user.principal, Some("bob"));
        let as_user = Caller {
            peer: "p",
            principal: Some("mallory"),
        };
        let e = on_behalf_of(&c, as_user, "admin", &list).unwrap_err();
        assert_eq!(e.kind, ErrorKind::Unauthorized);
        let nested = Request::OnBehalfOf {
            principal: "admin".into(),
            request: Box::new(Request::List),
        };
        assert!(on_behalf_of(&c, as_daemon, "bob", &nested).is_err());
    }

    #[test]
    fn nimbus_users_limits_submitters_once_set() {
        let mut c = config();
        let submit = Request::FinishUpload {
            session: "s".into(),
        };
        assert!(check_request(&c, "anyone", &submit).is_ok());
        c.nimbus_users = vec!["alice".into()];
        assert!(check_request(&c, "alice", &submit).is_ok());
        assert!(check_request(&c, "admin", &submit).is_ok());
        let e = check_request(&c, "mallory", &submit).unwrap_err();
        assert_eq!(e.kind, ErrorKind::Unauthorized);
        assert!(e.message.contains("mallory"), "{}", e.message);
        assert!(check_request(&c, "mallory", &Request::List).is_ok());
    }

    #[test]
    fn only_daemons_report_heartbeats() {
        let c = config();
        let beats = Request::SupervisorHeartbeats {
            supervisor_id: "s1".into(),
            beats: vec![],
        };
        assert!(check_request(&c, "squall-daemon", &beats).is_ok());
        for who in ["admin", "alice", "mallory"] {
            let e = check_request(&c, who, &beats).unwrap_err();
            assert_eq!(e.kind, ErrorKind::Unauthorized, "{who}");
        }
    }
}
