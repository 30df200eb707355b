//! Property: requests differing in group, model, parameters, system prompt, tools, earlier
//! turns or tenant never share an entry, exact or semantic.

use std::sync::Arc;

use infermux_core::{ChatRequest, Message, Request, RequestContext, Tool};
use proptest::prelude::*;
use serde_json::json;

use crate::support::{CosineVerifier, answer, semantic_cache, text_of};

/// One point in the space of things that change the answer.
#[derive(Debug, Clone, PartialEq)]
struct Point {
    group: u8,
    tenant: u8,
    model: u8,
    temperature: u8,
    max_tokens: u8,
    system: u8,
    tools: u8,
    earlier: u8,
}

fn point() -> impl Strategy<Value = Point> {
    (
        0u8..2,
        0u8..3,
        0u8..2,
        0u8..2,
        0u8..2,
        0u8..2,
        0u8..2,
        0u8..3,
    )
        .prop_map(
            |(group, tenant, model, temperature, max_tokens, system, tools, earlier)| Point {
                group,
                tenant,
                model,
                temperature,
                max_tokens,
                system,
                tools,
                earlier,
            },
        )
}

fn mix(a: &Point, other: &Point, dims: &[usize]) -> Point {
    let mut b = a.clone();
    for d in dims {
        match d {
            0 => b.group = other.group,
            1 => b.tenant = other.tenant,
            2 => b.model = other.model,
            3 => b.temperature = other.temperature,
            4 => b.max_tokens = other.max_tokens,
            5 => b.system = other.system,
            6 => b.tools = other.tools,
            _ => b.earlier = other.earlier,
        }
    }
    b
}

/// The request of a point; `last` is the last user turn.
fn build(p: &Point, last: &str) -> (Request, RequestContext, String) {
    let mut messages = vec![Message::system(format!("system {}", p.system))];
    for i in 0..p.earlier {
        messages.push(Message::user(format!("earlier {i}")));
        messages.push(Message::assistant(format!("reply {i}")));
    }
    messages.push(Message::user(last));
    let mut r = ChatRequest::new(format!("model-{}", p.model), messages);
    // temperature 0 or absent: both cacheable by the semantic tier
    if p.temperature == 1 {
        r = r.with_temperature(0.0);
    }
    if p.max_tokens == 1 {
        r = r.with_max_tokens(64);
    }
    if p.tools == 1 {
        r = r.with_tools(vec![Tool::new("f", "d", json!({"type": "object"}))]);
    }
    let ctx = match p.tenant {
        0 => RequestContext::new(),
        t => RequestContext::new().with_tenant(format!("tenant-{t}")),
    };
    (Request::Chat(r), ctx, format!("group-{}", p.group))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]
    #[test]
    fn different_requests_never_share_an_entry(
        a in point(),
        other in point(),
        dims in proptest::collection::vec(0usize..8, 1..3),
    ) {
        // b is a with one or two dimensions taken from another point: most cases differ in
        // one thing only, so a dimension missing from the key shows
        let b = mix(&a, &other, &dims);
        prop_assume!(a != b);
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        rt.block_on(async {
            let (cache, _) = semantic_cache(Arc::new(CosineVerifier(0.8)));
            let (ra, ca, na) = build(&a, "what is the capital of france");
            cache.store(&ra, &ca, &na, &answer("A")).await;
            // the same last turn (exact tier would match if the rest were equal), and a
            // reordering of it (semantic tier would match)
            for last in ["what is the capital of france", "france capital of the is what"] {
                let (rb, cb, nb) = build(&b, last);
                let got = cache.lookup(&rb, &cb, &nb).await;
                prop_assert!(got.is_none(), "{a:?} answered {b:?} with {:?}", got.map(|r| text_of(&r)));
            }
            // and the control: the same point does share its entry, semantically too
            let (ra2, ca2, na2) = build(&a, "france capital of the is what");
            prop_assert!(cache.lookup(&ra2, &ca2, &na2).await.is_some() || a.tools == 1);
            Ok(())
        })?;
    }
}

proptest! {
    #[test]
    fn canonical_strings_are_escaped_as_serde_json_escapes_them(s in "\\PC*|[\\x00-\\x7f]*") {
        let v = serde_json::Value::String(s.clone());
        prop_assert_eq!(infermux_cache::canonical_json(&v).unwrap(), serde_json::to_string(&s).unwrap());
    }
}
