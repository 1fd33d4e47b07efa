//! Malformed API input: every case answers a 4xx `{"code": <non-zero>, "msg": "…"}`, and the
//! gateway keeps serving afterwards.
mod common;
mod oneshot;

use common::TestGateway;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use serde_json::{Value, json};

/// How the `systemId` header is sent.
#[derive(Clone, Copy)]
enum Sys {
    /// `systemId: app`.
    App,
    /// No header.
    Missing,
    /// `systemId:` (empty).
    Empty,
    /// A value that is not ASCII.
    NonAscii,
    /// A system nobody registered.
    Unknown,
}

/// One malformed call.
struct Case {
    name: &'static str,
    method: &'static str,
    /// Path under the gateway, e.g. `/api/websocket/send_to_client`.
    path: String,
    sys: Sys,
    /// The raw body.
    body: Vec<u8>,
    status: u16,
}

fn case(name: &'static str, op: &str, body: impl Into<Vec<u8>>, status: u16) -> Case {
    Case {
        name,
        method: "POST",
        path: format!("/api/websocket/{op}"),
        sys: Sys::App,
        body: body.into(),
        status,
    }
}

fn json_case(name: &'static str, op: &str, body: Value, status: u16) -> Case {
    case(name, op, body.to_string(), status)
}

fn with_sys(mut c: Case, sys: Sys) -> Case {
    c.sys = sys;
    c
}

fn with_method(mut c: Case, method: &'static str) -> Case {
    c.method = method;
    c
}

