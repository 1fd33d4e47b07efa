//! The broker seam: a gateway with a broker routes what concerns other nodes' clients through
//! it, once per operation; a gateway without one behaves as a single node always did.

use std::sync::{Arc, Mutex};

use tokio_tungstenite::tungstenite::Message;

use super::Broker;
use crate::api::ApiError;
use crate::config::Config;
use crate::domain::close::{CloseCode, CloseReason};
use crate::gateway::{Gateway, GatewayError};
use crate::ids::IdGen;
use crate::registry::{Member, RegistryError};

/// Records what the gateway asked of it; fails every call when `down`.
#[derive(Default)]
struct Recorder {
    calls: Mutex<Vec<String>>,
    down: bool,
}

impl Recorder {
    fn log(&self, call: String) -> Result<(), RegistryError> {
        if self.down {
            return Err(RegistryError::Unavailable("redis down".into()));
        }
        self.calls.lock().expect("lock").push(call);
        Ok(())
    }
    fn calls(&self) -> Vec<String> {
        self.calls.lock().expect("lock").clone()
    }
}

impl Broker for Recorder {
    fn to_clients(
        &self,
        system: &str,
        clients: &[&str],
        msg: &Message,
    ) -> Result<(), RegistryError> {
        self.log(format!("clients {system} {} {msg}", clients.join(",")))
    }
    fn to_group(
        &self,
        system: &str,
        group: &str,
        exclude: &[String],
        msg: &Message,
    ) -> Result<(), RegistryError> {
        self.log(format!("group {system} {group} -{} {msg}", exclude.len()))
    }
    fn to_system(
        &self,
        system: &str,
        exclude: &[String],
        msg: &Message,
    ) -> Result<(), RegistryError> {
        self.log(format!("system {system} -{} {msg}", exclude.len()))
    }
    fn close_client(
        &self,
        system: &str,
        client: &str,
        code: CloseCode,
        reason: &CloseReason,
    ) -> Result<(), RegistryError> {
        self.log(format!(
            "close {system} {client} {} {}",
            u16::from(code),
            reason.as_str()
        ))
    }
}

/// A gateway (node 1) with system `s`, one local client and one client of node 2 in the
/// registry (as a shared registry would show it).
async fn setup(broker: Option<Arc<Recorder>>) -> (Gateway, String, String) {
    let config = Config {
        node_id: Some(1),
        ..Config::default()
    };
    let gw = Gateway::new(Arc::new(config)).await;
    if let Some(b) = broker {
        gw.set_broker(b);
    }
    gw.registry()
        .register_system("s", None)
        .await
        .expect("system");
    let (local, rx) = gw.connect("s", None).await.expect("connect");
    std::mem::forget(rx);
    let remote = IdGen::new(2).next_id();
    gw.registry()
        .add_client("s", &remote, None)
        .await
        .expect("remote");
    (gw, local, remote)
}

#[tokio::test]
async fn sends_and_closes_for_other_nodes_go_through_the_broker_once_per_operation() {
    let broker = Arc::new(Recorder::default());
    let (gw, local, remote) = setup(Some(broker.clone())).await;
    let text = |s: &str| Message::text(s.to_owned());

    assert!(
        gw.send_to_client("s", &remote, text("a"))
            .await
            .expect("send")
    );
    assert!(
        gw.send_to_client("s", &local, text("b"))
            .await
            .expect("send")
    );
    for c in [&local, &remote] {
        gw.registry()
            .join_group("s", c, "g", Member::default())
            .await
            .expect("join");
    }
    assert_eq!(
        gw.send_to_group("s", "g", text("c"), &[])
            .await
            .expect("group"),
        2
    );
    assert_eq!(
        gw.send_to_system("s", text("d"), &[])
            .await
            .expect("system"),
        1
    );
    let code = CloseCode::application(4000).expect("code");
    let reason = CloseReason::parse("bye").expect("reason");
    gw.close_client("s", &remote, code, &reason)
        .await
        .expect("close");

    assert_eq!(
        broker.calls(),
        vec![
            format!("clients s {remote} a"),
            "group s g -0 c".to_owned(),
            "system s -0 d".to_owned(),
            format!("close s {remote} 4000 bye"),
        ]
    );
}

#[tokio::test]
async fn without_a_broker_nothing_leaves_the_node() {
    let (gw, _local, remote) = setup(None).await;
    let sent = gw.send_to_client("s", &remote, Message::text("a")).await;
    assert_eq!(sent, Ok(false));
}

#[tokio::test]
async fn a_broker_that_cannot_publish_answers_unavailable_as_503() {
    let broker = Arc::new(Recorder {
        down: true,
        ..Recorder::default()
    });
    let (gw, _local, remote) = setup(Some(broker)).await;
    let err = gw
        .send_to_client("s", &remote, Message::text("a"))
        .await
        .expect_err("down");
    assert!(matches!(
        err,
        GatewayError::Registry(RegistryError::Unavailable(_))
    ));
    let api: ApiError = err.into();
    assert_eq!(api.status().as_u16(), 503);
}

/// Before cluster mode, a group notice reached only this node's members: a member on another
/// node never heard that someone joined.
#[tokio::test]
async fn group_notices_for_members_on_other_nodes_go_through_the_group_channel() {
    let broker = Arc::new(Recorder::default());
    let (gw, local, remote) = setup(Some(broker.clone())).await;
    gw.registry()
        .join_group("s", &remote, "g", Member::default())
        .await
        .expect("remote joins");
    let group = crate::domain::names::GroupName::parse("g", &gw.config().limits).expect("name");
    gw.join_group("s", &local, &group, Member::default())
        .await
        .expect("join");
    let calls = broker.calls();
    assert_eq!(calls.len(), 1, "{calls:?}");
    assert!(calls[0].starts_with("group s g -1 "), "{calls:?}");
    assert!(calls[0].contains("1001"), "{calls:?}");
}
