//! The domain's names, parsed once at the edge: a [`ProducerName`], a [`ResourceId`] and the
//! [`ResourcePart`] a packet may carry. A value of these types is valid by construction, so code
//! past the edge (queue partitioning, Redis keys, Elasticsearch `_id`s, file names) never
//! re-checks a charset. On the wire they stay plain strings and numbers.

use std::fmt;
use std::ops::Deref;

use serde::{Deserialize, Serialize, Serializer};

/// Largest accepted `total` of a resource.
pub const MAX_TOTAL: u32 = 10_000;

/// 1..=max ASCII characters from `A-Z a-z 0-9 _ . -` (and `:` when `colon`).
fn is_name(s: &str, max: usize, colon: bool) -> bool {
    let allowed = |c: u8| {
        c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-') || (colon && c == b':')
    };
    !s.is_empty() && s.len() <= max && s.bytes().all(allowed)
}

/// Defines a string newtype checked by `is_name(_, $max, $colon)`: serialized as the plain
/// string, deserialized only when valid.
macro_rules! name_type {
    ($(#[$doc:meta])* $name:ident, $max:expr, $colon:expr, $rule:expr) => {
        $(#[$doc])*
        #[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize)]
        #[serde(try_from = "String")]
        pub struct $name(String);

        impl $name {
            /// Longest valid value, in bytes.
            pub const MAX_LEN: usize = $max;
            /// The rule, as a 422 answer states it.
            pub const RULE: &'static str = $rule;

            /// Whether `s` is a valid value.
            pub fn is_valid(s: &str) -> bool {
                is_name(s, $max, $colon)
            }

            /// `s` as a value, or `None` when it breaks the rule.
            pub fn parse(s: &str) -> Option<Self> {
                Self::is_valid(s).then(|| $name(s.to_string()))
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }

            pub fn into_string(self) -> String {
                self.0
            }
        }

        impl TryFrom<String> for $name {
            type Error = String;
            fn try_from(s: String) -> Result<Self, String> {
                if Self::is_valid(&s) {
                    Ok($name(s))
                } else {
                    Err(format!("{} {s:?} {}", stringify!($name), $rule))
                }
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(&self.0)
            }
        }

        impl Deref for $name {
            type Target = str;
            fn deref(&self) -> &str {
                &self.0
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl PartialEq<str> for $name {
            fn eq(&self, other: &str) -> bool {
                self.0 == other
            }
        }

        impl PartialEq<&str> for $name {
            fn eq(&self, other: &&str) -> bool {
                self.0 == *other
            }
        }
    };
}

name_type!(
    /// A producer's name, `[A-Za-z0-9_.-]{1,64}`; part of every message's `_id`.
    ProducerName,
    64,
    false,
    "must be a string of 1 to 64 characters from A-Z a-z 0-9 _ . -"
);

name_type!(
    /// A resource's id, `[A-Za-z0-9_.:-]{1,128}`: safe in Redis keys and as a file name.
    ResourceId,
    128,
    true,
    "must be a string of 1 to 128 characters from A-Z a-z 0-9 _ . : -"
);

impl ProducerName {
    /// The producer used when a packet names none.
    pub fn default_producer() -> Self {
        ProducerName(crate::packet::DEFAULT_PRODUCER.to_string())
    }

    /// Whether this is the producer a packet without `producer` gets.
    pub fn is_default(&self) -> bool {
        self.0 == crate::packet::DEFAULT_PRODUCER
    }
}

/// A resource's identity: the producer that sends its packets and its resource id, so no
/// producer can add a part to (or complete, or pre-empt) another producer's resource. Spelled
/// `<resource_id>` for the default producer (the form before producers had keys, so existing
/// deliveries, documents and files keep their names) and `<producer>@<resource_id>` otherwise;
/// `@` is in neither rule, so the spelling is unambiguous. It is the webhook's `Idempotency-Key`
/// and `webhook-id`, the `_id` in `resources`, the output file's stem and the collation key.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ResourceKey {
    producer: ProducerName,
    id: ResourceId,
}

impl ResourceKey {
    /// Longest spelling: a producer, `@`, a resource id.
    pub const MAX_LEN: usize = ProducerName::MAX_LEN + 1 + ResourceId::MAX_LEN;

    pub fn new(producer: ProducerName, id: ResourceId) -> Self {
        ResourceKey { producer, id }
    }

    /// Parses either spelling (`default@<id>` is the same key as `<id>`).
    pub fn parse(s: &str) -> Option<Self> {
        match s.split_once('@') {
            Some((producer, id)) => Some(ResourceKey {
                producer: ProducerName::parse(producer)?,
                id: ResourceId::parse(id)?,
            }),
            None => Some(ResourceKey {
                producer: ProducerName::default_producer(),
                id: ResourceId::parse(s)?,
            }),
        }
    }

    pub fn producer(&self) -> &ProducerName {
        &self.producer
    }

    pub fn id(&self) -> &ResourceId {
        &self.id
    }
}

impl fmt::Display for ResourceKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.producer.is_default() {
            f.write_str(&self.id)
        } else {
            write!(f, "{}@{}", self.producer, self.id)
        }
    }
}

impl Serialize for ResourceKey {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for ResourceKey {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        ResourceKey::parse(&s).ok_or_else(|| {
            serde::de::Error::custom(format!(
                "resource key {s:?} must be <resource_id> or <producer>@<resource_id>"
            ))
        })
    }
}

/// Which part of which resource a packet is: `0 ≤ seq < total ≤ MAX_TOTAL`. A packet has all
/// three or none, so this is one optional value rather than three.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ResourcePart {
    id: ResourceId,
    seq: u32,
    total: u32,
}

