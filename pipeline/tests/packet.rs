//! Every validation rule of a packet (DESIGN.md "The pipeline"), one or more cases each.

use chrono::{DateTime, TimeZone, Utc};
use pipeline::ids::ResourcePart;
use pipeline::packet::{
    is_valid_producer, is_valid_resource_id, FieldError, Packet, ValidationErrors,
};
use serde_json::{json, Value};

fn ok(v: Value) -> Packet {
    Packet::parse(&v).unwrap_or_else(|e| panic!("{v} should be valid: {e}"))
}

/// The names of the failing fields.
fn bad(v: Value) -> Vec<String> {
    match Packet::parse(&v) {
        Ok(p) => panic!("{v} should be rejected, parsed as {p:?}"),
        Err(e) => e.errors.into_iter().map(|e| e.name).collect(),
    }
}

fn base() -> serde_json::Map<String, Value> {
    json!({"number": 7, "sent_at": "2024-05-01T12:00:00.250Z"})
        .as_object()
        .cloned()
        .unwrap()
}

fn with(field: &str, value: Value) -> Value {
    let mut m = base();
    m.insert(field.to_string(), value);
    Value::Object(m)
}

#[test]
fn minimal_packet_gets_defaults() {
    let p = ok(Value::Object(base()));
    assert_eq!(p.number, 7);
    assert_eq!(
        p.sent_at,
        Utc.with_ymd_and_hms(2024, 5, 1, 12, 0, 0).unwrap() + chrono::Duration::milliseconds(250)
    );
    assert_eq!(p.producer, "default");
    assert_eq!(p.text, "");
    assert_eq!(p.part, None);
    assert_eq!(ok(with("producer", json!("p-1"))).doc_id(), "p-1:7");
}

#[test]
fn number_must_be_a_non_negative_integer() {
    assert_eq!(ok(with("number", json!(0))).number, 0);
    assert_eq!(ok(with("number", json!(i64::MAX))).number, i64::MAX as u64);
    for v in [
        json!(-1),
        json!(1.5),
        json!(1.0),
        json!("3"),
        json!(true),
        json!([1]),
        json!(u64::MAX),
    ] {
        assert_eq!(bad(with("number", v.clone())), ["number"], "{v}");
    }
    let mut m = base();
    m.remove("number");
    assert_eq!(bad(Value::Object(m)), ["number"]);
    assert_eq!(bad(with("number", Value::Null)), ["number"]);
}

#[test]
fn sent_at_is_rfc3339_or_epoch_millis() {
    let from_ms = ok(with("sent_at", json!(1_714_564_800_250_i64))).sent_at;
    assert_eq!(
        from_ms,
        DateTime::from_timestamp_millis(1_714_564_800_250).unwrap()
    );
    let offset = ok(with("sent_at", json!("2024-05-01T14:00:00.250+02:00"))).sent_at;
    assert_eq!(offset, from_ms);
    for v in [
        json!("yesterday"),
        json!("2024-05-01"),
        json!("2024-05-01 12:00:00"),
        json!(1.5e12),
        json!(i64::MAX),
        json!({}),
    ] {
        assert_eq!(bad(with("sent_at", v.clone())), ["sent_at"], "{v}");
    }
    let mut m = base();
    m.remove("sent_at");
    assert_eq!(bad(Value::Object(m)), ["sent_at"]);
}

#[test]
fn producer_charset_and_length() {
    assert_eq!(ok(with("producer", json!("A-z_0.9"))).producer, "A-z_0.9");
    assert_eq!(
        ok(with("producer", json!("x".repeat(64)))).producer.len(),
        64
    );
    for v in [
        json!(""),
        json!("x".repeat(65)),
        json!("has space"),
        json!("a:b"),
        json!("a/b"),
        json!("héllo"),
        json!(5),
    ] {
        assert_eq!(bad(with("producer", v.clone())), ["producer"], "{v}");
    }
}

