//! With the feature `openapi`, `QueueStats` is a `utoipa::ToSchema` whose descriptions are its
//! doc comments, so services publish it instead of re-declaring it.
//! `cargo test -p queue --features openapi --test integration openapi::`.
#![cfg(feature = "openapi")]

use queue::QueueStats;
use utoipa::PartialSchema;

#[test]
fn queue_stats_schema_names_and_describes_every_field() {
    let schema = serde_json::to_value(QueueStats::schema()).unwrap();
    let fields = serde_json::to_value(QueueStats::default()).unwrap();
    let fields = fields.as_object().unwrap();
    let properties = schema["properties"].as_object().unwrap();
    assert_eq!(
        properties.keys().collect::<Vec<_>>(),
        fields.keys().collect::<Vec<_>>(),
        "the schema has exactly the JSON fields"
    );
    for (name, property) in properties {
        let description = property["description"].as_str().unwrap_or_default();
        assert!(!description.is_empty(), "{name} is described: {property}");
        assert_eq!(property["type"], "integer", "{name}");
    }
    assert!(schema["description"]
        .as_str()
        .unwrap()
        .starts_with("Counters of one queue"));
}
