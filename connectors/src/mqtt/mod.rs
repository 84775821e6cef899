//! MQTT (Storm's `storm-mqtt`), on `rumqttc`: [`MqttSpout`] subscribes with
//! QoS 1 in a persistent session and sends each PUBACK only when the
//! message's tuple tree completed; [`MqttBolt`] publishes tuples with
//! QoS 1 and acks them on the broker's PUBACK.

mod bolt;
mod spout;

pub use bolt::{MqttBolt, MqttBoltConfig};
pub use spout::{MqttSpout, MqttSpoutConfig};

use std::time::Duration;

/// An MQTT broker to connect to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MqttBroker {
    /// Host name or address.
    pub host: String,
    /// TCP port (1883 by default for MQTT).
    pub port: u16,
    /// User name and password, when the broker asks for them.
    pub credentials: Option<(String, String)>,
    /// MQTT keep-alive (default 10 s): a broker gone silent for 1.5 times
    /// this is taken as lost, and the client reconnects.
    pub keep_alive: Duration,
}

impl MqttBroker {
    /// The broker at `host:port`.
    pub fn new(host: &str, port: u16) -> Self {
        Self {
            host: host.to_owned(),
            port,
            credentials: None,
            keep_alive: Duration::from_secs(10),
        }
    }

    /// Logs in as `user` with `password`.
    pub fn with_credentials(mut self, user: &str, password: &str) -> Self {
        self.credentials = Some((user.to_owned(), password.to_owned()));
        self
    }

    /// `MQTT broker at host:port`, for messages.
    pub fn name(&self) -> String {
        format!("MQTT broker at {}:{}", self.host, self.port)
    }

    /// The client options for client id `id`.
    pub(crate) fn options(&self, id: &str, clean_session: bool) -> rumqttc::MqttOptions {
        let mut o = rumqttc::MqttOptions::new(id, self.host.clone(), self.port);
        o.set_keep_alive(self.keep_alive.max(Duration::from_secs(1)))
            .set_clean_session(clean_session)
            .set_max_packet_size(16 << 20, 16 << 20);
        if let Some((u, p)) = &self.credentials {
            o.set_credentials(u.clone(), p.clone());
        }
        o
    }
}
