//! A first end-to-end check of the core path.
mod common;
use common::TestGateway;
use serde_json::json;

#[tokio::test]
async fn connect_push_and_receive() {
    let gw = TestGateway::start(TestGateway::config_with(&["app"])).await;
    let mut a = gw.connect("app").await;
    let data = gw
        .ok("send_to_client", "app", json!({"clientId": a.id, "sendUserId": "u1", "code": 7, "msg": "hi", "data": {"x": [1,2]}}))
        .await;
    let got = a.recv_json().await;
    assert_eq!(got["messageId"], data["messageId"]);
    assert_eq!(got["data"], json!({"x": [1,2]}));
    gw.stop().await;
}
