//! Every rule of the edge contract for a packet, one or more cases each, through the parser the
//! API uses (`Packet::from_slice` / `Packet::batch_from_slice`, straight from bytes).

use chrono::{DateTime, TimeDelta, TimeZone, Utc};
use pipeline::ids::ResourcePart;
use pipeline::packet::{
    is_valid_producer, is_valid_resource_id, EdgeError, EdgeRules, FieldError, Packet, MAX_ERRORS,
    MAX_NUMBER,
};
use serde_json::{json, Value};

/// The API "received" every packet of these tests at 2024-05-01T12:00:01Z.
fn received() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2024, 5, 1, 12, 0, 1).unwrap()
}

fn rules() -> EdgeRules {
    EdgeRules::at(received())
}

fn parse(v: &Value) -> Result<Packet, EdgeError> {
    Packet::from_slice(&serde_json::to_vec(v).unwrap(), &rules())
}

fn ok(v: Value) -> Packet {
    parse(&v).unwrap_or_else(|e| panic!("{v} should be valid: {e:?}"))
}

/// The failing field errors.
fn errors(v: Value) -> Vec<FieldError> {
    match parse(&v) {
        Ok(p) => panic!("{v} should be rejected, parsed as {p:?}"),
        Err(EdgeError::Invalid { errors, total }) => {
            assert_eq!(errors.len(), total, "{v}: every error listed");
            errors
        }
        Err(e) => panic!("{v} should be invalid (422), got {e:?}"),
    }
}

/// The names of the failing fields.
fn bad(v: Value) -> Vec<String> {
    errors(v).into_iter().map(|e| e.name).collect()
}

fn malformed(bytes: &[u8]) -> String {
    match Packet::from_slice(bytes, &rules()) {
        Err(EdgeError::Malformed(why)) => why,
        other => panic!(
            "{:?} should be malformed (400), got {other:?}",
            String::from_utf8_lossy(bytes)
        ),
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
        Utc.with_ymd_and_hms(2024, 5, 1, 12, 0, 0).unwrap() + TimeDelta::milliseconds(250)
    );
    assert_eq!(p.producer, "default");
    assert_eq!(p.text, "");
    assert_eq!(p.part, None);
    assert_eq!(ok(with("producer", json!("p-1"))).doc_id(), "p-1:7");
}

