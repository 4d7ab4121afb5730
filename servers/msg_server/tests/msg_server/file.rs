//! File transfer end to end (FLOWS.md 14): two msg_servers, a real route_server, a real
//! db_proxy_server on SQLite and a real file_server; clients ask msg_server for a task
//! (CID_FILE_REQUEST -> IMFileRsp / IMFileNotify) and move the bytes through file_server.

use std::time::Instant;

use bytes::Bytes;
use im_common::CancellationToken;
use im_proto::base::{ClientFileState, ClientType, IpAddr};
use im_proto::client::{Events, ImClient};
use im_proto::file::{
    ImFileAddOfflineReq, ImFileDelOfflineReq, ImFileHasOfflineReq, ImFileLoginReq, ImFileNotify,
    ImFilePullDataReq, ImFilePullDataRsp, ImFileReq, ImFileState,
};
use im_proto::{Pdu, cid};
use sha2::{Digest, Sha256};
use tokio::net::TcpListener;

use crate::harness::*;
use crate::real_db::{RealDb, real_db, user};

const ONLINE: i32 = 1;
const OFFLINE: i32 = 2;
const BLOCK: usize = 32_768;

/// A file_server on port 0 over a temp directory, deleting expired records through `db`.
struct Fs {
    /// Its msg_server port.
    msg: String,
    /// Its client port.
    port: u16,
    shutdown: CancellationToken,
    _dir: tempfile::TempDir,
}

