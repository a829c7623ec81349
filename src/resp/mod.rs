//! RESP2/RESP3: incremental decoding of client requests (multibulk and inline) and
//! encoding of protocol-agnostic [`Reply`] values for a connection's protocol.
//!
//! An incomplete frame is a normal outcome (`Ok(None)`): the caller reads more bytes
//! and tries again. A protocol error closes that one connection.

mod decode;
mod encode;
mod reply;

pub use decode::{split_args, DecodeLimits, Decoder, ProtocolError};
pub use encode::encode;
pub use reply::Reply;

/// The protocol a connection speaks; `HELLO 3` switches to RESP3.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Protocol {
    #[default]
    Resp2,
    Resp3,
}
