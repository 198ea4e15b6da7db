//! The JSON side of the edge parser: serde visitors that read a packet (or a batch) from the
//! bytes without building a value tree. A field's value is read as a [`Scalar`] (containers are
//! skipped, not kept) and handed to [`super::fields`] for its rule.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};

use super::fields::{Field, Read};
use super::{EdgeRules, Sink};
use crate::packet::Packet;

/// Longest field name echoed back in an error, in bytes.
const MAX_NAME_ECHO: usize = 64;

/// One JSON value of a field, as far as the rules need it: containers are skipped, not kept.
pub(super) enum Scalar<'de> {
    Null,
    Bool,
    Unsigned(u64),
    Negative,
    Float,
    Str(Cow<'de, str>),
    Container,
}

struct ScalarVisitor;

impl<'de> Visitor<'de> for ScalarVisitor {
    type Value = Scalar<'de>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_bool<E>(self, _: bool) -> Result<Scalar<'de>, E> {
        Ok(Scalar::Bool)
    }
    fn visit_u64<E>(self, n: u64) -> Result<Scalar<'de>, E> {
        Ok(Scalar::Unsigned(n))
    }
    fn visit_i64<E>(self, n: i64) -> Result<Scalar<'de>, E> {
        Ok(u64::try_from(n).map_or(Scalar::Negative, Scalar::Unsigned))
    }
    fn visit_f64<E>(self, f: f64) -> Result<Scalar<'de>, E> {
        // A number with a zero fraction is an integer, as JSON Schema (and so the OpenAPI
        // document) counts: `415.0` is `415`, within the range where every integer is exact.
        // serde_json's `float_roundtrip` (workspace Cargo.toml) reads it exactly: its default
        // parse may miss by the last bit, and 1860952009404725.0 came back with a fraction.
        const EXACT: f64 = 9_007_199_254_740_991.0;
        Ok(match f {
            f if f.fract() != 0.0 || f.abs() > EXACT => Scalar::Float,
            f if f < 0.0 => Scalar::Negative,
            f => Scalar::Unsigned(f as u64),
        })
    }
    fn visit_borrowed_str<E>(self, s: &'de str) -> Result<Scalar<'de>, E> {
        Ok(Scalar::Str(Cow::Borrowed(s)))
    }
    fn visit_str<E>(self, s: &str) -> Result<Scalar<'de>, E> {
        Ok(Scalar::Str(Cow::Owned(s.to_string())))
    }
    fn visit_string<E>(self, s: String) -> Result<Scalar<'de>, E> {
        Ok(Scalar::Str(Cow::Owned(s)))
    }
    fn visit_unit<E>(self) -> Result<Scalar<'de>, E> {
        Ok(Scalar::Null)
    }
    fn visit_none<E>(self) -> Result<Scalar<'de>, E> {
        Ok(Scalar::Null)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Scalar<'de>, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Scalar::Container)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Scalar<'de>, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(Scalar::Container)
    }
}

impl<'de> de::Deserialize<'de> for Scalar<'de> {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(ScalarVisitor)
    }
}

pub(super) struct PacketSeed<'a> {
    pub(super) rules: &'a EdgeRules,
    pub(super) sink: &'a mut Sink,
}

impl<'de> DeserializeSeed<'de> for PacketSeed<'_> {
    type Value = Option<Packet>;
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Option<Packet>, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for PacketSeed<'_> {
    type Value = Option<Packet>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a packet object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Option<Packet>, A::Error> {
        let mut read = Read::default();
        while let Some(key) = map.next_key::<Scalar<'de>>()? {
            // serde_json map keys are always strings.
            let Scalar::Str(key) = key else {
                return Err(de::Error::custom("a key that is not a string"));
            };
            let Some(field) = Field::of(&key) else {
                self.sink.push(&echo(&key), "unknown field");
                map.next_value::<IgnoredAny>()?;
                continue;
            };
            if !read.first_time(field) {
                return Err(de::Error::custom(format_args!("key {key:?} given twice")));
            }
            let value: Scalar<'de> = map.next_value()?;
            if matches!(value, Scalar::Null) {
                continue; // null is absent
            }
            read.take(field, value, self.rules, self.sink);
        }
        Ok(read.finish(self.sink))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Option<Packet>, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        self.sink.push("$", "must be a JSON object");
        Ok(None)
    }

    fn visit_bool<E>(self, _: bool) -> Result<Option<Packet>, E> {
        self.not_an_object()
    }
    fn visit_i64<E>(self, _: i64) -> Result<Option<Packet>, E> {
        self.not_an_object()
    }
    fn visit_u64<E>(self, _: u64) -> Result<Option<Packet>, E> {
        self.not_an_object()
    }
    fn visit_f64<E>(self, _: f64) -> Result<Option<Packet>, E> {
        self.not_an_object()
    }
    fn visit_str<E>(self, _: &str) -> Result<Option<Packet>, E> {
        self.not_an_object()
    }
    fn visit_unit<E>(self) -> Result<Option<Packet>, E> {
        self.not_an_object()
    }
}

impl PacketSeed<'_> {
    fn not_an_object<E>(self) -> Result<Option<Packet>, E> {
        self.sink.push("$", "must be a JSON object");
        Ok(None)
    }
}

/// A field name as it may be echoed: at most [`MAX_NAME_ECHO`] bytes.
fn echo(name: &str) -> String {
    if name.len() <= MAX_NAME_ECHO {
        return name.to_string();
    }
    let mut end = MAX_NAME_ECHO;
    while !name.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &name[..end])
}

pub(super) struct BatchSeed<'a> {
    pub(super) rules: &'a EdgeRules,
    pub(super) sink: &'a mut Sink,
    pub(super) max: usize,
    pub(super) too_long: &'a mut bool,
}

impl<'de> DeserializeSeed<'de> for BatchSeed<'_> {
    type Value = Option<Vec<Packet>>;
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for BatchSeed<'_> {
    type Value = Option<Vec<Packet>>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an array of packets")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut packets = Vec::new();
        let mut i = 0;
        loop {
            if i == self.max {
                // One more item is one too many: stop reading here.
                if seq.next_element::<IgnoredAny>()?.is_some() {
                    *self.too_long = true;
                    return Err(de::Error::custom("too many packets"));
                }
                break;
            }
            self.sink.item = Some(i);
            let item = PacketSeed {
                rules: self.rules,
                sink: self.sink,
            };
            match seq.next_element_seed(item)? {
                None => break,
                Some(Some(packet)) => packets.push(packet),
                Some(None) => {}
            }
            i += 1;
        }
        self.sink.item = None;
        Ok(Some(packets))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        self.not_an_array()
    }
    fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
        self.not_an_array()
    }
    fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
        self.not_an_array()
    }
    fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
        self.not_an_array()
    }
    fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
        self.not_an_array()
    }
    fn visit_str<E>(self, _: &str) -> Result<Self::Value, E> {
        self.not_an_array()
    }
    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        self.not_an_array()
    }
}

impl BatchSeed<'_> {
    fn not_an_array<E>(self) -> Result<Option<Vec<Packet>>, E> {
        self.sink.push("$", "must be a JSON array of packets");
        Ok(None)
    }
}
