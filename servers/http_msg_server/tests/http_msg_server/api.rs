//! The HTTP surface: the token, the original's parameter checks and headers, discovery.

use serde_json::json;

use crate::harness::*;

#[tokio::test]
async fn without_the_token_every_query_is_401() {
    // No db_proxy behind it: whatever passes the token check can only fail with error 10.
    let hm = Hm::start("127.0.0.1:1", &[]).await;
    let body = json!({"req_user_id": 0, "group_name": "g", "group_type": 1, "group_avatar": "",
        "user_id_list": [1]})
    .to_string();
    for auth in [
        "",
        "\r\nAuthorization: Bearer wrong-token-0123456789",
        "\r\nX-Api-Token: wrong",
        "\r\nAuthorization: Basic aHR0cDphcGk=",
    ] {
        for path in [
            "/query/CreateGroup",
            "/query/ChangeMembers",
            "/query/SendMessage",
            "/query/x",
        ] {
            let a = request(
                &hm.addr,
                &format!("POST {path} HTTP/1.1\r\nHost: x{auth}"),
                &body,
            )
            .await;
            assert_eq!(a.status, 401, "{path} {auth:?}");
            assert_eq!(a.body, r#"{"error_code":2,"error_msg":"认证失败"}"#);
            assert_eq!(a.header("www-authenticate"), Some("Bearer"));
            assert_eq!(a.header("connection"), Some("close"));
        }
    }
    // With the token (either header) the request gets through to the missing db_proxy.
    for auth in [
        format!("Authorization: Bearer {API_TOKEN}"),
        format!("X-Api-Token: {API_TOKEN}"),
    ] {
        let a = request(
            &hm.addr,
            &format!("POST /query/CreateGroup HTTP/1.1\r\nHost: x\r\n{auth}"),
            &body,
        )
        .await;
        assert_eq!(a.status, 200);
        assert_eq!(a.body, r#"{"error_code":10,"error_msg":"服务器异常"}"#);
    }
    hm.stop().await;
}

#[tokio::test]
async fn parameters_are_checked_as_the_original() {
    let hm = Hm::start("127.0.0.1:1", &[]).await;
    let bad = [
        (
            "/query/CreateGroup",
            json!({"group_name": "g", "group_type": 1, "group_avatar": "",
            "user_id_list": [1]}),
        ),
        (
            "/query/CreateGroup",
            json!({"req_user_id": 0, "group_name": "g", "group_type": 3,
            "group_avatar": "", "user_id_list": [1]}),
        ),
        (
            "/query/CreateGroup",
            json!({"req_user_id": 0, "group_name": "g", "group_type": 1,
            "user_id_list": [1]}),
        ),
        (
            "/query/ChangeMembers",
            json!({"req_user_id": 0, "group_id": 1, "modify_type": 3,
            "user_id_list": [1]}),
        ),
        (
            "/query/ChangeMembers",
            json!({"req_user_id": 0, "group_id": "x", "modify_type": 1,
            "user_id_list": [1]}),
        ),
        (
            "/query/ChangeMembers",
            json!({"req_user_id": 0, "group_id": 1, "modify_type": 1}),
        ),
        (
            "/query/SendMessage",
            json!({"from_user_id": 1, "to_session_id": 2, "msg_type": 2,
            "text": "voice?"}),
        ),
        (
            "/query/SendMessage",
            json!({"from_user_id": 1, "to_session_id": 2, "msg_type": 1,
            "text": ""}),
        ),
        (
            "/query/SendMessage",
            json!({"from_user_id": 1, "to_session_id": 2, "msg_type": 1,
            "text": "x".repeat(5000)}),
        ),
        ("/query/SendMessage", json!([1, 2])),
    ];
    for (path, q) in bad {
        let a = query(&hm.addr, path, &q).await;
        assert_eq!(a.status, 200, "{q}");
        assert_eq!(
            a.body, r#"{"error_code":1,"error_msg":"参数错误"}"#,
            "{path} {q}"
        );
        // The original's headers.
        assert_eq!(a.header("content-type"), Some("text/html;charset=utf-8"));
        assert_eq!(a.header("cache-control"), Some("no-cache"));
        assert_eq!(a.header("connection"), Some("close"));
    }
    let a = request(
        &hm.addr,
        &format!("POST /query/CreateGroup HTTP/1.1\r\nHost: x\r\nX-Api-Token: {API_TOKEN}"),
        "{not json",
    )
    .await;
    assert_eq!(a.json()["error_code"], 1);
    // app_key is accepted and ignored; numbers as strings are read (PHP form input).
    let a = query(
        &hm.addr,
        "/query/ChangeMembers",
        &json!({"req_user_id": "0", "app_key": "anything", "group_id": "7", "modify_type": "2",
            "user_id_list": ["3"]}),
    )
    .await;
    assert_eq!(a.json()["error_code"], 10, "valid, but no db_proxy");
    // Outside /query/ and /api/discovery: nothing.
    let a = request(&hm.addr, "GET /index.html HTTP/1.1\r\nHost: x", "").await;
    assert_eq!(a.status, 404);
    // No db_proxy: discovery is unavailable, and says so with an empty list.
    let a = request(&hm.addr, "GET /api/discovery HTTP/1.1\r\nHost: x", "").await;
    assert_eq!((a.status, a.body.as_str()), (503, "[]"));
    hm.stop().await;
}

#[tokio::test]
async fn discovery_lists_the_visible_items_without_a_token() {
    use im_storage::Store;
    let suite = Suite::start().await;
    let store = suite.store();
    store
        .add_discovery("内网", "http://intra.example/", 2)
        .await
        .unwrap();
    let hidden = store
        .add_discovery("old", "http://old.example/", 1)
        .await
        .unwrap();
    store
        .add_discovery("Wiki", "http://wiki.example/", 1)
        .await
        .unwrap();
    assert!(store.remove_discovery(hidden).await.unwrap());
    let hm = Hm::start(&suite.db, &[]).await;
    hm.wait_links("db_proxy_server", 2).await;
    let a = request(&hm.addr, "GET /api/discovery HTTP/1.1\r\nHost: x", "").await;
    assert_eq!(a.status, 200);
    assert_eq!(
        a.header("content-type"),
        Some("application/json;charset=utf-8")
    );
    let v = a.json();
    let items = v.as_array().unwrap();
    assert_eq!(items.len(), 2, "{v}");
    // Every value a string, as PHP returns them.
    for item in items {
        for key in ["itemName", "itemUrl", "itemPriority"] {
            assert!(item[key].is_string(), "{item}");
        }
    }
    let wiki = items.iter().find(|i| i["itemName"] == "Wiki").unwrap();
    assert_eq!(wiki["itemUrl"], "http://wiki.example/");
    assert_eq!(wiki["itemPriority"], "1");
    let intra = items.iter().find(|i| i["itemName"] == "内网").unwrap();
    assert_eq!(intra["itemPriority"], "2");
    hm.stop().await;
}
