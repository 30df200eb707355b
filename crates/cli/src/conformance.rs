//! `infermux conformance --corpus DIR [--json]`: the conformance runner of the
//! `infermux-conformance` crate over a folder of cassettes (the routing table and the checks
//! are documented in the CLI's README and in that crate).

use std::path::PathBuf;

/// Arguments of `infermux conformance`.
#[derive(clap::Args)]
pub(crate) struct ConformanceArgs {
    /// Folder of vcrpy cassettes (searched recursively for `.yaml` / `.yml` files).
    #[arg(long)]
    corpus: PathBuf,
    /// Print one JSON object per interaction instead of a readable line.
    #[arg(long)]
    json: bool,
}

/// Runs the corpus; fails when any interaction failed. A report that cannot be written ends
/// the program as every command's output does ([`crate::checked_out`]: quietly with 141 when
/// the reader went away).
pub(crate) async fn run(args: ConformanceArgs) -> infermux::Result<()> {
    let ran = infermux_conformance::run(&args.corpus, args.json).await;
    if let Err(e) = &ran
        && let Some(io) =
            std::error::Error::source(e).and_then(|s| s.downcast_ref::<std::io::Error>())
    {
        crate::checked_out(Err(std::io::Error::new(io.kind(), io.to_string())));
    }
    ran.map(|_| ())
}
