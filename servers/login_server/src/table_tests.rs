use super::*;

fn info(host: &str, port: u32, cur: u32, max: u32) -> ImMsgServInfo {
    ImMsgServInfo {
        ip1: "10.0.0.1".into(),
        ip2: "10.0.0.2".into(),
        port,
        max_conn_cnt: max,
        cur_conn_cnt: cur,
        host_name: host.into(),
    }
}

fn ports(t: &MsgServerTable, n: usize, now: Instant) -> Vec<u32> {
    (0..n)
        .map(|_| t.assign(now).map(|a| a.port).unwrap_or(0))
        .collect()
}

#[test]
fn empty_and_full_are_refused_with_the_right_reason() {
    let t = MsgServerTable::new(Duration::from_secs(10));
    let now = Instant::now();
    assert_eq!(t.assign(now), Err(Refusal::NoMsgServer));
    t.register(1, info("a", 8000, 2, 2), now);
    assert_eq!(t.assign(now), Err(Refusal::Full));
    t.register(2, info("b", 8001, 0, 0), now);
    assert_eq!(t.assign(now), Err(Refusal::Full));
}

#[test]
fn pending_logins_spread_a_burst_and_respect_capacity() {
    let t = MsgServerTable::new(Duration::from_secs(10));
    let now = Instant::now();
    t.register(1, info("a", 8000, 0, 1000), now);
    t.register(2, info("b", 8001, 0, 1000), now);
    let got = ports(&t, 100, now);
    assert_eq!(got.iter().filter(|p| **p == 8000).count(), 50);
    assert_eq!(got.iter().filter(|p| **p == 8001).count(), 50);
    // Ties go to the first link.
    assert_eq!(got[0], 8000);

    // A small server fills up (reported + pending) and is skipped.
    let t = MsgServerTable::new(Duration::from_secs(10));
    t.register(1, info("small", 8000, 3, 10), now);
    t.register(2, info("big", 8001, 20, 1000), now);
    let got = ports(&t, 30, now);
    assert_eq!(got.iter().filter(|p| **p == 8000).count(), 7);
    assert_eq!(t.totals(), (23, 1010, 30));
}

#[test]
fn reports_consume_pending_and_counts_never_go_negative() {
    let t = MsgServerTable::new(Duration::from_secs(10));
    let now = Instant::now();
    t.register(7, info("a", 8000, 0, 100), now);
    ports(&t, 3, now);
    assert!(t.user_cnt_update(7, USER_CNT_INC, now));
    assert!(t.user_cnt_update(7, USER_CNT_INC, now));
    let s = &t.snapshot(now)[0];
    assert_eq!(
        (s.cur_conn_cnt, s.pending_logins, s.assignments_total),
        (2, 1, 3)
    );
    for _ in 0..5 {
        t.user_cnt_update(7, USER_CNT_DEC, now);
    }
    assert_eq!(t.snapshot(now)[0].cur_conn_cnt, 0);
    // Unknown actions change nothing; unknown links are reported.
    t.user_cnt_update(7, 9, now);
    assert_eq!(t.snapshot(now)[0].cur_conn_cnt, 0);
    assert!(!t.user_cnt_update(8, USER_CNT_INC, now));
}

#[test]
fn pending_logins_expire() {
    let t = MsgServerTable::new(Duration::from_secs(10));
    let now = Instant::now();
    t.register(1, info("b", 8001, 3, 100), now);
    t.register(2, info("a", 8000, 0, 100), now);
    assert_eq!(ports(&t, 3, now), vec![8000; 3]);
    // Tie at 3: the first link.
    assert_eq!(t.assign(now).map(|a| a.port), Ok(8001));
    let later = now + Duration::from_secs(11);
    assert_eq!(t.assign(later).map(|a| a.port), Ok(8000));
    assert_eq!(t.pending_expired_total(), 4);
    let s = t.snapshot(later);
    assert_eq!(s[0].pending_logins + s[1].pending_logins, 1);

    // TTL 0: hand-outs are not counted at all (the original's behaviour).
    let t = MsgServerTable::new(Duration::ZERO);
    t.register(1, info("a", 8000, 0, 100), now);
    t.register(2, info("b", 8001, 0, 100), now);
    assert_eq!(ports(&t, 3, now), vec![8000; 3]);
}

#[test]
fn re_registration_replaces_and_removal_forgets() {
    let t = MsgServerTable::new(Duration::from_secs(10));
    let now = Instant::now();
    assert_eq!(
        t.register(1, info("a", 8000, 10, 100), now),
        Registration::New
    );
    ports(&t, 2, now);
    assert_eq!(
        t.register(1, info("a", 8000, 12, 100), now),
        Registration::Replaced
    );
    assert_eq!(t.len(), 1);
    let s = &t.snapshot(now)[0];
    assert_eq!((s.cur_conn_cnt, s.pending_logins), (12, 2));
    assert_eq!(t.totals().0, 12);
    assert!(t.remove(1, now).is_some());
    assert!(t.is_empty());
    assert_eq!(t.assign(now), Err(Refusal::NoMsgServer));
}

#[test]
fn drain_by_name_or_address_is_sticky_until_undrained() {
    let t = MsgServerTable::new(Duration::from_secs(10));
    let now = Instant::now();
    t.register(1, info("a", 8000, 0, 100), now);
    t.register(2, info("b", 8001, 50, 100), now);
    assert!(matches!(t.drain("a", false), DrainOutcome::Applied(v) if v.len() == 1));
    assert_eq!(ports(&t, 3, now), vec![8001; 3]);
    // The link drops and comes back: still drained.
    t.remove(1, now);
    t.register(3, info("a", 8000, 0, 100), now);
    assert!(
        t.snapshot(now)
            .iter()
            .any(|s| s.host_name == "a" && s.draining)
    );
    // Undrain under its address lifts the drain made under its name.
    assert!(matches!(
        t.drain("10.0.0.1:8000", true),
        DrainOutcome::Applied(_)
    ));
    assert_eq!(t.assign(now).map(|a| a.port), Ok(8000));
    t.remove(3, now);
    t.register(4, info("a", 8000, 0, 100), now);
    assert!(t.snapshot(now).iter().all(|s| !s.draining));
    // Both drained: refused as full.
    t.drain("a", false);
    t.drain("10.0.0.2:8001", false);
    assert_eq!(t.assign(now), Err(Refusal::Full));

    match t.drain("nope", false) {
        DrainOutcome::NotFound { known } => {
            assert_eq!(known, vec!["b (10.0.0.1:8001)", "a (10.0.0.1:8000)"]);
        }
        other => panic!("{other:?}"),
    }
}
