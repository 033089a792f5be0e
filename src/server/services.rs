//! The search, ingest and admin gRPC services (recommendation's are in `recommend.rs`). Handlers only convert, call the engine, and map errors.

use super::auth::Role;
use super::convert;
use super::layers::Deadline;
use super::status;
use crate::collection::RebuildPhase;
use crate::engine::Engine;
use crate::model::NewItem;
use crate::pb;
use futures::{FutureExt, Stream};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;
use tonic::{Request, Response, Status, Streaming};

pub struct SearchApi {
    pub engine: Arc<Engine>,
    pub deadline_cap: Duration,
}

impl SearchApi {
    /// Full gRPC method path → role it needs.
    pub const ROLES: &[(&str, Role)] = &[("/mmsearch.v1.SearchService/Search", Role::Search)];
}

#[tonic::async_trait]
impl pb::search_service_server::SearchService for SearchApi {
    async fn search(
        &self,
        request: Request<pb::SearchRequest>,
    ) -> Result<Response<pb::SearchResponse>, Status> {
        let (metadata, extensions, body) = request.into_parts();
        let personal =
            (!body.user_id.is_empty()).then(|| (body.user_id.clone(), body.personalization));
        let req = convert::search_request(body).map_err(status::from_pipeline)?;
        // One deadline for both: the handler's timeout and the encoders' skip-if-late check.
        let limit = Deadline::of(&metadata, &extensions, self.deadline_cap);
        let deadline = limit.at;
        limit
            .run(async {
                if let Some((user, alpha)) = personal {
                    let (result, parts) = self
                        .engine
                        .recommender()
                        .personalised_search(
                            self.engine.searcher(),
                            req,
                            user,
                            alpha,
                            Some(deadline),
                        )
                        .await
                        .map_err(status::from_pipeline)?;
                    return Ok(Response::new(convert::personalised_response(result, parts)));
                }
                let result = self
                    .engine
                    .searcher()
                    .search_until(req, Some(deadline))
                    .await
                    .map_err(status::from_pipeline)?;
                Ok(Response::new(convert::search_response(result)))
            })
            .await
    }
}

pub struct IngestApi {
    pub engine: Arc<Engine>,
    pub deadline_cap: Duration,
}

impl IngestApi {
    /// Full gRPC method path → role it needs. Get stays with ingest, as it was before the
    /// tables: moving an RPC to another role changes which deployed keys may call it.
    pub const ROLES: &[(&str, Role)] = &[
        ("/mmsearch.v1.IngestService/Upsert", Role::Ingest),
        ("/mmsearch.v1.IngestService/Delete", Role::Ingest),
        ("/mmsearch.v1.IngestService/Get", Role::Ingest),
    ];
}

#[tonic::async_trait]
impl pb::ingest_service_server::IngestService for IngestApi {
    async fn upsert(
        &self,
        request: Request<Streaming<pb::UpsertRequest>>,
    ) -> Result<Response<pb::UpsertSummary>, Status> {
        let mut stream = request.into_inner();
        let mut summary = pb::UpsertSummary::default();
        let mut position = 0u64;
        loop {
            // Wait for one message, then take whatever else is already buffered: a group is
            // written and WAL-synced together, so a fast client pays one fsync per group.
            let Some(first) = stream.message().await.map_err(status::from_stream)? else {
                break;
            };
            let mut group = vec![first];
            let group_commit_max = self.engine.config().ingest.group_commit_max;
            while group.len() < group_commit_max {
                match stream.message().now_or_never() {
                    Some(Ok(Some(m))) => group.push(m),
                    Some(Ok(None)) | None => break,
                    Some(Err(e)) => {
                        // Write what arrived intact before reporting the broken message.
                        self.write(&mut group, &mut position, &mut summary).await?;
                        return Err(status::from_stream(e));
                    }
                }
            }
            self.write(&mut group, &mut position, &mut summary).await?;
        }
        Ok(Response::new(summary))
    }

