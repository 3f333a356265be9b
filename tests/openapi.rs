//! The OpenAPI document served by the fragment, and responses that validate
//! against it.

mod common;

use common::{Site, Stack};
use http::StatusCode;
use serde_json::{Value, json};

/// Validates `instance` against the schema of `status` for `path` in `doc`.
fn validate(doc: &Value, path: &str, status: u16, instance: &Value) {
    let schema_ref = doc["paths"][path]["get"]["responses"][status.to_string()]["content"]
        ["application/json"]["schema"]
        .clone();
    assert!(schema_ref.is_object(), "no schema for {path} {status}");
    // Resolve `#/components/...` against the whole document.
    let mut root = doc.clone();
    root.as_object_mut()
        .unwrap()
        .insert("$ref".into(), schema_ref["$ref"].clone());
    root.as_object_mut().unwrap().insert(
        "$schema".into(),
        json!("https://json-schema.org/draft/2020-12/schema"),
    );
    let validator = jsonschema::validator_for(&root).expect("schema compiles");
    let errors: Vec<String> = validator
        .iter_errors(instance)
        .map(|e| e.to_string())
        .collect();
    assert!(
        errors.is_empty(),
        "{path} {status}: {instance} -> {errors:?}"
    );
    // And the validator is not vacuous: a wrong shape fails.
    assert!(
        !validator.is_valid(&json!({"users": 5})),
        "{path} {status} accepts anything"
    );
}

async fn served_responses_match_the_document(stack: Stack) {
    let site = Site::new(stack).await;
    let (status, doc) = site.get_json("/openapi.json").await;
    assert_eq!(status, StatusCode::OK);
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    assert_eq!(
        doc,
        serde_json::to_value(axum_whos_online::openapi()).unwrap()
    );

    // Empty record (null dates), then a full one.
    let (_, stats) = site.get_json("/stats").await;
    validate(&doc, "/stats", 200, &stats);
    site.visit_as("alice", "10.0.0.1").await;
    site.visit("10.0.0.2").await;
    site.whos.flush().await.unwrap();
    site.whos.tick_now().await.unwrap();
    let (_, stats) = site.get_json("/stats").await;
    assert!(stats["max_users_date"].is_string());
    validate(&doc, "/stats", 200, &stats);
    // The record's generation is internal: neither served nor documented.
    assert!(stats.get("generation").is_none());
    let record = &doc["components"]["schemas"]["Record"]["properties"];
    assert!(record["max_users"].is_object() && record.get("generation").is_none());

    let (_, online) = site.get_json("/online").await;
    validate(&doc, "/online", 200, &online);
    let (status, err) = site.get_json("/online?limit=abc").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    validate(&doc, "/online", 400, &err);

    // The view's fields, the 304s and the event stream are documented too.
    assert!(doc["components"]["schemas"]["OnlineResponse"]["properties"]["as_of"].is_object());
    assert!(doc["components"]["schemas"]["OnlineEvent"].is_object());
    for path in ["/online", "/stats"] {
        assert!(
            doc["paths"][path]["get"]["responses"]["304"].is_object(),
            "{path}"
        );
    }
    let (_, places) = site.get_json("/online/places").await;
    validate(&doc, "/online/places", 200, &places);
    let (_, at) = site.get_json("/online?place=%2F").await;
    validate(&doc, "/online", 200, &at);
    assert!(doc["components"]["schemas"]["OnlineResponse"]["properties"]["bots"].is_object());
    assert!(doc["components"]["schemas"]["OnlineResponse"]["properties"]["place"].is_object());
    assert!(doc["paths"]["/online/places"]["get"]["responses"]["304"].is_object());
    let events = &doc["paths"]["/online/events"]["get"]["responses"];
    for status in ["200", "400", "503"] {
        assert!(events[status].is_object(), "{status}");
    }
    assert!(events["200"]["content"]["text/event-stream"].is_object());

    // The history: its entries, a 400 and its 304 are documented.
    let (status, history) = site.get_json("/stats/history?days=3").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(history["days"].as_array().unwrap().len(), 3);
    assert!(history["days"][2]["max_users_at"].is_string());
    validate(&doc, "/stats/history", 200, &history);
    let (status, err) = site.get_json("/stats/history?days=0").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    validate(&doc, "/stats/history", 400, &err);
    let responses = &doc["paths"]["/stats/history"]["get"]["responses"];
    assert!(responses["304"].is_object() && responses["503"].is_object());
    let day = &doc["components"]["schemas"]["Day"]["properties"];
    for field in ["day", "max_bots_at", "distinct_users", "distinct_visitors"] {
        assert!(day[field].is_object(), "{field}");
    }
}

async fn the_document_can_be_turned_off(stack: Stack) {
    let site = Site::with(stack, |b| b.serve_openapi(false)).await;
    let res = site
        .send(common::request_from("10.0.0.1", "/openapi.json"))
        .await;
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
}

on_both_stacks!(
    served_responses_match_the_document,
    the_document_can_be_turned_off
);
