//! db_proxy_server on MySQL/MariaDB + Redis, started through `run_seeded` as the binary does:
//! the demo seed, logins with the documented passwords, ordered pipelined stores,
//! de-duplication and group messages.
//!
//! The services come from `IM_TEST_MYSQL_URL` (e.g. `mysql://root@127.0.0.1:3306/test`) and
//! `IM_TEST_REDIS_URL` (e.g. `redis://127.0.0.1:6379/`), as for im-storage's tests
//! (`scripts/ci-services.sh` starts them). Each test uses its own database and Redis key
//! prefix. Without the variables the test fails when `CI` is set and is skipped, loudly,
//! otherwise.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::time::Duration;

use bytes::Bytes;
use db_proxy_server::{Config, Listeners, run_seeded};
use im_common::CancellationToken;
use im_proto::Pdu;
use im_proto::attach::RequestTag;
use im_proto::base::MsgType;
use im_proto::client::{ClientConfig, ImClient};
use im_proto::crypto::password_digest;
use im_proto::group::{ImNormalGroupListReq, ImNormalGroupListRsp};
use im_proto::message::ImMsgData;
use im_proto::server::{ImValidateReq, ImValidateRsp};
use im_proto::{Command, cid};
use im_storage::config::{Backend, CacheKind};
use rand::Rng;
use sqlx::AssertSqlSafe;

const WAIT: Duration = Duration::from_secs(30);

fn service_urls() -> Option<(String, String)> {
    let mysql = std::env::var("IM_TEST_MYSQL_URL")
        .ok()
        .filter(|s| !s.is_empty());
    let redis = std::env::var("IM_TEST_REDIS_URL")
        .ok()
        .filter(|s| !s.is_empty());
    match (mysql, redis) {
        (Some(m), Some(r)) => Some((m, r)),
        _ => {
            assert!(
                std::env::var_os("CI").is_none(),
                "IM_TEST_MYSQL_URL / IM_TEST_REDIS_URL are not set, but CI is: the MariaDB/Redis \
                 tests must run in CI (scripts/ci-services.sh starts the services)"
            );
            eprintln!(
                "\n*** SKIPPED: IM_TEST_MYSQL_URL and IM_TEST_REDIS_URL are needed for the \
                 MariaDB/Redis tests ***\n"
            );
            None
        }
    }
}

/// `url` with its database replaced by `db`.
fn with_database(url: &str, db: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let after_scheme = base.find("://").map_or(0, |i| i + 3);
    let host_end = base[after_scheme..]
        .find('/')
        .map_or(base.len(), |i| after_scheme + i);
    let mut out = format!("{}/{db}", &base[..host_end]);
    if let Some(q) = query {
        out.push('?');
        out.push_str(q);
    }
    out
}

async fn ask<M: Command, R: Command>(link: &ImClient, msg: &M) -> R {
    link.request_pdu(Pdu::from_msg(msg, 0), R::COMMAND_ID, WAIT)
        .await
        .unwrap()
        .decode::<R>()
        .unwrap()
}

