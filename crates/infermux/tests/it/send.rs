//! Every public future of the facade and of the kits it re-exports is `Send`, so it can be
//! spawned on a multi-thread runtime. Checked at compile time: a future that holds a value
//! that is not `Send` across an `.await` fails to build this file (the functions below never
//! run; building them is the check).

#![allow(dead_code)]

use infermux::{
    ChatRequest, Client, CompletionRequest, EmbeddingRequest, Request, RequestContext,
    RerankRequest,
};

/// Compiles only for a `Send` value (`send(async { let rc = std::rc::Rc::new(1);
/// std::future::ready(()).await; drop(rc) })` does not).
fn send<T: Send>(_: T) {}

fn client_futures(c: &Client, request: &Request) {
    let chat = || ChatRequest::new("m", vec![infermux::Message::user("Hi")]);
    let ctx = RequestContext::new;
    send(c.chat(chat()));
    send(c.chat_with(chat(), ctx()));
    send(c.stream_chat(chat()));
    send(c.stream_chat_with(chat(), ctx()));
    send(c.embed(EmbeddingRequest::new("m", vec!["a"])));
    send(c.embed_with(EmbeddingRequest::new("m", vec!["a"]), ctx()));
    send(c.complete(CompletionRequest::new("m", "a")));
    send(c.complete_with(CompletionRequest::new("m", "a"), ctx()));
    send(c.rerank(RerankRequest::new("m", "q", vec!["a".into()])));
    send(c.rerank_with(RerankRequest::new("m", "q", vec!["a".into()]), ctx()));
    send(c.models());
    send(c.models_with(ctx()));
    send(c.call(request, ctx()));
    send(c.stream(request, ctx()));
    send(c.stream_served(request, ctx()));
    send(c.open_stream(request, ctx()));
}

#[cfg(feature = "full")]
fn typed_operation_futures(c: &Client, chat: &ChatRequest) {
    let ctx = RequestContext::new;
    send(c.count_tokens(None, chat, ctx()));
    send(c.upload_file(None, "f.jsonl", b"{}", "batch", ctx()));
    send(c.pull_model(None, "m", ctx()));
    send(c.load_lora_adapter(None, "a", "/p", ctx()));
    send(c.unload_lora_adapter(None, "a", ctx()));
}

fn cache_and_batcher_futures(
    cache: &infermux::cache::Cache,
    batcher: &infermux::batching::Batcher<String, String, String>,
    request: &Request,
) {
    let ctx = RequestContext::new();
    send(cache.lookup(request, &ctx, "g"));
    send(cache.lookup_stream(request, &ctx, "g"));
    send(cache.call(request, &ctx, "g", || async {
        Err::<infermux::Response, _>(infermux::Error::new(infermux::ErrorKind::Server, "x"))
    }));
    send(batcher.submit("k".into(), "a".into(), &ctx));
    send(batcher.submit_many("k".into(), vec!["a".into()], &ctx));
}

#[cfg(feature = "s3")]
fn s3_futures(kit: &infermux::s3::S3Kit, path: &std::path::Path) {
    send(kit.create_bucket("b"));
    send(kit.head("b", "k"));
    send(kit.list("b", ""));
    send(kit.get_bytes("b", "k"));
    send(kit.delete("b", "k"));
    send(kit.upload_file("b", "k", path));
    send(kit.download_file("b", "k", path));
    send(kit.sync_up(path, "b", "", None));
    send(kit.fetch("b", "", path, None));
}
