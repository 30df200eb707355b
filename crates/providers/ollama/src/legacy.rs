//! Ollama's legacy `POST /api/embeddings` (one prompt a request, `{"model","prompt"}` →
//! `{"embedding":[…]}`), superseded by `/api/embed` but still served and still what older
//! clients record.

use infermux_core::{
    EmbeddingRequest, EmbeddingResponse, Error, ErrorKind, RequestContext, Result,
};
use serde::Deserialize;

use crate::Ollama;

#[derive(Deserialize)]
struct Wire {
    embedding: Vec<f32>,
}

/// Parses one `/api/embeddings` answer.
fn parse(body: &[u8]) -> Result<Vec<f32>> {
    let w: Wire = infermux_http::json::from_body(body).map_err(|e| {
        Error::new(
            ErrorKind::Decode,
            format!("invalid Ollama legacy embedding: {e}"),
        )
    })?;
    Ok(w.embedding)
}

impl Ollama {
    /// Embeds each input with the legacy `POST /api/embeddings`: one request per input
    /// (`{"model", "prompt"}`), answers in input order. The endpoint reports no usage.
    /// Prefer [`Provider::call`](infermux_core::Provider::call) with an embeddings request
    /// (`/api/embed`, one request for every input) on current servers.
    pub async fn embeddings_legacy(
        &self,
        request: &EmbeddingRequest,
        ctx: &RequestContext,
    ) -> Result<EmbeddingResponse> {
        let in_ctx = self.http.error_context(ctx);
        if request.inputs.is_empty() {
            return Err(in_ctx(Error::new(
                ErrorKind::InvalidRequest,
                "no input to embed",
            )));
        }
        let mut vectors = Vec::with_capacity(request.inputs.len());
        for prompt in &request.inputs {
            let body = crate::wire::ModelBody {
                model: &request.model,
                prompt: Some(prompt),
                stream: None,
            };
            let bytes = self
                .http
                .post("/api/embeddings")
                .json(&body)
                .send(ctx)
                .await?
                .bytes()
                .await?;
            vectors.push(parse(&bytes).map_err(&in_ctx)?);
        }
        EmbeddingResponse::new(request.model.clone(), vectors)
            .same_dimension()
            .map_err(in_ctx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_an_answer_and_rejects_another_shape() {
        assert_eq!(
            parse(br#"{"embedding":[0.5,-1]}"#).unwrap(),
            vec![0.5, -1.0]
        );
        let e = parse(br#"{"embeddings":[[0.5]]}"#).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Decode);
    }
}