    async fn delete(
        &self,
        request: Request<pb::DeleteRequest>,
    ) -> Result<Response<pb::DeleteResponse>, Status> {
        let ids = request.into_inner().ids;
        let limit = self.engine.searcher().limits().max_delete_ids;
        if ids.is_empty() {
            return Err(Status::invalid_argument("no ids to delete"));
        }
        if ids.len() > limit {
            return Err(Status::invalid_argument(format!(
                "{} ids; at most {limit} per request",
                ids.len()
            )));
        }
        if ids.iter().any(|id| id.is_empty()) {
            return Err(Status::invalid_argument("empty id in delete request"));
        }
        let engine = self.engine.clone();
        let (deleted, not_found) =
            tokio::task::spawn_blocking(move || engine.collection().delete(&ids))
                .await
                .map_err(|e| Status::internal(format!("delete task failed: {e}")))?
                .map_err(status::from_collection)?;
        if deleted == 0 {
            return Err(Status::not_found(format!(
                "none of the ids exist: {not_found:?}"
            )));
        }
        Ok(Response::new(pb::DeleteResponse {
            deleted: deleted as u64,
            not_found,
        }))
    }

    async fn get(&self, request: Request<pb::GetRequest>) -> Result<Response<pb::Item>, Status> {
        let (metadata, extensions, body) = request.into_parts();
        if body.id.is_empty() {
            return Err(Status::invalid_argument("id is empty"));
        }
        let engine = self.engine.clone();
        let limit = Deadline::of(&metadata, &extensions, self.deadline_cap);
        limit
            .run(async move {
                let item = tokio::task::spawn_blocking(move || engine.collection().get(&body.id))
                    .await
                    .map_err(|e| Status::internal(format!("get task failed: {e}")))?
                    .map_err(status::from_collection)?;
                Ok(Response::new(convert::item(item)))
            })
            .await
    }
}

impl IngestApi {
    async fn write(
        &self,
        group: &mut Vec<pb::UpsertRequest>,
        position: &mut u64,
        summary: &mut pb::UpsertSummary,
    ) -> Result<(), Status> {
        if group.is_empty() {
            return Ok(());
        }
        let base = *position;
        *position += group.len() as u64;
        crate::telemetry::metrics()
            .ingest_group_size
            .observe(group.len() as f64);
        let mut items: Vec<NewItem> = Vec::with_capacity(group.len());
        for (i, req) in group.drain(..).enumerate() {
            match req.item {
                Some(item) => items.push(convert::new_item(item)),
                None => {
                    summary.rejected.push(pb::Rejected {
                        index: base + i as u64,
                        id: String::new(),
                        reason: "request has no item".into(),
                    });
                    // Keep positions aligned: a placeholder that validation rejects.
                    items.push(NewItem::default());
                }
            }
        }
        let outcome = self
            .engine
            .ingester()
            .write_group(items)
            .await
            .map_err(status::from_pipeline)?;
        summary.accepted += outcome.accepted as u64;
        for r in outcome.rejected {
            let index = base + r.index as u64;
            if summary.rejected.iter().any(|x| x.index == index) {
                continue;
            }
            summary.rejected.push(pb::Rejected {
                index,
                id: r.id,
                reason: r.reason,
            });
        }
        if let Some(seq) = outcome.last_seq {
            summary.last_version = seq;
        }
        Ok(())
    }
}

pub struct AdminApi {
    pub engine: Arc<Engine>,
}

impl AdminApi {
    /// Full gRPC method path → role it needs.
    pub const ROLES: &[(&str, Role)] = &[
        ("/mmsearch.v1.AdminService/Rebuild", Role::Admin),
        ("/mmsearch.v1.AdminService/Status", Role::Admin),
        ("/mmsearch.v1.AdminService/Snapshot", Role::Admin),
        ("/mmsearch.v1.AdminService/DeleteUserData", Role::Admin),
        ("/mmsearch.v1.AdminService/ExportUserData", Role::Admin),
        ("/mmsearch.v1.AdminService/Train", Role::Admin),
    ];
}

/// Every service's role table, for `auth::role_for_path`.
pub const ROLES: &[&[(&str, Role)]] = &[
    SearchApi::ROLES,
    IngestApi::ROLES,
    AdminApi::ROLES,
    super::recommend::RecommendApi::ROLES,
];

type ProgressStream = Pin<Box<dyn Stream<Item = Result<pb::RebuildProgress, Status>> + Send>>;

