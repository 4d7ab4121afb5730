//! Replays every input the db_proxy_server fuzz target once found (`fixtures/fuzz/db_proxy_server/`) and the
//! target's seed inputs through the same property checks, so a fixed bug stays fixed.
//! With `IM_FUZZ_SEED_DIR=<dir>` it also writes the seeds there (the fuzz corpus, see
//! `fuzz/README.md`).
#![allow(clippy::unwrap_used)]

use im_common::fuzzing::{findings, write_seeds};

#[tokio::test(start_paused = true)]
async fn fuzz_findings_stay_fixed() {
    for (name, data) in findings(env!("CARGO_MANIFEST_DIR"), "db_proxy_server") {
        eprintln!("replaying {name}");
        db_proxy_server::fuzzing::check(&data).await;
    }
}

#[tokio::test(start_paused = true)]
async fn seeds_pass_the_checks() {
    let seeds = db_proxy_server::fuzzing::seeds();
    write_seeds(&seeds);
    for (i, s) in seeds.iter().enumerate() {
        eprintln!("seed {i}");
        db_proxy_server::fuzzing::check(s).await;
    }
}

/// The seeds are worth their place in the corpus only if they get past decoding into the
/// handlers and the store: a right password is accepted, a message stored, a group created,
/// the user list read.
#[tokio::test(start_paused = true)]
async fn paced_seeds_reach_the_handlers() {
    use db_proxy_server::fuzzing::{check_link, fixture, seeds};
    use im_proto::buddy::ImAllUserRsp;
    use im_proto::cid;
    use im_proto::group::ImGroupCreateRsp;
    use im_proto::message::ImMsgData;
    use im_proto::server::ImValidateRsp;

    let fx = fixture().await;
    let mut replies = Vec::new();
    for s in seeds().iter().filter(|s| s[0] & 1 == 1) {
        replies.extend(check_link(&fx, s).await.replies);
    }
    let of = |c: u16| replies.iter().filter(move |r| r.command_id() == c);
    let logins: Vec<u32> = of(cid::CID_OTHER_VALIDATE_RSP)
        .map(|r| r.decode::<ImValidateRsp>().unwrap().result_code)
        .collect();
    assert!(
        logins.contains(&0) && logins.contains(&1),
        "logins {logins:?}"
    );
    assert!(
        // db_proxy answers a store with the message itself, its id filled in.
        of(cid::CID_MSG_DATA).any(|r| r.decode::<ImMsgData>().unwrap().msg_id != 0),
        "no message stored"
    );
    assert!(
        of(cid::CID_GROUP_CREATE_RESPONSE).any(|r| r
            .decode::<ImGroupCreateRsp>()
            .unwrap()
            .result_code
            == 0),
        "no group created"
    );
    assert!(
        of(cid::CID_BUDDY_LIST_ALL_USER_RESPONSE).any(|r| !r
            .decode::<ImAllUserRsp>()
            .unwrap()
            .user_list
            .is_empty()),
        "no user listed"
    );
}
