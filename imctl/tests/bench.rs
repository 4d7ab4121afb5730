//! `imctl bench` against a real in-process suite: a tiny 1:1 run writes JSON and Markdown
//! reports with the HDR percentiles, nothing lost; a login storm and idle connections report
//! what they measure.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use support::{args, cluster, imctl, imctl_config, show};

const DEMO: &str = "zhangsan,lisi,wangwu,zhaoliu,sunqi,zhouba";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tiny_chat_bench_writes_reports_with_percentiles() {
    let dir = tempfile::tempdir().unwrap();
    let cl = cluster(dir.path()).await;
    let config = imctl_config(&cl, dir.path());
    let json = dir.path().join("bench.json");
    let md = dir.path().join("bench.md");
    let out = imctl(args(&[
        "--config",
        config.to_str().unwrap(),
        "bench",
        "chat",
        "--names",
        DEMO,
        "--rate",
        "60",
        "--warmup",
        "0.5",
        "--duration",
        "2",
        "--cool-down",
        "1",
        "--quiet",
        "--label",
        "test",
        "--out-json",
        json.to_str().unwrap(),
        "--out-md",
        md.to_str().unwrap(),
    ]))
    .await;
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let r: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(r["settings"]["model"], "open", "{r:#}");
    assert_eq!(r["logins"]["ok"], 6, "{r:#}");
    for h in ["login", "send_ack", "send_deliver"] {
        let s = &r["latency_ms"][h];
        for k in ["count", "p50", "p90", "p99", "p999", "max"] {
            assert!(s[k].is_number(), "{h}.{k}: {r:#}");
        }
        assert!(s["count"].as_u64().unwrap() > 0, "{h}: {r:#}");
        assert!(s["p50"].as_f64().unwrap() <= s["max"].as_f64().unwrap());
    }
    let v = &r["verification"];
    assert!(v["matched"].as_u64().unwrap() > 50, "{r:#}");
    assert_eq!(v["lost"], 0, "{r:#}");
    assert_eq!(v["duplicates"], 0, "{r:#}");
    assert_eq!(v["reordered"], 0, "{r:#}");
    assert!(
        r["messages"]["acked_per_sec"].as_f64().unwrap() > 0.0,
        "{r:#}"
    );
    if cfg!(target_os = "linux") {
        // The machine's load over the measured window, from /proc/stat.
        let m = &r["machine"];
        let busy = m["cpu_busy_pct"].as_f64().unwrap();
        assert!((0.0..=100.0).contains(&busy), "{r:#}");
        assert!(m["imctl_pct"].as_f64().unwrap() <= busy + 1.0, "{r:#}");
        assert!(m["cores"].as_u64().unwrap() >= 1, "{r:#}");
    }
    let md = std::fs::read_to_string(&md).unwrap();
    assert!(md.contains("### imctl bench chat (test)"), "{md}");
    if cfg!(target_os = "linux") {
        assert!(
            md.contains("| machine CPU busy (measured window) |"),
            "{md}"
        );
    }
    assert!(
        md.contains("| send→deliver |") && md.contains("p99.9"),
        "{md}"
    );
    cl.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_storm_and_idle_connections() {
    let dir = tempfile::tempdir().unwrap();
    let cl = cluster(dir.path()).await;
    let config = imctl_config(&cl, dir.path());
    let out = imctl(args(&[
        "--config",
        config.to_str().unwrap(),
        "--json",
        "bench",
        "login",
        "--names",
        DEMO,
    ]))
    .await;
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(r["logins"]["ok"], 6, "{r:#}");
    assert!(r["logins"]["per_sec"].as_f64().unwrap() > 0.0, "{r:#}");
    assert_eq!(r["latency_ms"]["login"]["count"], 6, "{r:#}");

    let out = imctl(args(&[
        "--config",
        config.to_str().unwrap(),
        "--json",
        "bench",
        "idle",
        "--names",
        DEMO,
        "--hold",
        "4",
    ]))
    .await;
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let servers = r["servers"].as_array().unwrap();
    assert_eq!(servers.len(), 2, "{r:#}");
    let held: u64 = servers
        .iter()
        .map(|s| s["connections"].as_u64().unwrap())
        .sum();
    assert_eq!(held, 6, "{r:#}");
    assert!(
        servers.iter().all(|s| s["rss_after"].as_u64().unwrap() > 0),
        "{r:#}"
    );
    cl.shutdown().await.unwrap();
}
