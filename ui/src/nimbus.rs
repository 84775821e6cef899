//! The UI's link to Nimbus: blocking RPC calls to the leader, and the
//! errors the REST API answers with.

use squall_cluster::rpc::{
    ClientError, ClusterSummary, ErrorKind, NimbusClient, Request, Response, TopologyInfo,
    TopologySummary,
};
use squall_cluster::tls::Tls;
use std::sync::Arc;

/// A REST failure: the HTTP status and a message naming what is wrong.
/// Answered as Storm's error body, `{"error": reason, "errorMessage": msg}`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{status}: {message}")]
pub struct ApiError {
    /// HTTP status code.
    pub status: u16,
    /// One line for the user.
    pub message: String,
}

impl ApiError {
    /// 404: no such topology, component or page.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self {
            status: 404,
            message: message.into(),
        }
    }

    /// 400: a bad parameter.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self {
            status: 400,
            message: message.into(),
        }
    }
}

impl From<ClientError> for ApiError {
    fn from(e: ClientError) -> Self {
        let status = match &e {
            ClientError::Refused(r) => match r.kind {
                ErrorKind::NotFound => 404,
                ErrorKind::Invalid | ErrorKind::AlreadyExists => 400,
                ErrorKind::NotLeader | ErrorKind::Busy => 503,
                ErrorKind::HashMismatch | ErrorKind::Internal => 500,
                ErrorKind::Unauthorized => 403,
            },
            ClientError::Unreachable { .. }
            | ClientError::Closed
            | ClientError::Frame(_)
            | ClientError::NotPlaintext { .. } => 503,
            ClientError::Unexpected(_) => 502,
        };
        Self {
            status,
            message: e.to_string(),
        }
    }
}

/// Where Nimbus is: `nimbus.seeds` with `nimbus.thrift.port`.
#[derive(Debug, Clone)]
pub struct NimbusLink {
    /// `host:port` of every seed.
    pub addresses: Vec<String>,
    /// The RPC frame cap, bytes.
    pub max_frame_bytes: usize,
    /// The UI's TLS identity (security on).
    pub tls: Option<Arc<Tls>>,
    /// The user requests are made for ([`Request::OnBehalfOf`]): the
    /// principal of the request's bearer token.
    pub on_behalf_of: Option<String>,
}

impl NimbusLink {
    /// One request to the leader, on a fresh connection.
    ///
    /// # Errors
    /// [`ApiError`] with 503 when no Nimbus answers, 404 for unknown
    /// topologies, 400 for refused arguments.
    pub fn call(&self, req: Request) -> Result<Response, ApiError> {
        let mut c = NimbusClient::connect_leader_with(
            &self.addresses,
            self.max_frame_bytes,
            self.tls.as_deref(),
        )?;
        Ok(c.call(self.for_user(req))?)
    }

    /// `req`, made for the request's user when there is one.
    fn for_user(&self, req: Request) -> Request {
        match &self.on_behalf_of {
            Some(p) => Request::OnBehalfOf {
                principal: p.clone(),
                request: Box::new(req),
            },
            None => req,
        }
    }

    /// The cluster: supervisors and leader.
    pub fn cluster(&self) -> Result<ClusterSummary, ApiError> {
        match self.call(Request::ClusterInfo)? {
            Response::Cluster(c) => Ok(c),
            other => Err(unexpected(other)),
        }
    }

    /// Asks one Nimbus (not necessarily the leader) about the cluster.
    pub fn cluster_at(&self, address: &str) -> Result<ClusterSummary, ApiError> {
        let mut c = NimbusClient::connect_with(
            std::slice::from_ref(&address.to_owned()),
            self.max_frame_bytes,
            self.tls.as_deref(),
        )?;
        match c.call(self.for_user(Request::ClusterInfo))? {
            Response::Cluster(s) => Ok(s),
            other => Err(unexpected(other)),
        }
    }

    /// Live topologies, by name.
    pub fn topologies(&self) -> Result<Vec<TopologySummary>, ApiError> {
        match self.call(Request::List)? {
            Response::Topologies(t) => Ok(t),
            other => Err(unexpected(other)),
        }
    }

    /// Topology `name` in detail.
    pub fn info(&self, name: &str) -> Result<TopologyInfo, ApiError> {
        match self.call(Request::Info {
            name: name.to_owned(),
        })? {
            Response::Info(i) => Ok(*i),
            other => Err(unexpected(other)),
        }
    }

    /// The summary of the topology whose id is `id` (the REST API's
    /// topology key, as in Storm).
    ///
    /// # Errors
    /// 404 naming the id when no live topology has it.
    pub fn by_id(&self, id: &str) -> Result<TopologySummary, ApiError> {
        self.topologies()?
            .into_iter()
            .find(|t| t.id == id)
            .ok_or_else(|| ApiError::not_found(format!("topology {id:?} is not running")))
    }

    /// Topology `id` in detail.
    pub fn info_by_id(&self, id: &str) -> Result<TopologyInfo, ApiError> {
        let t = self.by_id(id)?;
        self.info(&t.name)
    }
}

fn unexpected(r: Response) -> ApiError {
    ApiError {
        status: 502,
        message: format!("unexpected answer from Nimbus: {r:?}"),
    }
}
