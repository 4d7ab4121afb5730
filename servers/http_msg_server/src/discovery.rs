//! `GET /api/discovery`: the list the login answer's `discovery` URL points to (FLOWS.md 21,
//! 22), from db_proxy's IMDiscovery rows.
//!
//! The shape is what the original PHP admin returns: a JSON array of objects with `itemName`,
//! `itemUrl` and `itemPriority`, every value a string. Stock clients fetch it without any
//! token, so this endpoint needs none (it is read-only and public in the original too).
//! Answers are reused for `discovery_cache_secs`, since every client asks when it opens its
//! discovery tab. When db_proxy cannot answer: 503 with an empty array, which a client shows
//! as an empty list.

use std::time::{Duration, Instant};

use bytes::Bytes;
use im_proto::admin::{AdminResult, ImAdminDiscoveryListReq, ImAdminDiscoveryListRsp};
use im_proto::{Pdu, cid};
use serde_json::{Value, json};

use crate::server::Server;
use crate::upstream::Key;

/// The array for db_proxy's items.
pub fn render(rsp: &ImAdminDiscoveryListRsp) -> Bytes {
    let items: Vec<Value> = rsp
        .items
        .iter()
        .map(|d| {
            json!({
                "itemName": d.name.clone().unwrap_or_default(),
                "itemUrl": d.url.clone().unwrap_or_default(),
                "itemPriority": d.priority.unwrap_or(0).to_string(),
            })
        })
        .collect();
    Bytes::from(serde_json::to_string(&items).unwrap_or_else(|_| "[]".to_owned()))
}

/// The list, or `None` when db_proxy cannot give it.
pub async fn list(s: &Server) -> Option<Bytes> {
    let ttl = Duration::from_secs(s.config.discovery_cache_secs);
    if let Ok(cache) = s.discovery.lock()
        && let Some((at, body)) = cache.as_ref()
        && at.elapsed() < ttl
    {
        return Some(body.clone());
    }
    let reply =
        s.db.request(
            Key::User(0),
            Pdu::from_msg(&ImAdminDiscoveryListReq {}, 0),
            cid::CID_ADMIN_DISCOVERY_LIST_RSP,
        )
        .await;
    let rsp = match reply.map(|p| p.decode::<ImAdminDiscoveryListRsp>()) {
        Ok(Ok(rsp)) if rsp.result_code() == AdminResult::AdminOk => rsp,
        Ok(Ok(rsp)) => {
            tracing::warn!(result = ?rsp.result_code(), "db_proxy refused the discovery list");
            return None;
        }
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "the discovery list does not decode");
            return None;
        }
        Err(e) => {
            tracing::warn!(error = %e, "no discovery list from db_proxy");
            return None;
        }
    };
    let body = render(&rsp);
    if let Ok(mut cache) = s.discovery.lock() {
        *cache = Some((Instant::now(), body.clone()));
    }
    Some(body)
}

#[cfg(test)]
mod tests {
    use super::*;
    use im_proto::admin::AdminDiscovery;

    #[test]
    fn values_are_strings_as_php_returns_them() {
        let rsp = ImAdminDiscoveryListRsp {
            result_code: Some(AdminResult::AdminOk as i32),
            items: vec![AdminDiscovery {
                id: Some(4),
                name: Some("内网".into()),
                url: Some("http://intra/".into()),
                priority: Some(3),
            }],
        };
        assert_eq!(
            render(&rsp),
            r#"[{"itemName":"内网","itemPriority":"3","itemUrl":"http://intra/"}]"#
        );
        assert_eq!(render(&ImAdminDiscoveryListRsp::default()), "[]");
    }
}