#[test]
fn number_is_an_integer_a_browser_represents_exactly() {
    assert_eq!(ok(with("number", json!(0))).number, 0);
    assert_eq!(ok(with("number", json!(MAX_NUMBER))).number, (1 << 53) - 1);
    for v in [
        json!(MAX_NUMBER + 1),
        json!(i64::MAX),
        json!(u64::MAX),
        json!(-1),
        json!(1.5),
        json!("3"),
        json!(true),
        json!([1]),
        json!({"n": 1}),
    ] {
        assert_eq!(bad(with("number", v.clone())), ["number"], "{v}");
    }
    let message = &errors(with("number", json!(i64::MAX)))[0].message;
    assert!(message.contains("9007199254740991"), "{message}");
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
        json!(-1),
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
fn sent_at_within_the_clock_skew_and_the_message_age() {
    let at = |t: DateTime<Utc>| with("sent_at", json!(t.to_rfc3339()));
    // Up to MAX_CLOCK_SKEW (5 s) after the arrival, up to MAX_MESSAGE_AGE (7 days) before it.
    ok(at(received() + TimeDelta::seconds(5)));
    ok(at(received() - TimeDelta::days(7)));
    let ahead = errors(at(received() + TimeDelta::milliseconds(5_001)));
    assert_eq!(ahead[0].name, "sent_at");
    assert!(
        ahead[0].message.contains("MAX_CLOCK_SKEW") && ahead[0].message.contains("5001 ms"),
        "{}",
        ahead[0].message
    );
    let old = errors(at(received()
        - TimeDelta::days(7)
        - TimeDelta::milliseconds(1)));
    assert!(
        old[0].message.contains("MAX_MESSAGE_AGE"),
        "{}",
        old[0].message
    );
    // The cases that broke the dashboard's figures, or that Elasticsearch refused.
    for v in [
        "9999-01-01T00:00:00Z",
        "0001-01-01T00:00:00Z",
        "1970-01-01T00:00:00Z",
    ] {
        assert_eq!(bad(with("sent_at", json!(v))), ["sent_at"], "{v}");
    }
    // Both bounds are the caller's.
    let wide = EdgeRules {
        received_at: received(),
        max_clock_skew: TimeDelta::days(1),
        max_age: TimeDelta::days(365 * 60),
    };
    let bytes = br#"{"number":1,"sent_at":0,"text":"a b"}"#;
    assert_eq!(
        Packet::from_slice(bytes, &wide).unwrap().sent_at,
        DateTime::UNIX_EPOCH
    );
}

#[test]
fn a_leap_second_is_refused_with_a_reason() {
    for v in [
        "2024-05-01T11:59:60Z",
        "2024-05-01T12:00:60.5Z",
        "2024-04-30T23:59:60Z",
    ] {
        let errs = errors(with("sent_at", json!(v)));
        assert_eq!(errs[0].name, "sent_at", "{v}");
        assert!(
            errs[0].message.contains("leap second"),
            "{v}: {}",
            errs[0].message
        );
    }
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
    assert!(parse(&case(rid(), Some(json!(9_999)), Some(json!(10_000)))).is_ok());
    for v in [json!(""), json!("a b"), json!("x".repeat(129)), json!(1)] {
        assert_eq!(
            bad(case(Some(v.clone()), Some(json!(0)), Some(json!(1)))),
            ["resource_id"],
            "{v}"
        );
    }
    assert!(parse(&case(
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
    assert!(parse(&with("text", json!("é".repeat(32_768)))).is_ok());
    assert_eq!(bad(with("text", json!("é".repeat(32_769)))), ["text"]);
    assert_eq!(bad(with("text", json!(["a"]))), ["text"]);
    assert_eq!(ok(with("text", Value::Null)).text, "");
    // Escapes count as the characters they stand for.
    let escaped = br#"{"number":1,"sent_at":"2024-05-01T12:00:00Z","text":"a\u00e9\n\"b\""}"#;
    assert_eq!(
        Packet::from_slice(escaped, &rules()).unwrap().text,
        "aé\n\"b\""
    );
}

#[test]
fn unknown_fields_are_rejected() {
    assert_eq!(bad(with("colour", json!("red"))), ["colour"]);
    // A long unknown name is echoed shortened.
    let long = "k".repeat(10_000);
    let errs = errors(with(&long, json!(1)));
    assert!(errs[0].name.len() < 100, "{}", errs[0].name.len());
    // Whatever an unknown field holds is skipped, not kept.
    assert_eq!(
        bad(with("nested", json!({"a": [1, {"b": [2, 3]}]}))),
        ["nested"]
    );
}

#[test]
fn every_error_is_collected_and_body_must_be_an_object() {
    let errs = errors(json!({"number": -1, "producer": "", "extra": 1}));
    let mut names: Vec<_> = errs.iter().map(|e| e.name.as_str()).collect();
    names.sort();
    assert_eq!(names, ["extra", "number", "producer", "sent_at"]);
    assert!(errs.iter().all(|e| !e.message.is_empty()));
    for v in [json!([]), json!([1, 2]), json!("x"), json!(1), Value::Null] {
        assert_eq!(bad(v), ["$"]);
    }
}

#[test]
fn the_error_list_is_capped_and_says_how_many_there_were() {
    let mut m = serde_json::Map::new();
    for i in 0..600 {
        m.insert(format!("k{i}"), json!(i));
    }
    let bytes = serde_json::to_vec(&Value::Object(m)).unwrap();
    match Packet::from_slice(&bytes, &rules()) {
        Err(EdgeError::Invalid { errors, total }) => {
            assert_eq!(errors.len(), MAX_ERRORS);
            assert_eq!(
                total, 602,
                "600 unknown fields + number and sent_at missing"
            );
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn duplicate_keys_and_broken_json_are_malformed() {
    let why = malformed(br#"{"number":1,"number":2,"sent_at":"2024-05-01T12:00:00Z"}"#);
    assert!(why.contains("\"number\" given twice"), "{why}");
    malformed(br#"{"number":1,"sent_at":"2024-05-01T12:00:00Z","text":"a","text":"b"}"#);
    malformed(b"{\"number\":");
    malformed(b"");
    malformed(b"{} {}");
    malformed(b"{\"number\":1,}");
    malformed(b"\xff\xfe");
    malformed(br#"{"text":"\ud800"}"#);
}

#[test]
fn deep_nesting_is_skipped_without_recursion() {
    // 100,000 levels inside a field are skipped (serde_json ignores them iteratively): no stack
    // overflow, and the answer names the field.
    let nest = |field: &str| {
        format!(
            "{{\"number\":1,\"sent_at\":\"2024-05-01T12:00:00Z\",\"{field}\":{}{}}}",
            "[".repeat(100_000),
            "]".repeat(100_000)
        )
    };
    for field in ["x", "text", "number"] {
        match Packet::from_slice(nest(field).as_bytes(), &rules()) {
            Err(EdgeError::Invalid { errors, .. }) => assert_eq!(errors[0].name, field),
            Err(EdgeError::Malformed(why)) => assert!(field == "number", "{field}: {why}"),
            Ok(p) => panic!("{field}: {p:?}"),
        }
    }
}

#[test]
fn integers_written_with_a_zero_fraction_are_integers() {
    // JSON Schema counts 415.0 as an integer; so does the edge (within 2^53 - 1).
    let body = json!({"number": 7.0, "sent_at": "2024-05-01T12:00:00Z",
                      "resource_id": "r", "seq": 2.0, "total": 3.0});
    let p = Packet::from_slice(&serde_json::to_vec(&body).unwrap(), &rules()).unwrap();
    assert_eq!(p.number, 7);
    let part = p.part.as_ref().unwrap();
    assert_eq!((part.seq(), part.total()), (2, 3));
    // Large ones too, read exactly: the OpenAPI fuzzer sent 1860952009404725.0, which a parse
    // correct only to the last bit of the mantissa read as 1860952009404725.25 (refused, 422).
    for text in [
        "1860952009404725.0",
        "9007199254740991.0",
        "4503599627370497.0",
    ] {
        let body = format!(r#"{{"number": {text}, "sent_at": "2024-05-01T12:00:00Z"}}"#);
        let p = Packet::from_slice(body.as_bytes(), &rules()).unwrap();
        assert_eq!(p.number.to_string() + ".0", text);
    }
    for number in [json!(7.5), json!(-1.0), json!(1e300)] {
        let body = json!({"number": number, "sent_at": "2024-05-01T12:00:00Z"});
        match Packet::from_slice(&serde_json::to_vec(&body).unwrap(), &rules()) {
            Err(EdgeError::Invalid { errors, .. }) => assert_eq!(errors[0].name, "number"),
            other => panic!("{number}: {other:?}"),
        }
    }
}

#[test]
fn a_batch_is_all_valid_or_every_error_named_by_item() {
    let good = |n: u64| json!({"number": n, "sent_at": "2024-05-01T12:00:00Z"});
    let batch = |v: Value| Packet::batch_from_slice(&serde_json::to_vec(&v).unwrap(), &rules(), 3);
    assert_eq!(batch(json!([good(1), good(2), good(3)])).unwrap().len(), 3);
    match batch(json!([good(1), {"sent_at": 0}, "x"])) {
        Err(EdgeError::Invalid { errors, .. }) => {
            let mut names: Vec<_> = errors.iter().map(|e| e.name.as_str()).collect();
            names.sort_unstable();
            assert_eq!(names, ["[1].number", "[1].sent_at", "[2]"]);
        }
        other => panic!("{other:?}"),
    }
    // Every item invalid: the items are named, not the batch's length.
    match batch(json!([{"number": -1, "sent_at": "2024-05-01T12:00:00Z"}, [1]])) {
        Err(EdgeError::Invalid { errors, total: 2 }) => {
            let names: Vec<_> = errors.iter().map(|e| e.name.as_str()).collect();
            assert_eq!(names, ["[0].number", "[1]"]);
        }
        other => panic!("{other:?}"),
    }
    for (v, why) in [
        (json!([]), "empty"),
        (json!([good(1), good(2), good(3), good(4)]), "one too many"),
        (json!({"number": 1}), "not an array"),
        (json!(null), "null"),
    ] {
        match batch(v) {
            Err(EdgeError::Invalid { errors, total: 1 }) => {
                assert_eq!(errors[0].name, "$", "{why}")
            }
            other => panic!("{why}: {other:?}"),
        }
    }
    match Packet::batch_from_slice(b"[1,1,1,1,1", &rules(), 3) {
        Err(EdgeError::Invalid { errors, .. }) => {
            assert!(errors[0].message.contains("1 to 3"), "{errors:?}")
        }
        other => panic!("reading stops at item 4, before the syntax error: {other:?}"),
    }
    assert!(matches!(
        Packet::batch_from_slice(br#"[{"number":1,"number":1}]"#, &rules(), 3),
        Err(EdgeError::Malformed(_))
    ));
}

#[test]
fn an_8_mb_batch_of_zeros_stops_at_the_limit() {
    let mut body = Vec::with_capacity(8 << 20);
    body.push(b'[');
    while body.len() < (8 << 20) - 2 {
        body.extend_from_slice(b"0,");
    }
    body.extend_from_slice(b"0]");
    let start = std::time::Instant::now();
    match Packet::batch_from_slice(&body, &rules(), 1000) {
        Err(EdgeError::Invalid { errors, total: 1 }) => {
            assert_eq!(errors[0].name, "$");
            assert!(errors[0].message.contains("1 to 1000"), "{errors:?}");
        }
        other => panic!("{other:?}"),
    }
    println!(
        "refused after reading 1001 of 4 million items in {:?}",
        start.elapsed()
    );
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
