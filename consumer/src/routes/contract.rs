//! The parts of the edge contract the derived OpenAPI schemas cannot say by themselves, stated
//! in JSON Schema so that a client (or a fuzzer) reading `/openapi.json` knows the real rules:
//! `sent_at` is a date-time string *or* integer epoch milliseconds, a packet carries
//! `resource_id`, `seq` and `total` all three or none (`null` counts as absent, as the edge
//! parser has it), and a batch holds 1 to 1000 packets. What JSON Schema cannot express at all — `sent_at` within
//! [received − MAX_MESSAGE_AGE, received + MAX_CLOCK_SKEW], `seq < total`, `from + size ≤ 10000`
//! — stays in the descriptions, and the answer to breaking it is the documented 422.

use utoipa::openapi::schema::{
    AllOfBuilder, ArrayBuilder, ObjectBuilder, OneOfBuilder, Schema, Type,
};
use utoipa::openapi::{OpenApi, Ref, RefOr, SchemaFormat};

use super::ingest::MAX_BATCH;

/// `sent_at`: an RFC 3339 date-time string or integer epoch milliseconds.
pub fn sent_at_schema() -> Schema {
    let text = ObjectBuilder::new()
        .schema_type(Type::String)
        .format(Some(SchemaFormat::KnownFormat(
            utoipa::openapi::KnownFormat::DateTime,
        )))
        .examples(["2024-05-01T12:00:00.250Z"]);
    let millis = ObjectBuilder::new()
        .schema_type(Type::Integer)
        .format(Some(SchemaFormat::KnownFormat(
            utoipa::openapi::KnownFormat::Int64,
        )))
        .examples([1_714_564_800_250_i64]);
    OneOfBuilder::new()
        .item(text)
        .item(millis)
        .description(Some(
            "RFC 3339 date-time string (no leap second), or integer epoch milliseconds; at most \
             `MAX_CLOCK_SKEW` (5 s) after the API receives the packet and at most \
             `MAX_MESSAGE_AGE` (7 days) before, else 422 (a window around the arrival, which \
             JSON Schema cannot state).",
        ))
        .into()
}

const RESOURCE_FIELDS: [&str; 3] = ["resource_id", "seq", "total"];

/// The packet schema `packet`, constrained to "resource fields all three or none": either each
/// of them is absent or `null`, or all three are present and not `null`.
fn all_or_none(packet: RefOr<Schema>) -> Schema {
    let null = || ObjectBuilder::new().schema_type(Type::Null);
    let none = RESOURCE_FIELDS
        .iter()
        .fold(ObjectBuilder::new(), |o, f| o.property(*f, null()));
    let all = ObjectBuilder::new()
        .property(
            "resource_id",
            ObjectBuilder::new().schema_type(Type::String),
        )
        .property("seq", ObjectBuilder::new().schema_type(Type::Integer))
        .property("total", ObjectBuilder::new().schema_type(Type::Integer));
    let all = RESOURCE_FIELDS.iter().fold(all, |o, f| o.required(*f));
    AllOfBuilder::new()
        .item(packet)
        .item(OneOfBuilder::new().item(none).item(all))
        .description(Some(
            "A packet as sent (validated into `pipeline::packet::Packet`): `resource_id`, `seq` \
             and `total` all three or none, `0 ≤ seq < total`. Unknown fields are rejected with \
             422.",
        ))
        .into()
}

/// Adds what the derives cannot say to the document (see the module doc).
pub struct EdgeContract;

impl utoipa::Modify for EdgeContract {
    fn modify(&self, openapi: &mut OpenApi) {
        let Some(components) = openapi.components.as_mut() else {
            return;
        };
        if let Some(packet) = components.schemas.remove("PacketInput") {
            components
                .schemas
                .insert("PacketInput".into(), all_or_none(packet).into());
        }
        let batch = openapi
            .paths
            .paths
            .get_mut("/messages/batch")
            .and_then(|p| p.post.as_mut())
            .and_then(|op| op.request_body.as_mut())
            .and_then(|body| body.content.get_mut("application/json"));
        if let Some(content) = batch {
            let items = ArrayBuilder::new()
                .items(Ref::from_schema_name("PacketInput"))
                .min_items(Some(1))
                .max_items(Some(MAX_BATCH));
            content.schema = Some(items.into());
        }
    }
}
