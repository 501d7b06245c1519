//! Transaction keys: a response matches a client transaction when the branch of its top Via
//! equals the branch of the request and its CSeq method equals the request's method
//! (RFC 3261 section 17.1.3).

/// A request method as far as transaction matching cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Method {
    Options,
    Invite,
    Ack,
    Cancel,
    Bye,
}

impl Method {
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Options => "OPTIONS",
            Method::Invite => "INVITE",
            Method::Ack => "ACK",
            Method::Cancel => "CANCEL",
            Method::Bye => "BYE",
        }
    }

    pub fn from_bytes(b: &[u8]) -> Option<Method> {
        Some(match b {
            b"OPTIONS" => Method::Options,
            b"INVITE" => Method::Invite,
            b"ACK" => Method::Ack,
            b"CANCEL" => Method::Cancel,
            b"BYE" => Method::Bye,
            _ => return None,
        })
    }
}

/// Key of a client transaction: top Via branch + CSeq method.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Key {
    pub branch: String,
    pub method: Method,
}

impl Key {
    pub fn new(branch: impl Into<String>, method: Method) -> Key {
        Key {
            branch: branch.into(),
            method,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn method_round_trip() {
        for m in [
            Method::Options,
            Method::Invite,
            Method::Ack,
            Method::Cancel,
            Method::Bye,
        ] {
            assert_eq!(Method::from_bytes(m.as_str().as_bytes()), Some(m));
        }
        assert_eq!(Method::from_bytes(b"options"), None);
    }

    #[test]
    fn keys_differ_by_method() {
        assert_ne!(
            Key::new("z9hG4bK1", Method::Invite),
            Key::new("z9hG4bK1", Method::Cancel)
        );
        assert_eq!(
            Key::new("z9hG4bK1", Method::Invite),
            Key::new("z9hG4bK1".to_string(), Method::Invite)
        );
    }
}