impl Drop for Fs {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

async fn file_server(db: &RealDb) -> Fs {
    let dir = tempfile::tempdir().unwrap();
    let client = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let msg = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = client.local_addr().unwrap().port();
    let msg_addr = msg.local_addr().unwrap().to_string();
    let config = file_server::Config {
        client_listen: "127.0.0.1:0".into(),
        msg_server_listen: "127.0.0.1:0".into(),
        data_dir: dir.path().join("offline_file"),
        db_proxy: vec![db.addr.clone()],
        ..file_server::Config::default()
    };
    let listeners = file_server::Listeners {
        msg_servers_tls: None,
        client,
        msg_servers: msg,
        admin: None,
        metrics: None,
    };
    let shutdown = CancellationToken::new();
    tokio::spawn(file_server::run(config, listeners, shutdown.clone()));
    Fs {
        msg: msg_addr,
        port,
        shutdown,
        _dir: dir,
    }
}

/// Two msg_servers linked to the route_server, db_proxy and file_server.
async fn cluster(db: &RealDb, route: &Route, fs: &Fs) -> (Ms, Ms) {
    let mk = || msg_server::Config {
        file_servers: vec![fs.msg.clone()],
        ..config(&db.addr, &[&route.addr])
    };
    let ms1 = Ms::start(mk()).await;
    let ms2 = Ms::start(mk()).await;
    for ms in [&ms1, &ms2] {
        ms.wait_links("route_server", 1).await;
        ms.wait_links("db_proxy_server", 2).await;
        wait_until("the file_server link", || async {
            ms.metric("file_server_links_up").await == 1.0
        })
        .await;
    }
    (ms1, ms2)
}

fn bytes_of(n: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

fn sha256(b: &[u8]) -> [u8; 32] {
    Sha256::digest(b).into()
}

/// A connection to file_server, logged in to a task.
struct FileConn {
    c: ImClient,
    ev: Events,
    user: u32,
    task: String,
}

/// Logs in to `task` at the address msg_server handed out; returns the result code.
async fn file_login(addrs: &[IpAddr], user: u32, task: &str, role: i32) -> (FileConn, u32) {
    let a = addrs.first().expect("an address for file_server");
    let (c, ev) = ImClient::connect(&format!("{}:{}", a.ip, a.port), client_config())
        .await
        .unwrap();
    let rsp = c
        .request(&ImFileLoginReq {
            user_id: user,
            task_id: task.to_owned(),
            file_role: role,
        })
        .await
        .unwrap();
    let conn = FileConn {
        c,
        ev,
        user,
        task: task.to_owned(),
    };
    (conn, rsp.result_code)
}

/// Asserts that a login is refused and the connection closed.
async fn refused(addrs: &[IpAddr], user: u32, task: &str, role: i32) {
    let (mut f, code) = file_login(addrs, user, task, role).await;
    assert_eq!(code, 1, "user {user} in role {role} must be refused");
    f.closed().await;
}

impl FileConn {
    async fn next(&mut self) -> Pdu {
        match self.ev.recv_timeout(WAIT).await {
            Ok(Some(p)) => p,
            other => panic!("user {}: expected a PDU, got {other:?}", self.user),
        }
    }

    async fn closed(&mut self) {
        let deadline = Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.ev.recv_timeout(left).await {
                Ok(None) => return,
                Ok(Some(_)) => {}
                Err(_) => panic!("user {}: connection not closed", self.user),
            }
        }
    }

    async fn state(&mut self) -> ImFileState {
        let p = self.next().await;
        assert_eq!(p.command_id(), cid::CID_FILE_STATE);
        p.decode().unwrap()
    }

    /// Online sender: answers the relayed pull requests until a state arrives.
    async fn serve(&mut self, data: &[u8]) -> ImFileState {
        loop {
            let p = self.next().await;
            if p.command_id() == cid::CID_FILE_STATE {
                return p.decode().unwrap();
            }
            let req: ImFilePullDataReq = p.decode().unwrap();
            let start = req.offset as usize;
            let end = (start + req.data_size as usize).min(data.len());
            let rsp = ImFilePullDataRsp {
                result_code: 0,
                task_id: self.task.clone(),
                user_id: self.user,
                offset: req.offset,
                file_data: Bytes::copy_from_slice(&data[start..end]),
            };
            self.c.send_pdu(&p.reply(&rsp)).await.unwrap();
        }
    }

    /// Pulls `size` bytes in `chunk`s (online) or whole blocks (offline, `chunk` = 0).
    async fn pull(&self, size: usize, mode: i32, chunk: usize) -> Vec<u8> {
        let mut out = Vec::with_capacity(size);
        while out.len() < size {
            let req = ImFilePullDataReq {
                task_id: self.task.clone(),
                user_id: self.user,
                trans_mode: mode,
                offset: out.len() as u32,
                data_size: chunk.min(size - out.len()) as u32,
            };
            let p = self
                .c
                .request_pdu(Pdu::from_msg(&req, 0), cid::CID_FILE_PULL_DATA_RSP, WAIT)
                .await
                .unwrap();
            let rsp: ImFilePullDataRsp = p.decode().unwrap();
            assert_eq!(rsp.offset as usize, out.len());
            assert!(!rsp.file_data.is_empty());
            out.extend_from_slice(&rsp.file_data);
        }
        out
    }

    /// Offline uploader: sends exactly the blocks file_server asks for, until DONE.
    async fn upload(&mut self, data: &[u8]) {
        loop {
            let p = self.next().await;
            if p.command_id() == cid::CID_FILE_STATE {
                let st: ImFileState = p.decode().unwrap();
                assert_eq!(st.state, ClientFileState::ClientFileDone as i32);
                return;
            }
            let req: ImFilePullDataReq = p.decode().unwrap();
            let start = req.offset as usize;
            let end = start + req.data_size as usize;
            self.c
                .send(&ImFilePullDataRsp {
                    result_code: 0,
                    task_id: self.task.clone(),
                    user_id: self.user,
                    offset: req.offset,
                    file_data: Bytes::copy_from_slice(&data[start..end]),
                })
                .await
                .unwrap();
        }
    }
}

#[tokio::test]
async fn online_transfer_across_msg_servers_is_byte_exact_and_strangers_are_refused() {
    let db = real_db().await;
    let route = Route::start().await;
    let fs = file_server(&db).await;
    let (ms1, ms2) = cluster(&db, &route, &fs).await;
    let alice = user(&ms1.addr, "alice", ClientType::Windows).await;
    let mut bob = user(&ms2.addr, "bob", ClientType::Mac).await;
    wait_pc_online(&alice, bob.id).await;

    let data = bytes_of(200_000 + 333, 1);
    let rsp = alice
        .c
        .request(&ImFileReq {
            from_user_id: 77,
            to_user_id: bob.id,
            file_name: "movie.bin".into(),
            file_size: data.len() as u32,
            trans_mode: ONLINE,
        })
        .await
        .unwrap();
    assert_eq!(rsp.result_code, 0, "{rsp:?}");
    assert_eq!((rsp.from_user_id, rsp.to_user_id), (alice.id, bob.id));
    assert_eq!(rsp.trans_mode, ONLINE, "bob has a PC client online");
    assert_eq!(rsp.task_id.len(), 36);
    let addrs = rsp.ip_addr_list.clone();
    assert_eq!(
        addrs
            .iter()
            .map(|a| (a.ip.as_str(), a.port))
            .collect::<Vec<_>>(),
        vec![("127.0.0.1", u32::from(fs.port))]
    );
    let task = rsp.task_id;
    // Bob, on the other msg_server, hears of it through route_server.
    let n = bob.next::<ImFileNotify>().await;
    assert_eq!((n.from_user_id, n.to_user_id), (alice.id, bob.id));
    assert_eq!(
        (n.task_id.as_str(), n.trans_mode, n.offline_ready),
        (task.as_str(), ONLINE, 0)
    );
    assert_eq!(n.file_size, data.len() as u32);
    assert_eq!(n.ip_addr_list, addrs);

    // Someone else, or the wrong role, cannot join.
    let carol = 3;
    refused(&addrs, carol, &task, 1).await;
    refused(&addrs, carol, &task, 2).await;
    refused(&addrs, alice.id, &task, 3).await;
    refused(&addrs, bob.id, &task, 1).await;
    let (mut sender, code) = file_login(&addrs, alice.id, &task, 1).await;
    assert_eq!(code, 0);
    // A second login for a role is refused.
    refused(&addrs, alice.id, &task, 1).await;
    let (mut receiver, code) = file_login(&addrs, bob.id, &task, 2).await;
    assert_eq!(code, 0);
    refused(&addrs, bob.id, &task, 2).await;
    let ready = receiver.state().await;
    assert_eq!(ready.state, ClientFileState::ClientFilePeerReady as i32);
    assert_eq!(ready.user_id, alice.id);

    let sending = tokio::spawn(async move {
        let st = sender.serve(&data).await;
        (data, st)
    });
    let got = receiver.pull(200_333, ONLINE, 16_384).await;
    receiver
        .c
        .send(&ImFileState {
            state: ClientFileState::ClientFileDone as i32,
            task_id: task.clone(),
            user_id: bob.id,
        })
        .await
        .unwrap();
    let (data, st) = sending.await.unwrap();
    assert_eq!(st.state, ClientFileState::ClientFileDone as i32);
    assert_eq!(sha256(&got), sha256(&data), "byte-exact");
    receiver.closed().await;
    ms1.stop().await;
    ms2.stop().await;
}

#[tokio::test]
async fn offline_file_is_listed_downloaded_and_deleted() {
    let db = real_db().await;
    let route = Route::start().await;
    let fs = file_server(&db).await;
    let (ms1, ms2) = cluster(&db, &route, &fs).await;
    let alice = user(&ms1.addr, "alice", ClientType::Windows).await;
    // Bob is on a phone only: no PC presence, so an ONLINE request becomes OFFLINE.
    let mut bob_phone = user(&ms2.addr, "bob", ClientType::Android).await;
    probe(&alice, &mut bob_phone).await;

    let data = bytes_of(3 * BLOCK + 4321, 2);
    let size = data.len() as u32;
    let rsp = alice
        .c
        .request(&ImFileReq {
            from_user_id: alice.id,
            to_user_id: bob_phone.id,
            file_name: "notes.pdf".into(),
            file_size: size,
            trans_mode: ONLINE,
        })
        .await
        .unwrap();
    assert_eq!(rsp.result_code, 0, "{rsp:?}");
    assert_eq!(rsp.trans_mode, OFFLINE, "no PC client of bob is online");
    let (task, addrs) = (rsp.task_id, rsp.ip_addr_list);
    let n = bob_phone.next::<ImFileNotify>().await;
    assert_eq!(
        (n.task_id.as_str(), n.trans_mode, n.offline_ready),
        (task.as_str(), OFFLINE, 0)
    );

    // Upload, then record it.
    let (mut up, code) = file_login(&addrs, alice.id, &task, 3).await;
    assert_eq!(code, 0);
    up.upload(&data).await;
    up.closed().await;
    alice
        .c
        .send(&ImFileAddOfflineReq {
            from_user_id: 999,
            to_user_id: bob_phone.id,
            task_id: task.clone(),
            file_name: "notes.pdf".into(),
            file_size: size,
        })
        .await
        .unwrap();
    let ready = bob_phone.next::<ImFileNotify>().await;
    assert_eq!(
        (ready.task_id.as_str(), ready.offline_ready),
        (task.as_str(), 1)
    );
    assert_eq!(ready.from_user_id, alice.id);
    assert_eq!(ready.ip_addr_list, addrs);

    // Bob's PC lists it (with file_server's addresses) and downloads it.
    let bob = user(&ms2.addr, "bob", ClientType::Windows).await;
    let list = |c: &Client| {
        let c = c.c.clone();
        async move {
            c.request(&ImFileHasOfflineReq {
                user_id: 0,
                attach_data: None,
            })
            .await
            .unwrap()
        }
    };
    wait_until("the offline file to be listed", || async {
        !list(&bob).await.offline_file_list.is_empty()
    })
    .await;
    let has = list(&bob).await;
    assert_eq!(has.user_id, bob.id);
    assert_eq!(has.attach_data, None);
    assert_eq!(has.ip_addr_list, addrs);
    let f = &has.offline_file_list[0];
    assert_eq!(
        (
            f.from_user_id,
            f.task_id.as_str(),
            f.file_name.as_str(),
            f.file_size
        ),
        (alice.id, task.as_str(), "notes.pdf", size)
    );
    // Only the receiver may download it.
    refused(&addrs, 3, &task, 4).await;
    refused(&addrs, alice.id, &task, 4).await;
    let (mut down, code) = file_login(&addrs, bob.id, &task, 4).await;
    assert_eq!(code, 0);
    refused(&addrs, bob.id, &task, 4).await;
    let got = down.pull(data.len(), OFFLINE, BLOCK).await;
    let done = down.state().await;
    assert_eq!(done.state, ClientFileState::ClientFileDone as i32);
    assert_eq!(done.user_id, alice.id);
    down.closed().await;
    assert_eq!(sha256(&got), sha256(&data), "byte-exact");
    // Downloaded once: the role is used up.
    refused(&addrs, bob.id, &task, 4).await;

    // Carol may not delete bob's record; bob may.
    let carol = user(&ms1.addr, "carol", ClientType::Windows).await;
    let del = ImFileDelOfflineReq {
        from_user_id: alice.id,
        to_user_id: bob.id,
        task_id: task.clone(),
    };
    carol.c.send(&del).await.unwrap();
    tokio::time::sleep(QUIET).await;
    assert_eq!(list(&bob).await.offline_file_list.len(), 1);
    bob.c.send(&del).await.unwrap();
    wait_until("the record to go", || async {
        list(&bob).await.offline_file_list.is_empty()
    })
    .await;
    ms1.stop().await;
    ms2.stop().await;
}
