//! Property tests of webhook signature verification (`pipeline::signing`) on arbitrary input
//! (proptest, a bounded number of cases per property so it fits in `cargo test`): arbitrary
//! header strings and bytes, arbitrary bodies, timestamps around (and far outside) the freshness
//! window, and valid signatures with one bit flipped anywhere. It never panics, and only a
//! correct MAC over the exact body, fresh within the window, verifies.

use pipeline::signing::{sign, verify, Signature, SignatureError};
use proptest::prelude::*;

const NOW: i64 = 1_764_000_000;
const TOLERANCE: i64 = 300;

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: 1_000,
        ..ProptestConfig::default()
    }
}

/// Header-like strings: free text, and the shape `t=…,v1=…` with hostile parts.
fn header_text() -> impl Strategy<Value = String> {
    let number = prop_oneof![
        any::<i64>().prop_map(|n| n.to_string()),
        (NOW - 400..NOW + 400).prop_map(|n| n.to_string()),
        Just(String::new()),
        "[+-]?[0-9]{0,25}",
        ".{0,12}",
    ];
    let hex = prop_oneof!["[0-9a-fA-F]{64}", "[0-9a-f]{0,70}", ".{0,70}"];
    let part = prop_oneof![
        number.prop_map(|n| format!("t={n}")),
        hex.prop_map(|h| format!("v1={h}")),
        "[a-z0-9]{0,4}=.{0,8}",
        ".{0,16}",
        Just(String::new()),
    ];
    prop_oneof![
        ".{0,200}",
        prop::collection::vec(part, 0..6).prop_map(|p| p.join(",")),
    ]
}

/// Whether `header` offers, for the timestamp it claims, the MAC of exactly `body` under
/// `secret` — worked out independently of `verify` from the header's own text.
fn offers_correct_mac(secret: &[u8], header: &str, body: &[u8]) -> bool {
    let Ok(parsed) = Signature::parse(header) else {
        return false;
    };
    let expected = sign(secret, parsed.timestamp(), body);
    let (_, mac) = expected.split_once(",v1=").expect("sign writes v1");
    header
        .split(',')
        .filter_map(|p| p.trim().strip_prefix("v1="))
        .any(|offered| offered.eq_ignore_ascii_case(mac))
}

/// What verification must answer for a header that claims `t`: only a fresh, correct MAC passes.
fn check(secret: &[u8], header: &str, body: &[u8], now: i64) {
    let got = verify(secret, header, body, now, TOLERANCE);
    if got.is_ok() {
        let t = Signature::parse(header).expect("verified").timestamp();
        assert!(
            t.abs_diff(now) <= TOLERANCE as u64,
            "stale {t} verified at {now}: {header:?}"
        );
        assert!(
            offers_correct_mac(secret, header, body),
            "a header without the body's MAC verified: {header:?}"
        );
    }
}