#[tokio::test]
async fn seeded_mysql_backend_end_to_end() {
    let Some((admin_url, redis_url)) = service_urls() else {
        return;
    };
    let tag = format!("{:016x}", rand::rng().random::<u64>());
    let db = format!("im_dbp_{tag}");
    let admin = sqlx::MySqlPool::connect(&admin_url).await.unwrap();
    sqlx::query(AssertSqlSafe(format!(
        "CREATE DATABASE `{db}` CHARACTER SET utf8mb4"
    )))
    .execute(&admin)
    .await
    .unwrap();

    let mut config = Config {
        listen: "127.0.0.1:0".into(),
        ..Config::default()
    };
    config.storage.backend = Backend::Mysql;
    config.storage.cache = CacheKind::Redis;
    config.storage.mysql.url = with_database(&admin_url, &db);
    config.storage.mysql.pool_size = 4;
    config.storage.redis.url = redis_url;
    config.storage.redis.key_prefix = format!("dbp{tag}:");
    let main = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = main.local_addr().unwrap().to_string();
    let shutdown = CancellationToken::new();
    let seed = std::path::PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../fixtures/seed/demo.toml"
    ));
    let server = {
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            run_seeded(
                config,
                Listeners {
                    main_tls: None,
                    main,
                    admin: None,
                    metrics: None,
                },
                shutdown,
                Some(&seed),
            )
            .await
        })
    };
    let (link, mut events) = ImClient::connect(
        &addr,
        ClientConfig {
            request_timeout: WAIT,
            event_buffer: 4096,
            ..ClientConfig::default()
        },
    )
    .await
    .unwrap();

    // The documented demo passwords work; a wrong one does not.
    let ok: ImValidateRsp = ask(
        &link,
        &ImValidateReq {
            user_name: "zhangsan".into(),
            password: password_digest("123456"),
            attach_data: Some(Bytes::from_static(&[0, 0, 0, 1, 0, 0, 0, 9, 0, 0, 0, 0])),
        },
    )
    .await;
    assert_eq!(ok.result_code, 0);
    let zhangsan = ok.user_info.unwrap().user_id;
    let wrong: ImValidateRsp = ask(
        &link,
        &ImValidateReq {
            user_name: "lisi".into(),
            password: password_digest("654321"),
            attach_data: None,
        },
    )
    .await;
    assert_eq!(wrong.result_code, 1);
    let lisi: ImValidateRsp = ask(
        &link,
        &ImValidateReq {
            user_name: "lisi".into(),
            password: password_digest("123456"),
            attach_data: None,
        },
    )
    .await;
    let lisi = lisi.user_info.unwrap().user_id;

    // 500 pipelined stores of one conversation: ids in send order.
    const N: u16 = 500;
    for seq in 1..=N {
        let (from, to) = if seq % 2 == 0 {
            (zhangsan, lisi)
        } else {
            (lisi, zhangsan)
        };
        let msg = ImMsgData {
            from_user_id: from,
            to_session_id: to,
            msg_id: 0,
            create_time: 0,
            msg_type: MsgType::SingleText as i32,
            msg_data: Bytes::from(format!("m{seq}")),
            attach_data: Some(
                RequestTag {
                    origin: 7,
                    seq: u64::from(seq),
                }
                .encode(),
            ),
        };
        link.send_pdu(&Pdu::from_msg(&msg, seq)).await.unwrap();
    }
    let mut ids = HashMap::new();
    while ids.len() < usize::from(N) {
        let pdu = events.recv_timeout(WAIT).await.unwrap().unwrap();
        assert_eq!(pdu.command_id(), cid::CID_MSG_DATA);
        ids.insert(pdu.seq_num(), pdu.decode::<ImMsgData>().unwrap().msg_id);
    }
    for seq in 1..=N {
        assert_eq!(ids[&seq], u32::from(seq));
    }
    // A retry of request 7/10 gets its first id back.
    let retry = ImMsgData {
        from_user_id: zhangsan,
        to_session_id: lisi,
        msg_id: 0,
        create_time: 0,
        msg_type: MsgType::SingleText as i32,
        msg_data: Bytes::from_static(b"m10"),
        attach_data: Some(RequestTag { origin: 7, seq: 10 }.encode()),
    };
    assert_eq!(ask::<_, ImMsgData>(&link, &retry).await.msg_id, 10);

    // The seeded normal groups, and a group message.
    let groups: ImNormalGroupListRsp = ask(
        &link,
        &ImNormalGroupListReq {
            user_id: zhangsan,
            attach_data: None,
        },
    )
    .await;
    assert_eq!(groups.group_version_list.len(), 2, "全体员工 and 研发部");
    let g = groups.group_version_list[0].group_id;
    let gm = ImMsgData {
        to_session_id: g,
        msg_type: MsgType::GroupText as i32,
        attach_data: None,
        ..retry.clone()
    };
    assert_eq!(ask::<_, ImMsgData>(&link, &gm).await.msg_id, 1);

    shutdown.cancel();
    tokio::time::timeout(WAIT, server)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    sqlx::query(AssertSqlSafe(format!("DROP DATABASE `{db}`")))
        .execute(&admin)
        .await
        .unwrap();
    admin.close().await;
}
