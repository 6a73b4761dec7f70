//! `fermyon:spin/mqtt@2.0.0`: publishing to an MQTT broker, as `spin up`
//! offers it.
//!
//! The address is `mqtt://host:port?client_id=...` (or `mqtts://` for TLS,
//! verified against the host's roots, see [`crate::tls`]) and must be
//! granted by the component's `allowed_outbound_hosts` (`mqtt://host:port`,
//! `mqtts://host:port`). The broker is connected on the first publish; a
//! publish returns once the broker has it at the requested quality of
//! service (sent for at-most-once, PUBACK for at-least-once, PUBCOMP for
//! exactly-once), bounded by the request's deadline.

use std::time::{Duration, Instant};

use rumqttc::{
    AsyncClient, Event, EventLoop, Incoming, MqttOptions, Outgoing, QoS, TlsConfiguration,
    Transport,
};
use tokio::sync::Mutex;
use wasmtime::component::Resource;

use crate::capabilities::generated::fermyon::spin::mqtt;
use crate::outbound::AllowedHosts;
use crate::state::HostState;
use crate::tls::TlsClient;

/// Requests queued between the client and its event loop.
const QUEUE: usize = 16;

/// An open connection: the client and the event loop that talks to the broker.
pub struct MqttConnection {
    client: AsyncClient,
    events: Mutex<EventLoop>,
}

fn options(
    address: &str,
    allowed: &AllowedHosts,
    tls: &TlsClient,
    username: String,
    password: String,
    keep_alive_secs: u64,
) -> Result<MqttOptions, mqtt::Error> {
    let url = url::Url::parse(address).map_err(|_| mqtt::Error::InvalidAddress)?;
    let secure = match url.scheme() {
        "mqtt" => false,
        "mqtts" => true,
        other => {
            return Err(mqtt::Error::ConnectionFailed(format!(
                "scheme {other}:// is not supported (mqtt:// and mqtts:// are)"
            )));
        }
    };
    if !allowed.allows_url(&url) {
        return Err(mqtt::Error::ConnectionFailed(format!(
            "address {address} is not permitted"
        )));
    }
    let invalid =
        |e: String| mqtt::Error::ConnectionFailed(format!("invalid address {address}: {e}"));
    let mut options = if secure {
        // rumqttc's own mqtts:// set-up loads the roots anew and panics
        // without a process-wide crypto provider: parse the address as
        // mqtt:// (its port is granted, so given: mqtts has no well-known
        // port, in Spin's grants as here) and give it the shared TLS set-up.
        let mut plain = url.clone();
        plain
            .set_scheme("mqtt")
            .map_err(|()| invalid("not a broker address".into()))?;
        let config = tls.config().map_err(mqtt::Error::ConnectionFailed)?;
        let mut options = MqttOptions::try_from(plain).map_err(|e| invalid(e.to_string()))?;
        options.set_transport(Transport::tls_with_config(TlsConfiguration::Rustls(config)));
        options
    } else {
        MqttOptions::parse_url(address).map_err(|e| invalid(e.to_string()))?
    };
    if !username.is_empty() {
        options.set_credentials(username, password);
    }
    options.set_keep_alive(Duration::from_secs(keep_alive_secs));
    Ok(options)
}

fn qos(qos: mqtt::Qos) -> QoS {
    match qos {
        mqtt::Qos::AtMostOnce => QoS::AtMostOnce,
        mqtt::Qos::AtLeastOnce => QoS::AtLeastOnce,
        mqtt::Qos::ExactlyOnce => QoS::ExactlyOnce,
    }
}

impl MqttConnection {
    async fn publish(
        &self,
        topic: String,
        payload: Vec<u8>,
        level: QoS,
    ) -> Result<(), mqtt::Error> {
        self.client
            .publish_bytes(topic, level, false, payload.into())
            .await
            .map_err(|e| mqtt::Error::Other(e.to_string()))?;
        let mut events = self.events.lock().await;
        loop {
            let event = events
                .poll()
                .await
                .map_err(|e| mqtt::Error::ConnectionFailed(e.to_string()))?;
            match (level, event) {
                (QoS::AtMostOnce, Event::Outgoing(Outgoing::Publish(_)))
                | (QoS::AtLeastOnce, Event::Incoming(Incoming::PubAck(_)))
                | (QoS::ExactlyOnce, Event::Incoming(Incoming::PubComp(_))) => return Ok(()),
                _ => {}
            }
        }
    }
}

