//! The dashboard's live feed `GET /dashboard/events` over a real socket: Server-Sent Events with
//! one JSON snapshot a second (systems, connections, groups and their sizes, message totals),
//! behind the API's authentication, bounded in number, ended by shutdown.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::{TestGateway, WAIT};
use serde_json::{Value, json};
use wasmgate::web::events::MAX_STREAMS;

/// Open the feed with `token` as Bearer (if any).
async fn open(gw: &TestGateway, token: Option<&str>) -> reqwest::Response {
    let mut req = gw
        .http
        .get(format!("http://{}/dashboard/events", gw.addr))
        .header("Accept", "text/event-stream");
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    req.send().await.unwrap()
}

/// The next snapshot of a feed (keep-alive comments skipped); `None` when the stream ended.
async fn next(res: &mut reqwest::Response, buf: &mut String) -> Option<Value> {
    loop {
        if let Some(end) = buf.find("\n\n") {
            let block: String = buf.drain(..end + 2).collect();
            let data: Vec<&str> = block
                .lines()
                .filter_map(|l| l.strip_prefix("data:"))
                .map(str::trim_start)
                .collect();
            if !data.is_empty() {
                return Some(serde_json::from_str(&data.join("\n")).unwrap());
            }
            continue;
        }
        let chunk = tokio::time::timeout(WAIT, res.chunk())
            .await
            .expect("a snapshot within the wait")
            .ok()??;
        buf.push_str(std::str::from_utf8(&chunk).unwrap());
    }
}

#[tokio::test]
async fn snapshots_show_systems_groups_and_message_totals_live() {
    let mut config = TestGateway::config_with(&["app"]);
    config.api_token = Some("s3cret".into());
    let gw = TestGateway::start(config).await;

    let refused = open(&gw, None).await;
    assert_eq!(refused.status(), 401);
    let body: Value = refused.json().await.unwrap();
    assert_eq!(body["code"], 401, "{body}");

    let mut res = open(&gw, Some("s3cret")).await;
    assert_eq!(res.status(), 200);
    let ct = res.headers()["content-type"].to_str().unwrap().to_owned();
    assert!(ct.starts_with("text/event-stream"), "{ct}");
    let mut buf = String::new();
    let first = next(&mut res, &mut buf).await.unwrap();
    assert_eq!(first["systems"]["app"]["connections"], 0, "{first}");

    let client = gw.connect("app").await;
    let bind = gw
        .http
        .post(format!("http://{}/api/websocket/bind_to_group", gw.addr))
        .header("systemId", "app")
        .bearer_auth("s3cret")
        .json(&json!({"clientId": client.id, "groupName": "room"}))
        .send()
        .await
        .unwrap();
    assert_eq!(bind.status(), 200);
    // The next snapshots follow without any request: live.
    let mut seen = first.clone();
    for _ in 0..5 {
        seen = next(&mut res, &mut buf).await.unwrap();
        if seen["systems"]["app"]["connections"] == 1 {
            break;
        }
    }
    assert_eq!(seen["systems"]["app"]["connections"], 1, "{seen}");
    assert_eq!(
        seen["systems"]["app"]["groups"],
        json!([["room", 1]]),
        "{seen}"
    );
    assert!(
        seen["t"].as_f64() > first["t"].as_f64(),
        "{first} then {seen}"
    );
    assert!(seen["plugins"].is_array());
    gw.stop().await;
}

#[tokio::test]
async fn streams_are_bounded_and_end_at_shutdown() {
    let gw = TestGateway::start(TestGateway::config_with(&["app"])).await;
    let mut open_streams = Vec::new();
    for _ in 0..MAX_STREAMS {
        let res = open(&gw, None).await;
        assert_eq!(res.status(), 200);
        open_streams.push(res);
    }
    let over = open(&gw, None).await;
    assert_eq!(over.status(), 429);
    let body: Value = over.json().await.unwrap();
    assert_eq!(body["code"], 429, "{body}");

    // A closed stream gives its place back.
    drop(open_streams.pop());
    let mut again = None;
    for _ in 0..50 {
        let res = open(&gw, None).await;
        if res.status() == 200 {
            again = Some(res);
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut res = again.expect("a place freed by the closed stream");
    let mut buf = String::new();
    assert!(next(&mut res, &mut buf).await.is_some());

    // Shutdown ends every stream (the process could not exit otherwise).
    let stopping = tokio::spawn(gw.stop());
    let mut ended = false;
    for _ in 0..10 {
        match tokio::time::timeout(WAIT, res.chunk()).await {
            Ok(Ok(Some(_))) => continue,
            Ok(_) => {
                ended = true;
                break;
            }
            Err(_) => break,
        }
    }
    assert!(ended, "the stream ends at shutdown");
    stopping.await.unwrap();
}