#[tonic::async_trait]
impl pb::admin_service_server::AdminService for AdminApi {
    type RebuildStream = ProgressStream;
    type TrainStream = super::recommend::TrainStream;

    async fn delete_user_data(
        &self,
        request: Request<pb::UserDataRequest>,
    ) -> Result<Response<pb::DeleteUserDataResponse>, Status> {
        super::recommend::delete_user_data(&self.engine, request.into_inner())
            .await
            .map(Response::new)
    }

    async fn export_user_data(
        &self,
        request: Request<pb::UserDataRequest>,
    ) -> Result<Response<pb::ExportUserDataResponse>, Status> {
        super::recommend::export_user_data(&self.engine, request.into_inner())
            .await
            .map(Response::new)
    }

    async fn train(
        &self,
        _request: Request<pb::TrainRequest>,
    ) -> Result<Response<Self::TrainStream>, Status> {
        Ok(Response::new(super::recommend::train(self.engine.clone())))
    }

    async fn rebuild(
        &self,
        _request: Request<pb::RebuildRequest>,
    ) -> Result<Response<Self::RebuildStream>, Status> {
        let mut rx = self.engine.collection().rebuild();
        let stream = async_stream(move |tx| async move {
            loop {
                let p = rx.borrow_and_update().clone();
                let finished = matches!(p.phase, RebuildPhase::Done | RebuildPhase::Failed);
                if p.phase == RebuildPhase::Failed {
                    let _ = tx
                        .send(Err(Status::internal(format!(
                            "rebuild failed: {}",
                            p.error.unwrap_or_default()
                        ))))
                        .await;
                    return;
                }
                if tx.send(Ok(convert::progress(&p))).await.is_err() {
                    return; // client went away; the rebuild continues
                }
                if finished || rx.changed().await.is_err() {
                    return;
                }
                // Progress changes fast during a build; a few updates a second are plenty.
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        });
        Ok(Response::new(stream))
    }

    async fn status(
        &self,
        _request: Request<pb::StatusRequest>,
    ) -> Result<Response<pb::StatusResponse>, Status> {
        let engine = self.engine.clone();
        let (stats, interactions) = tokio::task::spawn_blocking(move || {
            (engine.stats(), engine.collection().interaction_count())
        })
        .await
        .map_err(|e| Status::internal(format!("status task failed: {e}")))?;
        let mut out = convert::status(
            stats,
            self.engine.roles(),
            self.engine.models(),
            self.engine.uptime().as_secs(),
        );
        let interactions = interactions.map_err(status::from_collection)?;
        convert::recommend_status(
            &mut out,
            self.engine.recommender().model_info(),
            interactions,
        );
        Ok(Response::new(out))
    }

    async fn snapshot(
        &self,
        request: Request<pb::SnapshotRequest>,
    ) -> Result<Response<pb::SnapshotResponse>, Status> {
        let req = request.into_inner();
        // Clients name snapshots; where they go is the server's configuration.
        if !req.directory.is_empty() {
            return Err(status::snapshot_path_refused());
        }
        let name = (!req.name.is_empty()).then_some(req.name);
        let engine = self.engine.clone();
        // No deadline: a snapshot that outlives its client still completes (or cleans up).
        let info = tokio::task::spawn_blocking(move || engine.snapshot(name.as_deref()))
            .await
            .map_err(|e| Status::internal(format!("snapshot task failed: {e}")))?
            .map_err(status::from_collection)?;
        tracing::info!(
            name = %info.name,
            dir = %info.dir.display(),
            last_seq = info.manifest.last_seq,
            generation = info.manifest.generation,
            bytes = info.bytes,
            seconds = info.seconds,
            "snapshot written"
        );
        Ok(Response::new(convert::snapshot(info)))
    }
}

/// A response stream fed by a task through a small channel.
fn async_stream<F, Fut>(f: F) -> ProgressStream
where
    F: FnOnce(tokio::sync::mpsc::Sender<Result<pb::RebuildProgress, Status>>) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let (tx, rx) = tokio::sync::mpsc::channel(16);
    tokio::spawn(f(tx));
    Box::pin(tokio_stream::wrappers::ReceiverStream::new(rx))
}