/// Why three fields do not make a [`ResourcePart`], named by the field to blame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PartError {
    /// `total` is 0 or above [`MAX_TOTAL`].
    Total,
    /// `seq ≥ total`.
    Seq,
}

impl ResourcePart {
    pub fn new(id: ResourceId, seq: u32, total: u32) -> Result<Self, PartError> {
        if total == 0 || total > MAX_TOTAL {
            Err(PartError::Total)
        } else if seq >= total {
            Err(PartError::Seq)
        } else {
            Ok(ResourcePart { id, seq, total })
        }
    }

    pub fn id(&self) -> &ResourceId {
        &self.id
    }

    pub fn seq(&self) -> u32 {
        self.seq
    }

    pub fn total(&self) -> u32 {
        self.total
    }

    /// The flat wire form `(resource_id, seq, total)`, all `None` without a part.
    pub fn flat(part: Option<&ResourcePart>) -> (Option<&str>, Option<u32>, Option<u32>) {
        match part {
            Some(p) => (Some(p.id.as_str()), Some(p.seq), Some(p.total)),
            None => (None, None, None),
        }
    }

    /// The inverse of [`ResourcePart::flat`] for data this system wrote: all three or none,
    /// and consistent.
    pub fn from_flat(
        id: Option<ResourceId>,
        seq: Option<u32>,
        total: Option<u32>,
    ) -> Result<Option<Self>, String> {
        match (id, seq, total) {
            (None, None, None) => Ok(None),
            (Some(id), Some(seq), Some(total)) => {
                ResourcePart::new(id, seq, total).map(Some).map_err(|e| {
                    format!("inconsistent resource part ({e:?}): seq {seq}, total {total}")
                })
            }
            _ => Err("resource_id, seq and total come together or not at all".to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resource_keys_spell_the_producer_unless_it_is_the_default() {
        let key = |p: &str, id: &str| {
            ResourceKey::new(
                ProducerName::parse(p).unwrap(),
                ResourceId::parse(id).unwrap(),
            )
        };
        assert_eq!(key("default", "r:1").to_string(), "r:1");
        assert_eq!(key("a.b", "c:1").to_string(), "a.b@c:1");
        assert_ne!(key("a", "b.c").to_string(), key("a.b", "c").to_string());
        for k in [
            key("default", "r:1"),
            key("a.b", "c:1"),
            key("p", &"x".repeat(128)),
        ] {
            assert_eq!(ResourceKey::parse(&k.to_string()), Some(k.clone()));
            let json = serde_json::to_string(&k).unwrap();
            assert_eq!(serde_json::from_str::<ResourceKey>(&json).unwrap(), k);
        }
        assert_eq!(ResourceKey::parse("default@r"), Some(key("default", "r")));
        for bad in ["", "@r", "p@", "p@q@r", "p:q@r", "a/b", "p@r/1"] {
            assert_eq!(ResourceKey::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn names_follow_their_rules() {
        assert!(ProducerName::is_valid("a.B_9-z"));
        assert!(!ProducerName::is_valid("a:b"));
        assert!(!ProducerName::is_valid(&"x".repeat(65)));
        assert!(ProducerName::is_valid(&"x".repeat(64)));
        assert!(ResourceId::is_valid("order:1"));
        assert!(!ResourceId::is_valid("order 1"));
        assert!(!ResourceId::is_valid(""));
        assert!(!ResourceId::is_valid("../x"));
        assert!(!ResourceId::is_valid("é"));
    }

    #[test]
    fn names_serialize_as_plain_strings_and_deserialize_only_when_valid() {
        let p = ProducerName::parse("p-1").unwrap();
        assert_eq!(serde_json::to_string(&p).unwrap(), "\"p-1\"");
        assert_eq!(serde_json::from_str::<ProducerName>("\"p-1\"").unwrap(), p);
        let err = serde_json::from_str::<ProducerName>("\"p 1\"").unwrap_err();
        assert!(err.to_string().contains("ProducerName"), "{err}");
        assert!(serde_json::from_str::<ResourceId>("\"a/b\"").is_err());
    }

    #[test]
    fn a_part_holds_seq_below_total_within_bounds() {
        let id = || ResourceId::parse("r").unwrap();
        assert!(ResourcePart::new(id(), 0, 1).is_ok());
        assert!(ResourcePart::new(id(), 9_999, MAX_TOTAL).is_ok());
        assert_eq!(ResourcePart::new(id(), 0, 0), Err(PartError::Total));
        assert_eq!(
            ResourcePart::new(id(), 0, MAX_TOTAL + 1),
            Err(PartError::Total)
        );
        assert_eq!(ResourcePart::new(id(), 3, 3), Err(PartError::Seq));
    }

    #[test]
    fn the_flat_form_round_trips_and_refuses_a_partial_triple() {
        let part = ResourcePart::new(ResourceId::parse("r").unwrap(), 2, 5).unwrap();
        let (id, seq, total) = ResourcePart::flat(Some(&part));
        let back = ResourcePart::from_flat(id.and_then(ResourceId::parse), seq, total).unwrap();
        assert_eq!(back, Some(part));
        assert_eq!(ResourcePart::from_flat(None, None, None), Ok(None));
        assert!(ResourcePart::from_flat(None, Some(1), None).is_err());
        assert!(ResourcePart::from_flat(ResourceId::parse("r"), Some(5), Some(5)).is_err());
    }
}