async fn publish(
    connection: &MqttConnection,
    topic: String,
    payload: Vec<u8>,
    level: mqtt::Qos,
    deadline: Instant,
) -> Result<(), mqtt::Error> {
    tokio::time::timeout_at(
        deadline.into(),
        connection.publish(topic, payload, qos(level)),
    )
    .await
    .map_err(|_| {
        mqtt::Error::Other("the broker did not confirm before the request's deadline".into())
    })?
}

impl mqtt::Host for HostState {}

impl mqtt::HostConnection for HostState {
    async fn open(
        &mut self,
        address: String,
        username: String,
        password: String,
        keep_alive_interval_in_secs: u64,
    ) -> wasmtime::Result<Result<Resource<MqttConnection>, mqtt::Error>> {
        let options = match options(
            &address,
            &self.component.allowed_hosts,
            &self.app.tls,
            username,
            password,
            keep_alive_interval_in_secs,
        ) {
            Ok(options) => options,
            Err(e) => return Ok(Err(e)),
        };
        let (client, events) = AsyncClient::new(options, QUEUE);
        let connection = MqttConnection {
            client,
            events: Mutex::new(events),
        };
        Ok(Ok(self.table.push(connection)?))
    }

    async fn publish(
        &mut self,
        connection: Resource<MqttConnection>,
        topic: String,
        payload: Vec<u8>,
        qos: mqtt::Qos,
    ) -> wasmtime::Result<Result<(), mqtt::Error>> {
        let connection = self.table.get(&connection)?;
        Ok(publish(connection, topic, payload, qos, self.deadline).await)
    }

    async fn drop(&mut self, connection: Resource<MqttConnection>) -> wasmtime::Result<()> {
        let connection = self.table.delete(connection)?;
        // Say goodbye to the broker if the connection was ever made.
        let _ = connection.client.try_disconnect();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_must_be_granted_mqtt_urls_with_a_client_id() {
        let grants =
            AllowedHosts::parse(["mqtt://localhost:1883", "mqtts://localhost:8883"]).unwrap();
        let tls = TlsClient::new(None).unwrap();
        let ok = |a: &str| options(a, &grants, &tls, "user".into(), "pw".into(), 30);
        assert!(ok("mqtt://localhost:1883?client_id=desk").is_ok());
        assert!(matches!(ok("not a url"), Err(mqtt::Error::InvalidAddress)));
        assert!(matches!(
            ok("mqtt://localhost:1884?client_id=desk"),
            Err(mqtt::Error::ConnectionFailed(m)) if m.contains("not permitted")
        ));
        // The grant names the scheme: TLS on the plain port is another address.
        assert!(matches!(
            ok("mqtts://localhost:1883?client_id=desk"),
            Err(mqtt::Error::ConnectionFailed(m)) if m.contains("not permitted")
        ));
        assert!(matches!(
            ok("ws://localhost:1883?client_id=desk"),
            Err(mqtt::Error::ConnectionFailed(m)) if m.contains("not supported")
        ));
        assert!(matches!(
            ok("mqtt://localhost:1883"),
            Err(mqtt::Error::ConnectionFailed(_))
        ));
        // mqtts:// is TLS, on the port the address names (it has no
        // well-known one, in Spin's grants as here).
        let options = ok("mqtts://localhost:8883?client_id=desk").unwrap();
        assert_eq!(options.broker_address(), ("localhost".into(), 8883));
        assert!(matches!(options.transport(), Transport::Tls(_)));
        assert!(matches!(
            ok("mqtts://localhost?client_id=desk"),
            Err(mqtt::Error::ConnectionFailed(m)) if m.contains("not permitted")
        ));
    }
}
