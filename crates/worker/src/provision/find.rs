//! Looking for an order upstream by the correlator in its title — the only way to learn
//! whether a Deploy whose answer was lost happened, since Deploy has no idempotency key.

use domain::db::instances::parse_correlator;
use domain::ids::InstanceId;
use futures::TryStreamExt;
use wiro_client::models::UserAgent;

use operations::Services;

/// What the search found.
#[derive(Clone, Debug)]
pub enum UpstreamMatch {
    /// No instance carries the correlator.
    None,
    /// Exactly one does (MyAgents row, then Detail for the full record).
    One(Box<UserAgent>),
    /// Several do: an order was deployed more than once. The oldest is returned first.
    Several(Vec<UserAgent>),
}

/// Pages through MyAgents (1000 per page) for instances whose title carries `[wr:<id>]`.
///
/// # Errors
/// Upstream failures (read-only calls, already retried by the client).
pub async fn find_by_correlator(
    ctx: &Services,
    id: InstanceId,
) -> Result<UpstreamMatch, wiro_client::Error> {
    let mut found: Vec<UserAgent> = ctx
        .wiro
        .my_agents_pages(wiro_client::MY_AGENTS_MAX_PAGE)
        .map_ok(|page| {
            futures::stream::iter(
                page.into_iter()
                    .filter(|agent| parse_correlator(&agent.title) == Some(id))
                    .map(Ok),
            )
        })
        .try_flatten()
        .try_collect()
        .await?;
    found.sort_by_key(|agent| agent.id);
    Ok(match found.len() {
        0 => UpstreamMatch::None,
        1 => {
            let row = found.remove(0);
            // MyAgents rows carry no configuration; Detail has the whole record.
            let detail = ctx.wiro.detail(&row.guid).await?;
            UpstreamMatch::One(Box::new(detail))
        }
        _ => UpstreamMatch::Several(found),
    })
}
