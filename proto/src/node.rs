//! A node as the cluster knows it: where its peers reach it and where clients do.
//! Stored in Raft membership entries (on disk and on the wire), so only ever extended.

use serde::{Deserialize, Serialize};
use std::fmt;

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeAddr {
    /// `host:port` of the peer port (Raft traffic, forwarded requests).
    pub peer: String,
    /// `host:port` clients use (the advertised client address, for `-MOVED`).
    pub client: String,
}

impl fmt::Display for NodeAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "peer={} client={}", self.peer, self.client)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encoding_is_stable() {
        let n = NodeAddr {
            peer: "127.0.0.1:17001".into(),
            client: "127.0.0.1:7001".into(),
        };
        let bytes = bincode::serde::encode_to_vec(&n, bincode::config::standard()).unwrap();
        let mut golden = vec![15u8];
        golden.extend_from_slice(b"127.0.0.1:17001");
        golden.push(14);
        golden.extend_from_slice(b"127.0.0.1:7001");
        assert_eq!(bytes, golden);
    }
}