/// `header` with one bit of byte `i` flipped, as (lossy) text: a header reaches `verify` as str.
fn flip_text(text: &str, i: usize, bit: u8) -> String {
    let mut bytes = text.as_bytes().to_vec();
    let i = i % bytes.len();
    bytes[i] ^= 1 << (bit % 8);
    String::from_utf8_lossy(&bytes).into_owned()
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn arbitrary_headers_never_panic_and_never_verify_without_the_mac(
        header in header_text(),
        body in prop::collection::vec(any::<u8>(), 0..256),
        now in prop_oneof![Just(NOW), any::<i64>()],
    ) {
        check(b"secret", &header, &body, now);
        // Parsing and the freshness check alone (the webhook's order: header before body).
        if let Ok(sig) = Signature::parse(&header) {
            let _ = sig.check_fresh(now, TOLERANCE);
            let _ = sig.check_fresh(now, i64::MAX);
            let _ = sig.check_fresh(now, i64::MIN);
        }
    }

    #[test]
    fn arbitrary_header_bytes_never_panic(
        bytes in prop::collection::vec(any::<u8>(), 0..256),
        body in prop::collection::vec(any::<u8>(), 0..64),
    ) {
        check(b"secret", &String::from_utf8_lossy(&bytes), &body, NOW);
    }

    #[test]
    fn a_valid_signature_verifies_exactly_within_the_window(
        secret in prop::collection::vec(any::<u8>(), 1..100),
        body in prop::collection::vec(any::<u8>(), 0..512),
        offset in -TOLERANCE - 5..=TOLERANCE + 5,
    ) {
        let header = sign(&secret, NOW + offset, &body);
        let got = verify(&secret, &header, &body, NOW, TOLERANCE);
        if offset.abs() <= TOLERANCE {
            prop_assert_eq!(got, Ok(()));
        } else {
            prop_assert_eq!(got, Err(SignatureError::Stale));
        }
    }

    #[test]
    fn far_timestamps_are_stale_and_never_panic(
        t in prop_oneof![any::<i64>(), Just(i64::MIN), Just(i64::MAX), Just(0)],
        now in prop_oneof![any::<i64>(), Just(i64::MIN), Just(i64::MAX), Just(-1)],
    ) {
        let header = sign(b"secret", t, b"body");
        let got = verify(b"secret", &header, b"body", now, TOLERANCE);
        let fresh = t.abs_diff(now) <= TOLERANCE as u64;
        prop_assert_eq!(got.is_ok(), fresh, "t={} now={} gave {:?}", t, now, got);
    }

    #[test]
    fn one_flipped_bit_in_the_header_body_or_secret_never_verifies(
        secret in prop::collection::vec(any::<u8>(), 1..80),
        body in prop::collection::vec(any::<u8>(), 1..300),
        offset in -TOLERANCE..=TOLERANCE,
        i in any::<usize>(),
        bit in any::<u8>(),
    ) {
        let t = NOW + offset;
        let header = sign(&secret, t, &body);
        prop_assert_eq!(verify(&secret, &header, &body, NOW, TOLERANCE), Ok(()));

        // A bit of the header text: either no longer parses, names another time, or offers
        // another MAC. Hex digits differing only in case are the same MAC, so a flip of the
        // 0x20 bit of a MAC letter a-f is the one change that must still verify (`t` and `v1`
        // are case-sensitive).
        let flipped = flip_text(&header, i, bit);
        let got = verify(&secret, &flipped, &body, NOW, TOLERANCE);
        let mac_at = header.find(",v1=").unwrap() + 4;
        let case_only = flipped.eq_ignore_ascii_case(&header)
            && flipped.get(..mac_at) == Some(&header[..mac_at]);
        prop_assert_eq!(got.is_ok(), case_only, "{:?} gave {:?}", flipped, got);

        // A bit of the MAC itself, re-encoded as valid hex: a mismatch.
        let (head, mac) = header.split_once(",v1=").unwrap();
        let mut tag = hex_decode(mac);
        tag[i % 32] ^= 1 << (bit % 8);
        let forged = format!("{head},v1={}", hex_encode(&tag));
        prop_assert_eq!(
            verify(&secret, &forged, &body, NOW, TOLERANCE),
            Err(SignatureError::Mismatch)
        );

        // A bit of the body, one byte more or less: a mismatch.
        let mut changed = body.clone();
        changed[i % body.len()] ^= 1 << (bit % 8);
        prop_assert_eq!(
            verify(&secret, &header, &changed, NOW, TOLERANCE),
            Err(SignatureError::Mismatch)
        );
        let mut longer = body.clone();
        longer.push(bit);
        prop_assert_eq!(
            verify(&secret, &header, &longer, NOW, TOLERANCE),
            Err(SignatureError::Mismatch)
        );
        prop_assert_eq!(
            verify(&secret, &header, &body[..body.len() - 1], NOW, TOLERANCE),
            Err(SignatureError::Mismatch)
        );

        // A bit of the secret: a mismatch.
        let mut other = secret.clone();
        other[i % secret.len()] ^= 1 << (bit % 8);
        prop_assert_eq!(
            verify(&other, &header, &body, NOW, TOLERANCE),
            Err(SignatureError::Mismatch)
        );

        // Another timestamp under the same MAC: stale outside the window, else a mismatch.
        let moved = header.replacen(&format!("t={t}"), &format!("t={}", t + 1), 1);
        let want = if (offset + 1).abs() <= TOLERANCE {
            SignatureError::Mismatch
        } else {
            SignatureError::Stale
        };
        prop_assert_eq!(verify(&secret, &moved, &body, NOW, TOLERANCE), Err(want));
    }
}

fn hex_decode(text: &str) -> Vec<u8> {
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap())
        .collect()
}

fn hex_encode(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
