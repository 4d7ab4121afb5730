//! `imctl sim` against a real in-process suite: the smoke scenario passes with nothing lost,
//! duplicated or reordered; a threshold that cannot hold gives exit code 2; `sim validate`
//! accepts the shipped scenarios and names the bad key of a broken one (exit 3).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use support::{args, cluster, imctl, imctl_config, show};

const SHIPPED: &[&str] = &[
    "smoke",
    "one_to_one",
    "group_chat",
    "login_storm",
    "reconnect_storm",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smoke_scenario_delivers_everything_once_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let cl = cluster(dir.path()).await;
    let config = imctl_config(&cl, dir.path());
    let report = dir.path().join("report.json");
    let md = dir.path().join("report.md");
    let out = imctl(args(&[
        "--config",
        config.to_str().unwrap(),
        "sim",
        "smoke",
        "--quiet",
        "--out-json",
        report.to_str().unwrap(),
        "--out-md",
        md.to_str().unwrap(),
    ]))
    .await;
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let r: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    let v = &r["verification"];
    assert_eq!(v["lost"], 0, "{r:#}");
    assert_eq!(v["duplicates"], 0, "{r:#}");
    assert_eq!(v["reordered"], 0, "{r:#}");
    // 4 users x 10 single messages + 4 x 3 group messages x 3 receivers.
    assert_eq!(v["expected"], 76, "{r:#}");
    assert_eq!(v["matched"], 76, "{r:#}");
    assert_eq!(r["messages"]["acked"], 52, "{r:#}");
    assert_eq!(r["other"]["p2p_received"], 8, "{r:#}");
    assert_eq!(r["other"]["history"], 4, "{r:#}");
    assert!(r["latency_ms"]["send_deliver"]["count"].as_u64().unwrap() >= 76);
    assert!(
        r["checks"]
            .as_array()
            .unwrap()
            .iter()
            .all(|c| c["ok"] == true)
    );
    let md = std::fs::read_to_string(&md).unwrap();
    assert!(
        md.contains("send→deliver") && md.contains("| lost / duplicates / reordered | 0 / 0 / 0 |"),
        "{md}"
    );
    cl.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_threshold_exits_2() {
    let dir = tempfile::tempdir().unwrap();
    let cl = cluster(dir.path()).await;
    let config = imctl_config(&cl, dir.path());
    // Two users, three messages each way; the thresholds ask for a delivery faster than
    // zero and for messages that are never sent.
    let scenario = dir.path().join("impossible.toml");
    std::fs::write(
        &scenario,
        r#"
name = "impossible"
[users]
names = ["zhangsan", "lisi"]
[phases]
together = true
steady_secs = 1
cool_down_secs = 1
[[behaviour]]
name = "talk"
steps = [{ login = {} }, { send = { to = "peer", rate = 10.0, count = 3 } }]
[thresholds]
lost = 0
p99_deliver_ms = 0
min_delivered = 1000
"#,
    )
    .unwrap();
    let out = imctl(args(&[
        "--config",
        config.to_str().unwrap(),
        "--json",
        "sim",
        scenario.to_str().unwrap(),
    ]))
    .await;
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let failed: Vec<&str> = r["checks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["ok"] == false)
        .map(|c| c["metric"].as_str().unwrap())
        .collect();
    assert_eq!(failed, ["delivered", "p99_deliver_ms"], "{r:#}");
    assert_eq!(r["verification"]["lost"], 0, "{r:#}");
    assert_eq!(r["verification"]["matched"], 6, "{r:#}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("threshold failed: p99_deliver_ms"),
        "{stderr}"
    );
    cl.shutdown().await.unwrap();
}

#[tokio::test]
async fn validate_accepts_the_shipped_scenarios_and_names_a_bad_key() {
    let mut a = args(&["sim", "validate"]);
    a.extend(SHIPPED.iter().map(|s| (*s).to_owned()));
    let out = imctl(a).await;
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    for s in SHIPPED {
        assert!(stdout.contains(&format!("{s}.toml: ok")), "{stdout}");
    }

    let dir = tempfile::tempdir().unwrap();
    let broken = dir.path().join("broken.toml");
    std::fs::write(
        &broken,
        r#"
name = "broken"
[users]
names = ["zhangsan", "lisi"]
[[behaviour]]
name = "talk"
steps = [{ login = {} }, { send = { to = "peer", rat = 10.0 } }]
"#,
    )
    .unwrap();
    let out = imctl(args(&["sim", "validate", broken.to_str().unwrap()])).await;
    assert_eq!(out.status.code(), Some(3), "{}", show(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("unknown field `rat`"), "{stderr}");

    std::fs::write(&broken, "name = \"x\"\n[users]\nnames = [\"a\"]\n[[behaviour]]\nname = \"b\"\nsteps = [{ login = {} }]\n[thresholds]\np99_delivr_ms = 5\n").unwrap();
    let out = imctl(args(&["sim", "validate", broken.to_str().unwrap()])).await;
    assert_eq!(out.status.code(), Some(3), "{}", show(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("thresholds.p99_delivr_ms"), "{stderr}");
}