fn cases(client: &str) -> Vec<Case> {
    let deep = format!("{}{}", "[".repeat(1500), "]".repeat(1500));
    let deep_obj = format!("{{\"clientId\":{}1{}}}", "[".repeat(1500), "]".repeat(1500));
    vec![
        // Not JSON, or not an object.
        case("truncated JSON", "send_to_client", "{\"clientId\":", 400),
        case("garbage", "get_all_client_count", "hello", 400),
        case("JSON array body", "get_all_client_count", "[]", 400),
        case("JSON number body", "get_all_client_count", "42", 400),
        case("JSON string body", "get_all_client_count", "\"x\"", 400),
        case("JSON null body", "get_all_client_count", "null", 400),
        case(
            "invalid UTF-8 body",
            "send_to_client",
            b"{\"clientId\":\"\xff\"}".to_vec(),
            400,
        ),
        case("trailing garbage", "get_all_client_count", "{} {}", 400),
        case("deeply nested array", "get_all_client_count", deep, 400),
        case("deeply nested field", "send_to_client", deep_obj, 400),
        case(
            "number overflow",
            "send_to_client",
            format!("{{\"clientId\":\"{client}\",\"code\":1e999}}"),
            400,
        ),
        // Wrong types.
        json_case(
            "clientId number",
            "send_to_client",
            json!({"clientId": 5}),
            400,
        ),
        json_case(
            "clientIds string",
            "send_to_clients",
            json!({"clientIds": client}),
            400,
        ),
        json_case(
            "clientIds of numbers",
            "send_to_clients",
            json!({"clientIds": [1, 2]}),
            400,
        ),
        json_case(
            "code string",
            "send_to_client",
            json!({"clientId": client, "code": "7"}),
            400,
        ),
        json_case(
            "code too big for i64",
            "send_to_client",
            json!({"clientId": client, "code": 1u64 << 63}),
            400,
        ),
        json_case(
            "code fractional",
            "send_to_client",
            json!({"clientId": client, "code": 1.5}),
            400,
        ),
        json_case(
            "msg object",
            "send_to_client",
            json!({"clientId": client, "msg": {}}),
            400,
        ),
        json_case(
            "sendUserId number",
            "send_to_client",
            json!({"clientId": client, "sendUserId": 1}),
            400,
        ),
        json_case(
            "info with number values",
            "set_info",
            json!({"clientId": client, "info": {"a": 1}}),
            400,
        ),
        json_case(
            "info with nested object",
            "update_info",
            json!({"clientId": client, "info": {"a": {"b": "c"}}}),
            400,
        ),
        json_case(
            "info as array",
            "set_info",
            json!({"clientId": client, "info": ["a"]}),
            400,
        ),
        json_case(
            "groupName object",
            "send_to_group",
            json!({"groupName": {"x": 1}}),
            400,
        ),
        json_case(
            "groupName number in get_online_list",
            "get_online_list",
            json!({"groupName": 3}),
            400,
        ),
        json_case("uid array", "send_to_uid", json!({"uid": ["u"]}), 400),
        json_case(
            "extend object",
            "bind_to_group",
            json!({"clientId": client, "groupName": "g", "extend": {"a": 1}}),
            400,
        ),
        json_case(
            "systemId number in register",
            "register",
            json!({"systemId": 9}),
            400,
        ),
        // Missing or empty fields.
        json_case(
            "missing clientId",
            "send_to_client",
            json!({"data": 1}),
            400,
        ),
        json_case(
            "missing clientIds",
            "send_to_clients",
            json!({"data": 1}),
            400,
        ),
        json_case(
            "missing groupName",
            "bind_to_group",
            json!({"clientId": client}),
            400,
        ),
        json_case("missing uid", "bind_uid", json!({"clientId": client}), 400),
        json_case("missing info", "set_info", json!({"clientId": client}), 400),
        json_case("missing systemId in register", "register", json!({}), 400),
        json_case(
            "empty systemId in register",
            "register",
            json!({"systemId": ""}),
            400,
        ),
        json_case(
            "empty uid",
            "bind_uid",
            json!({"clientId": client, "uid": ""}),
            400,
        ),
        json_case(
            "empty groupName",
            "bind_to_group",
            json!({"clientId": client, "groupName": ""}),
            400,
        ),
        json_case(
            "empty group in send_to_group",
            "send_to_group",
            json!({"groupName": ""}),
            400,
        ),
        json_case(
            "empty clientId",
            "send_to_client",
            json!({"clientId": ""}),
            400,
        ),
        json_case(
            "empty clientId in close_client",
            "close_client",
            json!({"clientId": ""}),
            400,
        ),
        // Bad close codes.
        json_case(
            "close code 1005",
            "close_client",
            json!({"clientId": client, "code": 1005}),
            400,
        ),
        json_case(
            "close code 999",
            "close_client",
            json!({"clientId": client, "code": 999}),
            400,
        ),
        json_case(
            "close code 1006",
            "close_client",
            json!({"clientId": client, "code": 1006}),
            400,
        ),
        json_case(
            "close code 2999",
            "close_client",
            json!({"clientId": client, "code": 2999}),
            400,
        ),
        json_case(
            "close code 5000",
            "close_client",
            json!({"clientId": client, "code": 5000}),
            400,
        ),
        json_case(
            "close code > u16",
            "close_client",
            json!({"clientId": client, "code": 70000}),
            400,
        ),
        json_case(
            "close code negative",
            "close_client",
            json!({"clientId": client, "code": -1}),
            400,
        ),
        // The systemId header.
        with_sys(
            json_case(
                "missing systemId header",
                "get_all_client_count",
                json!({}),
                400,
            ),
            Sys::Missing,
        ),
        with_sys(
            json_case(
                "empty systemId header",
                "get_all_client_count",
                json!({}),
                400,
            ),
            Sys::Empty,
        ),
        with_sys(
            json_case(
                "non-ASCII systemId header",
                "get_all_client_count",
                json!({}),
                400,
            ),
            Sys::NonAscii,
        ),
        with_sys(
            json_case("unknown system", "get_all_client_count", json!({}), 404),
            Sys::Unknown,
        ),
        with_sys(
            json_case(
                "unknown system, client op",
                "send_to_client",
                json!({"clientId": client}),
                404,
            ),
            Sys::Unknown,
        ),
        // Unknown things.
        json_case("unknown op", "drop_all_tables", json!({}), 404),
        json_case(
            "unknown client",
            "send_to_client",
            json!({"clientId": "0123456789abcdef0123456789abcdef"}),
            404,
        ),
        json_case(
            "unknown client id shape",
            "get_info",
            json!({"clientId": "../../etc"}),
            404,
        ),
        json_case(
            "unknown group",
            "send_to_group",
            json!({"groupName": "nobody-here"}),
            404,
        ),
        json_case(
            "leave a group never joined",
            "leave_group",
            json!({"clientId": client, "groupName": "g"}),
            404,
        ),
        json_case("no op at all", "", json!({}), 404),
        json_case("op with extra path", "send_to_client/extra", json!({}), 404),
        // Wrong method.
        with_method(
            json_case(
                "GET instead of POST",
                "get_all_client_count",
                json!({}),
                405,
            ),
            "GET",
        ),
        with_method(
            json_case("PUT instead of POST", "send_to_client", json!({}), 405),
            "PUT",
        ),
        with_method(
            json_case("DELETE instead of POST", "close_client", json!({}), 405),
            "DELETE",
        ),
        // Too large (max_body_size is 4 KiB here).
        json_case(
            "body over max_body_size",
            "send_to_client",
            json!({"clientId": client, "data": "x".repeat(16 * 1024)}),
            413,
        ),
    ]
}

