//! Command errors. The Redis error text, with its prefix, is produced here and
//! nowhere else.

use crate::resp::Reply;
use std::borrow::Cow;

#[derive(Debug, Clone, PartialEq)]
pub enum CmdError {
    WrongType,
    NotInteger,
    NotFloat,
    Syntax,
    NoSuchKey,
    Overflow,
    IndexOutOfRange,
    /// `ERR invalid expire time in '<cmd>' command`
    InvalidExpire(String),
    /// `ERR wrong number of arguments for '<cmd>' command`
    WrongArity(String),
    /// `ERR value is out of range, must be positive`
    NotPositive,
    /// `ERR min or max is not a float`
    MinMaxNotFloat,
    /// `ERR min or max not valid string range item`
    MinMaxNotStringRange,
    /// `ERR increment would produce NaN or Infinity`
    NanOrInfinity,
    /// `ERR string exceeds maximum allowed size (proto-max-bulk-len)`
    StringTooLong,
    /// `ERR This instance has cluster support disabled` (CLUSTER, ASKING, READONLY
    /// on a node that is not in a cluster)
    ClusterDisabled,
    /// `ERR Invalid slot` (CLUSTER COUNTKEYSINSLOT)
    InvalidSlot,
    /// `ERR Invalid slot or number of keys` (CLUSTER GETKEYSINSLOT)
    InvalidSlotOrCount,
    /// `ERR timeout is not a float or out of range` etc.: any other text, with prefix.
    Other(Cow<'static, str>),
}

impl CmdError {
    pub fn other(text: impl Into<Cow<'static, str>>) -> CmdError {
        CmdError::Other(text.into())
    }

    pub fn text(&self) -> Cow<'static, str> {
        match self {
            CmdError::WrongType => {
                "WRONGTYPE Operation against a key holding the wrong kind of value".into()
            }
            CmdError::NotInteger => "ERR value is not an integer or out of range".into(),
            CmdError::NotFloat => "ERR value is not a valid float".into(),
            CmdError::Syntax => "ERR syntax error".into(),
            CmdError::NoSuchKey => "ERR no such key".into(),
            CmdError::Overflow => "ERR increment or decrement would overflow".into(),
            CmdError::IndexOutOfRange => "ERR index out of range".into(),
            CmdError::InvalidExpire(cmd) => {
                format!("ERR invalid expire time in '{cmd}' command").into()
            }
            CmdError::WrongArity(cmd) => {
                format!("ERR wrong number of arguments for '{cmd}' command").into()
            }
            CmdError::NotPositive => "ERR value is out of range, must be positive".into(),
            CmdError::MinMaxNotFloat => "ERR min or max is not a float".into(),
            CmdError::MinMaxNotStringRange => "ERR min or max not valid string range item".into(),
            CmdError::NanOrInfinity => "ERR increment would produce NaN or Infinity".into(),
            CmdError::StringTooLong => {
                "ERR string exceeds maximum allowed size (proto-max-bulk-len)".into()
            }
            CmdError::ClusterDisabled => "ERR This instance has cluster support disabled".into(),
            CmdError::InvalidSlot => "ERR Invalid slot".into(),
            CmdError::InvalidSlotOrCount => "ERR Invalid slot or number of keys".into(),
            CmdError::Other(t) => t.clone(),
        }
    }

    pub fn reply(&self) -> Reply {
        Reply::Error(self.text())
    }
}

impl From<CmdError> for Reply {
    fn from(e: CmdError) -> Reply {
        e.reply()
    }
}

/// An argument as Redis prints it into an error text with `%s`: a C string, so it
/// ends at the first NUL byte.
pub fn arg_text(a: &[u8]) -> String {
    let end = a.iter().position(|&b| b == 0).unwrap_or(a.len());
    String::from_utf8_lossy(&a[..end]).into_owned()
}

/// The reply for an unknown command, as Redis words it (args quoted, up to 128 bytes each).
pub fn unknown_command(args: &[bytes::Bytes]) -> Reply {
    // Redis: each argument printed with "'%.*s' " where the precision is what is left
    // of 128 bytes for all of them together.
    let mut list = String::new();
    for a in &args[1..] {
        if list.len() >= 128 {
            break;
        }
        let room = 128 - list.len();
        let text = arg_text(a);
        let cut: String = text
            .char_indices()
            .take_while(|(i, c)| i + c.len_utf8() <= room)
            .map(|(_, c)| c)
            .collect();
        list.push_str(&format!("'{cut}' "));
    }
    Reply::Error(
        format!(
            "ERR unknown command '{}', with args beginning with: {list}",
            truncate(&arg_text(&args[0]))
        )
        .into(),
    )
}

/// The reply for an unknown subcommand: `ERR unknown subcommand 'x'. Try CONFIG HELP.`
pub fn unknown_subcommand(cmd: &str, sub: &[u8]) -> Reply {
    Reply::Error(
        format!(
            "ERR unknown subcommand '{}'. Try {} HELP.",
            truncate(&arg_text(sub)),
            cmd.to_ascii_uppercase()
        )
        .into(),
    )
}

/// A known subcommand with a wrong number or shape of arguments:
/// `ERR unknown subcommand or wrong number of arguments for 'CHANNELS'. Try PUBSUB HELP.`
pub fn subcommand_syntax(cmd: &str, sub: &[u8]) -> Reply {
    Reply::Error(
        format!(
            "ERR unknown subcommand or wrong number of arguments for '{}'. Try {} HELP.",
            truncate(&arg_text(sub)),
            cmd.to_ascii_uppercase()
        )
        .into(),
    )
}

/// The reply of a HELP subcommand: a title line, the given lines, and the HELP entry
/// every container ends with, as status replies.
pub fn help(cmd: &str, lines: &[&str]) -> Reply {
    let mut out = vec![Reply::Simple(
        format!(
            "{} <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
            cmd.to_ascii_uppercase()
        )
        .into(),
    )];
    out.extend(lines.iter().map(|l| Reply::Simple(l.to_string().into())));
    out.push(Reply::simple("HELP"));
    out.push(Reply::simple("    Prints this help."));
    Reply::Array(out)
}

fn truncate(s: &str) -> String {
    // Redis: "%.128s"
    s.chars().take(128).collect()
}
