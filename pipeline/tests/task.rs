//! The word-length task and `process`: characters not bytes, whitespace of every kind, transit
//! time in fractional milliseconds.

use chrono::{DateTime, Duration, Utc};
use pipeline::ids::{ProducerName, ResourceId, ResourcePart};
use pipeline::packet::{MessageJob, Packet};
use pipeline::task::{millis_between, process, word_lengths};

#[test]
fn ascii_words() {
    assert_eq!(word_lengths("the quick brown fox"), [3, 5, 5, 3]);
    assert_eq!(word_lengths(""), Vec::<u32>::new());
    assert_eq!(word_lengths("   \t\n "), Vec::<u32>::new());
    assert_eq!(word_lengths("  a\tbb\n\nccc  "), [1, 2, 3]);
}

#[test]
fn unicode_counts_characters_not_bytes() {
    assert_eq!(word_lengths("héllo wörld"), [5, 5]);
    assert_eq!(word_lengths("日本語 テキスト"), [3, 4]);
    assert_eq!(word_lengths("🦀🦀 ok"), [2, 2]);
    // A no-break space (U+00A0) and an ideographic space (U+3000) separate words too.
    assert_eq!(word_lengths("a\u{00A0}bc\u{3000}def"), [1, 2, 3]);
}

#[test]
fn process_computes_every_field() {
    let sent_at = DateTime::from_timestamp_millis(1_700_000_000_000).unwrap();
    let received_at = sent_at + Duration::microseconds(12_345);
    let stored_at = received_at + Duration::milliseconds(40);
    let job = MessageJob {
        packet: Packet {
            number: 9,
            sent_at,
            producer: ProducerName::parse("p1").unwrap(),
            part: ResourcePart::new(ResourceId::parse("r").unwrap(), 1, 2).ok(),
            text: "héllo wörld 🦀".into(),
        },
        received_at,
    };
    let m = process(&job, stored_at);
    assert_eq!(m.doc_id(), "p1:9");
    assert_eq!(m.word_lengths, [5, 5, 1]);
    assert!((m.transit_ms - 12.345).abs() < 1e-9, "{}", m.transit_ms);
    assert_eq!(
        (m.sent_at, m.received_at, m.stored_at),
        (sent_at, received_at, stored_at)
    );
    assert_eq!(
        ResourcePart::flat(m.part.as_ref()),
        (Some("r"), Some(1), Some(2))
    );
    assert_eq!(m.text, job.packet.text);
}

#[test]
fn transit_can_be_negative_and_huge_without_panicking() {
    let t: DateTime<Utc> = DateTime::UNIX_EPOCH;
    assert_eq!(millis_between(t + Duration::milliseconds(5), t), -5.0);
    let far = DateTime::from_timestamp_millis(253_402_300_799_000).unwrap(); // 9999-12-31
    let ms = millis_between(
        DateTime::from_timestamp_millis(-62_135_596_800_000).unwrap(),
        far,
    );
    assert!(ms > 3.1e14, "{ms}");
}
