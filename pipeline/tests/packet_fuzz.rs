//! Property tests of the edge parser on arbitrary input (proptest, a bounded number of cases per
//! run; `PROPTEST_CASES` raises it): it never panics, and whatever it accepts obeys every rule and
//! survives the trip through the job encoding unchanged.

use chrono::{TimeDelta, TimeZone, Utc};
use pipeline::packet::{EdgeError, EdgeRules, Packet, MAX_ERRORS, MAX_NUMBER, MAX_TEXT_BYTES};
use proptest::prelude::*;
use serde_json::{json, Value};

fn rules() -> EdgeRules {
    EdgeRules::at(Utc.with_ymd_and_hms(2026, 12, 1, 12, 0, 0).unwrap())
}

/// Arbitrary JSON, biased towards packet-shaped objects with plausible and hostile values.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from),
        ".{0,40}".prop_map(Value::from),
        "20[0-9]{2}-1[0-2]-[0-3][0-9]T[0-2][0-9]:[0-6][0-9]:[0-6][0-9](\\.[0-9]{1,9})?(Z|[+-][0-2][0-9]:[0-5][0-9])"
            .prop_map(Value::from),
    ];
    leaf.prop_recursive(4, 64, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..8).prop_map(Value::Array),
            prop::collection::btree_map(
                prop_oneof![
                    Just("number".to_string()),
                    Just("sent_at".to_string()),
                    Just("producer".to_string()),
                    Just("resource_id".to_string()),
                    Just("seq".to_string()),
                    Just("total".to_string()),
                    Just("text".to_string()),
                    "[a-z_]{1,12}",
                ],
                inner,
                0..9
            )
            .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Every rule an accepted packet must obey.
fn check_accepted(p: &Packet, rules: &EdgeRules) {
    assert!(p.number <= MAX_NUMBER);
    assert!(p.sent_at <= rules.received_at + rules.max_clock_skew);
    assert!(p.sent_at >= rules.received_at - rules.max_age);
    assert!(p.text.len() <= MAX_TEXT_BYTES);
    if let Some(part) = &p.part {
        assert!(part.seq() < part.total() && part.total() <= 10_000);
    }
    let encoded = serde_json::to_vec(p).unwrap();
    let decoded: Packet = serde_json::from_slice(&encoded).unwrap();
    assert_eq!(&decoded, p, "the job encoding round-trips");
}

fn check(bytes: &[u8]) {
    let rules = rules();
    match Packet::from_slice(bytes, &rules) {
        Ok(p) => check_accepted(&p, &rules),
        Err(EdgeError::Invalid { errors, total }) => {
            assert!(!errors.is_empty() && errors.len() <= MAX_ERRORS && errors.len() <= total);
        }
        Err(EdgeError::Malformed(why)) => assert!(!why.is_empty()),
    }
    match Packet::batch_from_slice(bytes, &rules, 5) {
        Ok(ps) => {
            assert!(!ps.is_empty() && ps.len() <= 5);
            ps.iter().for_each(|p| check_accepted(p, &rules));
        }
        Err(EdgeError::Invalid { errors, total }) => {
            assert!(!errors.is_empty() && errors.len() <= MAX_ERRORS && errors.len() <= total);
        }
        Err(EdgeError::Malformed(why)) => assert!(!why.is_empty()),
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2_000, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        check(&bytes);
    }

    #[test]
    fn arbitrary_json_never_panics_and_what_passes_obeys_the_rules(v in json_value()) {
        check(&serde_json::to_vec(&v).unwrap());
        check(&serde_json::to_vec(&json!([v])).unwrap());
    }

    #[test]
    fn packet_shaped_objects_pass_exactly_when_every_field_is_in_range(
        number in prop_oneof![0..=MAX_NUMBER, Just(MAX_NUMBER + 1), Just(u64::MAX)],
        offset_ms in -8 * 86_400_000i64..10_000,
        seq in 0u32..12_000,
        total in 0u32..12_000,
        producer in "[A-Za-z0-9_.:-]{0,66}",
    ) {
        let r = rules();
        let sent_at = r.received_at + TimeDelta::milliseconds(offset_ms);
        let body = json!({
            "number": number, "sent_at": sent_at.to_rfc3339(), "producer": producer,
            "resource_id": "r", "seq": seq, "total": total, "text": "a b",
        });
        let valid = number <= MAX_NUMBER
            && (-7 * 86_400_000..=5_000).contains(&offset_ms)
            && (1..=10_000).contains(&total) && seq < total
            && !producer.is_empty() && producer.len() <= 64 && !producer.contains(':');
        let got = Packet::from_slice(&serde_json::to_vec(&body).unwrap(), &r);
        prop_assert_eq!(got.is_ok(), valid, "{} -> {:?}", body, got);
    }
}