#[test]
fn resource_needs_seq_and_total_in_range() {
    let mut m = base();
    m.insert("resource_id".into(), json!("order:42.a_b-c"));
    m.insert("seq".into(), json!(2));
    m.insert("total".into(), json!(3));
    let p = ok(Value::Object(m.clone()));
    assert_eq!(
        ResourcePart::flat(p.part.as_ref()),
        (Some("order:42.a_b-c"), Some(2), Some(3))
    );

    let case = |rid: Option<Value>, seq: Option<Value>, total: Option<Value>| {
        let mut m = base();
        for (k, v) in [("resource_id", rid), ("seq", seq), ("total", total)] {
            if let Some(v) = v {
                m.insert(k.into(), v);
            }
        }
        Value::Object(m)
    };
    let rid = || Some(json!("r1"));
    assert_eq!(bad(case(rid(), None, None)), ["seq", "total"]);
    assert_eq!(bad(case(rid(), Some(json!(0)), None)), ["total"]);
    assert_eq!(
        bad(case(None, Some(json!(0)), Some(json!(1)))),
        ["seq", "total"]
    );
    assert_eq!(bad(case(rid(), Some(json!(3)), Some(json!(3)))), ["seq"]);
    assert_eq!(bad(case(rid(), Some(json!(0)), Some(json!(0)))), ["total"]);
    assert_eq!(bad(case(rid(), Some(json!(-1)), Some(json!(2)))), ["seq"]);
    assert_eq!(
        bad(case(rid(), Some(json!(0)), Some(json!(10_001)))),
        ["total"]
    );
    assert_eq!(bad(case(rid(), Some(json!(0.5)), Some(json!(2)))), ["seq"]);
    assert!(Packet::parse(&case(rid(), Some(json!(9_999)), Some(json!(10_000)))).is_ok());
    for v in [json!(""), json!("a b"), json!("x".repeat(129)), json!(1)] {
        assert_eq!(
            bad(case(Some(v.clone()), Some(json!(0)), Some(json!(1)))),
            ["resource_id"],
            "{v}"
        );
    }
    assert!(Packet::parse(&case(
        Some(json!("x".repeat(128))),
        Some(json!(0)),
        Some(json!(1))
    ))
    .is_ok());
}

#[test]
fn text_at_most_64_kib() {
    assert_eq!(
        ok(with("text", json!("a".repeat(65_536)))).text.len(),
        65_536
    );
    assert_eq!(bad(with("text", json!("a".repeat(65_537)))), ["text"]);
    // 2-byte characters: 32 768 of them are exactly 64 KiB, one more is over.
    assert!(Packet::parse(&with("text", json!("é".repeat(32_768)))).is_ok());
    assert_eq!(bad(with("text", json!("é".repeat(32_769)))), ["text"]);
    assert_eq!(bad(with("text", json!(["a"]))), ["text"]);
    assert_eq!(ok(with("text", Value::Null)).text, "");
}

#[test]
fn unknown_fields_are_rejected() {
    assert_eq!(bad(with("colour", json!("red"))), ["colour"]);
}

#[test]
fn every_error_is_collected_and_body_must_be_an_object() {
    let errs = Packet::parse(&json!({"number": -1, "producer": "", "extra": 1})).unwrap_err();
    let mut names: Vec<_> = errs.errors.iter().map(|e| e.name.as_str()).collect();
    names.sort();
    assert_eq!(names, ["extra", "number", "producer", "sent_at"]);
    assert!(errs.errors.iter().all(|e| !e.message.is_empty()));
    for v in [json!([]), json!("x"), json!(1), Value::Null] {
        assert_eq!(bad(v), ["$"]);
    }
}

#[test]
fn from_bytes_and_prefixed_names() {
    let p = Packet::from_json_bytes(br#"{"number":1,"sent_at":0,"text":"a b"}"#).unwrap();
    assert_eq!(p.sent_at, DateTime::UNIX_EPOCH);
    let malformed = Packet::from_json_bytes(b"{\"number\":").unwrap_err();
    assert_eq!(malformed.errors[0].name, "$");
    let errs = Packet::parse(&json!({"sent_at": 0})).unwrap_err();
    assert_eq!(
        errs.prefixed("[3]"),
        vec![FieldError::new("[3].number", "is required")]
    );
    let whole = ValidationErrors::single("$", "must be a JSON object").prefixed("[0]");
    assert_eq!(whole[0].name, "[0]");
}

#[test]
fn name_checks_match_the_field_rules() {
    assert!(is_valid_producer("a.B_9-z"));
    assert!(!is_valid_producer("a:b"));
    assert!(!is_valid_producer(&"x".repeat(65)));
    assert!(is_valid_resource_id("order:1"));
    assert!(!is_valid_resource_id("order 1"));
    assert!(!is_valid_resource_id(""));
}