#[tokio::test]
async fn malformed_calls_get_4xx_json_and_the_gateway_keeps_serving() {
    let mut config = TestGateway::config_with(&["app"]);
    config.max_body_size = 4 * 1024;
    let gw = TestGateway::start(config).await;
    let mut client = gw.connect("app").await;
    let cases = cases(&client.id);
    assert!(cases.len() >= 30, "only {} cases", cases.len());

    let mut failures = Vec::new();
    for c in &cases {
        let mut headers = HeaderMap::new();
        let system = HeaderName::from_static("systemid");
        match c.sys {
            Sys::App => drop(headers.insert(system, HeaderValue::from_static("app"))),
            Sys::Missing => {}
            Sys::Empty => drop(headers.insert(system, HeaderValue::from_static(""))),
            Sys::NonAscii => drop(headers.insert(
                system,
                HeaderValue::from_bytes("syst\u{e8}me".as_bytes()).expect("obs-text header"),
            )),
            Sys::Unknown => drop(headers.insert(system, HeaderValue::from_static("nope"))),
        }
        headers.insert(
            reqwest::header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        let method = reqwest::Method::from_bytes(c.method.as_bytes()).expect("method");
        let res = gw
            .http
            .request(method, format!("http://{}{}", gw.addr, c.path))
            .headers(headers)
            .body(c.body.clone())
            .send()
            .await
            .unwrap_or_else(|e| panic!("{}: request failed: {e}", c.name));
        let status = res.status().as_u16();
        let text = res.text().await.unwrap_or_default();
        let body: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        let well_formed = body["code"].as_i64().is_some_and(|code| code != 0)
            && body["msg"].as_str().is_some_and(|m| !m.is_empty())
            && body.as_object().map(|o| o.len()) == Some(2);
        if status != c.status || !well_formed {
            failures.push(format!(
                "{}: expected {}, got {status} {text}",
                c.name, c.status
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );

    // Still serving, and no malformed call had an effect on the client.
    assert_eq!(
        gw.ok("is_online", "app", json!({"clientId": client.id}))
            .await,
        json!({"online": true})
    );
    assert_eq!(
        gw.ok("get_info", "app", json!({"clientId": client.id}))
            .await,
        json!({"info": {}})
    );
    assert_eq!(
        gw.ok("get_all_groups", "app", json!({})).await,
        json!({"count": 0, "list": []})
    );
    gw.ok(
        "send_to_client",
        "app",
        json!({"clientId": client.id, "data": "alive"}),
    )
    .await;
    assert_eq!(client.recv_json().await["data"], "alive");
    let other = gw.connect("app").await;
    assert_eq!(
        gw.ok("get_all_client_count", "app", json!({})).await,
        json!({"count": 2})
    );
    drop(other);
    gw.stop().await;
}

#[tokio::test]
async fn an_empty_body_counts_as_an_empty_object() {
    let gw = TestGateway::start(TestGateway::config_with(&["app"])).await;
    let res = gw
        .http
        .post(format!(
            "http://{}/api/websocket/get_all_client_count",
            gw.addr
        ))
        .header("systemId", "app")
        .send()
        .await
        .expect("call");
    assert_eq!(res.status().as_u16(), 200);
    let body: Value = res.json().await.expect("JSON");
    assert_eq!(
        body,
        json!({"code": 0, "msg": "success", "data": {"count": 0}})
    );
    // ...but an op that needs a field says which.
    let res = gw
        .http
        .post(format!("http://{}/api/websocket/send_to_client", gw.addr))
        .header("systemId", "app")
        .send()
        .await
        .expect("call");
    assert_eq!(res.status().as_u16(), 400);
    let body: Value = res.json().await.expect("JSON");
    assert!(
        body["msg"].as_str().is_some_and(|m| m.contains("clientId")),
        "{body}"
    );
    gw.stop().await;
}

/// The classes the typed layer added (names over `limits.max_name_bytes`, count and size limits,
/// `unregister`, the body limit, paths that are not UTF-8), through `app()` without a socket:
/// each answers its 4xx as JSON `{code,msg}` with `code` equal to the status.
#[tokio::test]
async fn limits_names_and_unregister_answer_4xx_json_without_a_socket() {
    use axum::body::Body;
    use axum::http::Request;
    use oneshot::App;

    let mut config = App::config_with(&["app"]);
    config.max_body_size = 4 * 1024;
    config.limits.max_groups_per_client = 1;
    let app = App::new(config).await;
    let (c, _rx) = app.client("app").await;
    let long = "n".repeat(257);
    let at_limit = "n".repeat(256);
    app.ok(
        "join_group",
        "app",
        json!({"clientId": c, "groupName": at_limit}),
    )
    .await;
    let cases: Vec<(&str, &str, Option<&str>, String, u16)> = vec![
        ("register name too long", "register", None, json!({"systemId": long}).to_string(), 400),
        ("unregister, no systemId", "unregister", None, "{}".into(), 400),
        ("unregister, empty systemId", "unregister", None, json!({"systemId": ""}).to_string(), 400),
        ("unregister, systemId number", "unregister", None, json!({"systemId": 1}).to_string(), 400),
        ("unregister, name too long", "unregister", None, json!({"systemId": long}).to_string(), 400),
        ("unregister unknown", "unregister", None, json!({"systemId": "nope"}).to_string(), 404),
        ("unregister configured", "unregister", None, json!({"systemId": "app"}).to_string(), 409),
        ("systemId header too long", "get_all_groups", Some(long.as_str()), "{}".into(), 400),
        ("group too long", "join_group", Some("app"), json!({"clientId": c, "groupName": long}).to_string(), 400),
        ("uid too long", "bind_uid", Some("app"), json!({"clientId": c, "uid": long}).to_string(), 400),
        ("uid too long in a query", "get_client_ids_by_uid", Some("app"), json!({"uid": long}).to_string(), 400),
        ("groups per client", "join_group", Some("app"), json!({"clientId": c, "groupName": "second"}).to_string(), 429),
        ("info entries", "set_info", Some("app"), json!({"clientId": c, "info": (0..65).map(|i| (format!("k{i}"), json!("v"))).collect::<serde_json::Map<_, _>>()}).to_string(), 413),
        ("body over max_body_size", "get_all_groups", Some("app"), format!("{{\"pad\":\"{}\"}}", "x".repeat(8 * 1024)), 413),
    ];
    let mut failures = Vec::new();
    for (name, op, system, body, status) in cases {
        let a = app.raw(op, system, body).await;
        if a.status != status || !a.is_error_json() {
            failures.push(format!(
                "{name}: expected {status}, got {} {}",
                a.status, a.text
            ));
        }
    }
    // A body over the limit sent without Content-Length (chunked) is cut while it is read.
    let chunks: Vec<Result<String, std::io::Error>> =
        (0..8).map(|_| Ok("x".repeat(1024))).collect();
    let req = Request::post("/api/websocket/get_all_groups")
        .header("systemId", "app")
        .body(Body::from_stream(futures_util::stream::iter(chunks)))
        .expect("request");
    let a = app.send(req).await;
    if a.status != 413 || !a.is_error_json() {
        failures.push(format!("chunked body: got {} {}", a.status, a.text));
    }
    // An op segment that is not UTF-8, and the wrong method on the new op.
    let req = Request::post("/api/websocket/%FF%FE")
        .body(Body::empty())
        .expect("request");
    let a = app.send(req).await;
    if a.status != 404 || !a.is_error_json() {
        failures.push(format!("non-UTF-8 op: got {} {}", a.status, a.text));
    }
    let req = Request::get("/api/websocket/unregister")
        .body(Body::empty())
        .expect("request");
    let a = app.send(req).await;
    if a.status != 405 || !a.is_error_json() {
        failures.push(format!("GET unregister: got {} {}", a.status, a.text));
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    // Nothing above changed the system.
    assert_eq!(app.ok("get_all_groups", "app", json!({})).await["count"], 1);
    assert_eq!(
        app.ok("get_all_client_count", "app", json!({})).await["count"],
        1
    );
}
