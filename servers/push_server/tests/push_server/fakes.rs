//! Local stand-ins for the outside world: one HTTP server that plays APNs (HTTP/2 without
//! TLS, prior knowledge), FCM (an OAuth2 token endpoint at `/token` and the send endpoint)
//! or a webhook, recording every request and answering from a script; and a db_proxy that
//! only knows IMAdminRemoveTokenReq, for as long as the real one does not answer it.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode, Version};
use axum::response::IntoResponse;
use im_common::{CancellationToken, Conn, ConnRegistry, Handler, ServeOptions, serve};
use im_proto::admin::{AdminResult, ImAdminRemoveTokenReq, ImAdminRemoveTokenRsp};
use im_proto::{Pdu, cid};
use tokio::net::TcpListener;

/// One request as the fake saw it.
#[derive(Debug, Clone)]
pub struct Recorded {
    /// HTTP version on the wire.
    pub version: Version,
    /// Path (with query).
    pub path: String,
    /// Headers.
    pub headers: HeaderMap,
    /// Body.
    pub body: Bytes,
}

impl Recorded {
    /// A header as text ("" when absent).
    pub fn header(&self, name: &str) -> String {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    }

    /// The body as JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).expect("JSON body")
    }
}

#[derive(Default)]
struct FakeState {
    requests: Vec<Recorded>,
    token_requests: Vec<Recorded>,
    script: VecDeque<(u16, String)>,
    tokens_issued: u32,
}

/// A recording HTTP server on 127.0.0.1.
pub struct FakeHttp {
    /// `http://127.0.0.1:<port>`.
    pub url: String,
    state: Arc<Mutex<FakeState>>,
    shutdown: CancellationToken,
}

impl Drop for FakeHttp {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

async fn handle(State(s): State<Arc<Mutex<FakeState>>>, req: Request) -> impl IntoResponse {
    let version = req.version();
    let path = req
        .uri()
        .path_and_query()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_default();
    let headers = req.headers().clone();
    let body = axum::body::to_bytes(req.into_body(), 1 << 20)
        .await
        .unwrap_or_default();
    let rec = Recorded {
        version,
        path: path.clone(),
        headers,
        body,
    };
    let mut st = s.lock().unwrap();
    if path == "/token" {
        st.token_requests.push(rec);
        st.tokens_issued += 1;
        let body = serde_json::json!({
            "access_token": format!("access-{}", st.tokens_issued),
            "expires_in": 3600,
            "token_type": "Bearer",
        });
        return (StatusCode::OK, body.to_string());
    }
    st.requests.push(rec);
    let (status, body) = st.script.pop_front().unwrap_or((200, String::new()));
    (StatusCode::from_u16(status).unwrap(), body)
}

impl FakeHttp {
    /// Starts one (HTTP/1.1 and HTTP/2 with prior knowledge on the same port).
    pub async fn start() -> FakeHttp {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let state = Arc::new(Mutex::new(FakeState::default()));
        let shutdown = CancellationToken::new();
        let app = Router::new().fallback(handle).with_state(state.clone());
        let stop = shutdown.clone();
        tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(stop.cancelled_owned())
                .await
                .unwrap();
        });
        FakeHttp {
            url,
            state,
            shutdown,
        }
    }

    /// The next answers to send (status, body), in order; then 200 with an empty body.
    pub fn answer(&self, status: u16, body: &str) {
        self.state
            .lock()
            .unwrap()
            .script
            .push_back((status, body.to_owned()));
    }

    /// Requests received (token requests excluded).
    pub fn requests(&self) -> Vec<Recorded> {
        self.state.lock().unwrap().requests.clone()
    }

    /// Requests to `/token`.
    pub fn token_requests(&self) -> Vec<Recorded> {
        self.state.lock().unwrap().token_requests.clone()
    }
}

/// A db_proxy that answers IMAdminRemoveTokenReq by compare-and-delete over its own table.
pub struct FakeDbProxy {
    /// Its address.
    pub addr: String,
    tokens: Arc<Mutex<HashMap<u32, String>>>,
    asked: Arc<Mutex<Vec<ImAdminRemoveTokenReq>>>,
    shutdown: CancellationToken,
}

impl Drop for FakeDbProxy {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

struct DbConn {
    tokens: Arc<Mutex<HashMap<u32, String>>>,
    asked: Arc<Mutex<Vec<ImAdminRemoveTokenReq>>>,
}

impl Handler for DbConn {
    async fn on_pdu(&mut self, conn: &Conn, pdu: Pdu) {
        if pdu.command_id() != cid::CID_ADMIN_REMOVE_TOKEN_REQ {
            return;
        }
        let req = pdu.decode::<ImAdminRemoveTokenReq>().unwrap();
        self.asked.lock().unwrap().push(req.clone());
        let user = req.user_id.unwrap_or(0);
        let token = req.token.unwrap_or_default();
        let mut t = self.tokens.lock().unwrap();
        let removed = t.get(&user) == Some(&token);
        if removed {
            t.remove(&user);
        }
        let _ = conn.send_pdu(&pdu.reply(&ImAdminRemoveTokenRsp {
            result_code: Some(AdminResult::AdminOk as i32),
            removed: Some(removed),
        }));
    }
}

impl FakeDbProxy {
    /// Starts one holding `tokens` (user -> token).
    pub async fn start(tokens: &[(u32, &str)]) -> FakeDbProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let tokens = Arc::new(Mutex::new(
            tokens.iter().map(|(u, t)| (*u, (*t).to_owned())).collect(),
        ));
        let asked = Arc::new(Mutex::new(Vec::new()));
        let shutdown = CancellationToken::new();
        let (t, a) = (tokens.clone(), asked.clone());
        tokio::spawn(serve(
            listener,
            ServeOptions::server("fake_db_proxy"),
            ConnRegistry::new(),
            shutdown.clone(),
            move |_| DbConn {
                tokens: t.clone(),
                asked: a.clone(),
            },
        ));
        FakeDbProxy {
            addr,
            tokens,
            asked,
            shutdown,
        }
    }

    /// The token it holds for `user`.
    pub fn token(&self, user: u32) -> Option<String> {
        self.tokens.lock().unwrap().get(&user).cloned()
    }

    /// Replaces `user`'s token (the user registered a new one).
    pub fn set_token(&self, user: u32, token: &str) {
        self.tokens.lock().unwrap().insert(user, token.to_owned());
    }

    /// Removal requests received.
    pub fn asked(&self) -> Vec<ImAdminRemoveTokenReq> {
        self.asked.lock().unwrap().clone()
    }
}
