//! What the bench reads from the msg_servers' admin ports: memory and client connections
//! (the idle preset's bytes per connection). Optional: without an admin config the bench
//! runs, it just cannot tell memory.

use im_proto::admin::ImAdminStatsReq;

use crate::admin::AdminClient;
use crate::config::Config;
use crate::loadgen::report::ServerSample;

/// One msg_server's memory and connections right now.
#[derive(Debug, Clone, Default)]
pub struct Sample {
    /// Admin address.
    pub addr: String,
    /// Server name.
    pub name: String,
    /// Resident memory, bytes.
    pub rss: u64,
    /// Client connections, every type.
    pub connections: u64,
}

/// Samples every msg_server in the config (empty without token or addresses).
pub async fn sample(config: &Config) -> anyhow::Result<Vec<Sample>> {
    let addrs = config.endpoints("msg_server");
    if addrs.is_empty() || config.token.is_empty() {
        return Ok(Vec::new());
    }
    let mut out = Vec::new();
    for addr in addrs {
        let c = AdminClient::connect(addr, &config.token).await?;
        let rsp = c.call(&ImAdminStatsReq {}).await?;
        c.close();
        let st = rsp.stats.unwrap_or_default();
        out.push(Sample {
            addr: addr.clone(),
            name: st.server_name.clone().unwrap_or_else(|| addr.clone()),
            rss: st.rss_bytes.unwrap_or(0),
            connections: st
                .connections
                .iter()
                .map(|c| u64::from(c.count.unwrap_or(0)))
                .sum(),
        });
    }
    Ok(out)
}

/// Total client connections of a sample.
pub fn total_connections(s: &[Sample]) -> u64 {
    s.iter().map(|x| x.connections).sum()
}

/// Before/after pairs per server, and bytes per added connection over all of them.
pub fn compare(before: &[Sample], after: &[Sample]) -> (Vec<ServerSample>, Option<f64>) {
    let mut rows = Vec::new();
    let (mut rss, mut conns) = (0i64, 0i64);
    for a in after {
        let b = before
            .iter()
            .find(|b| b.addr == a.addr)
            .cloned()
            .unwrap_or_default();
        let added = a.connections.saturating_sub(b.connections);
        rss += a.rss as i64 - b.rss as i64;
        conns += added as i64;
        rows.push(ServerSample {
            addr: a.addr.clone(),
            name: a.name.clone(),
            rss_before: b.rss,
            rss_after: a.rss,
            connections: added,
        });
    }
    let per = (conns > 0).then(|| rss as f64 / conns as f64);
    (rows, per)
}
