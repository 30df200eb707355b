//! The request bodies this crate builds, checked against TEI's published `openapi.json` with
//! a small hand-rolled validator (`$ref`, `type`, `required`, `properties`, `items`,
//! `oneOf`/`anyOf`/`allOf`, `nullable`).

use infermux_core::EmbeddingRequest;
use infermux_hf_tei::{EmbedOptions, wire};
use serde_json::{Map, Value, json};

const SPEC: &str = "fixtures/specs/tei/openapi.json";

pub(crate) use infermux_testkit::spec::check;

fn spec() -> Option<Value> {
    infermux_testkit::spec::load_shared(SPEC)
}

fn assert_valid(root: &Value, path: &str, body: &Value) {
    let schema = root
        .pointer(&format!(
            "/paths/{}/post/requestBody/content/application~1json/schema",
            path.replace('/', "~1")
        ))
        .unwrap_or_else(|| panic!("no request schema for {path}"));
    let mut problems = Vec::new();
    check(root, schema, body, "$", &mut problems);
    assert!(problems.is_empty(), "{path}: {problems:#?}\n{body:#}");
}

#[test]
fn request_bodies_validate_against_the_openapi_spec() {
    let Some(root) = spec() else {
        return;
    };
    let inputs = vec!["What is Deep Learning?".to_owned(), "Rust".to_owned()];
    let opts = EmbedOptions::new().with_normalize(true).with_truncate(true);
    assert_valid(
        &root,
        "/embed",
        &wire::embed_body(&inputs, opts, Some(256), &Map::new()),
    );
    assert_valid(
        &root,
        "/embed",
        &wire::embed_body(&inputs[..1], EmbedOptions::default(), None, &Map::new()),
    );
    let sparse = EmbedOptions::new().with_truncate(false);
    assert_valid(
        &root,
        "/embed_sparse",
        &wire::embed_body(&inputs, sparse, None, &Map::new()),
    );
    assert_valid(
        &root,
        "/rerank",
        &wire::rerank_body("What is Deep Learning?", &inputs, Some(true)),
    );
    let openai =
        infermux_openai_compat::wire::embedding_body(&EmbeddingRequest::new("tei", inputs));
    assert_valid(&root, "/v1/embeddings", &openai);
}

#[test]
fn the_validator_catches_a_wrong_body() {
    let Some(root) = spec() else {
        return;
    };
    let schema = root
        .pointer("/paths/~1rerank/post/requestBody/content/application~1json/schema")
        .unwrap();
    let mut problems = Vec::new();
    check(
        &root,
        schema,
        &json!({"query": 1, "texts": "x"}),
        "$",
        &mut problems,
    );
    assert!(problems.len() >= 2, "{problems:?}");
}
