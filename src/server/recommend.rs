//! RecommendService, and the handlers of AdminService's user-data and training RPCs (the
//! admin service delegates here so that everything of recommendation is in one file).

use super::auth::Role;
use super::convert;
use super::layers::Deadline;
use super::status;
use crate::collection::Recorded;
use crate::engine::Engine;
use crate::pb;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;
use tonic::{Request, Response, Status, Streaming};

/// Interactions read ahead of the writer, and written (WAL-synced) together at most.
const READ_AHEAD: usize = 65_536;
const GROUP_MAX: usize = 8_192;

pub struct RecommendApi {
    pub engine: Arc<Engine>,
    pub deadline_cap: Duration,
}

impl RecommendApi {
    /// Full gRPC method path → role it needs.
    pub const ROLES: &[(&str, Role)] = &[
        (
            "/mmsearch.v1.RecommendService/RecordInteractions",
            Role::Ingest,
        ),
        (
            "/mmsearch.v1.RecommendService/RecordInteractionBatch",
            Role::Ingest,
        ),
        ("/mmsearch.v1.RecommendService/Recommend", Role::Search),
        (
            "/mmsearch.v1.RecommendService/RecommendForUser",
            Role::Search,
        ),
    ];
}

#[tonic::async_trait]
impl pb::recommend_service_server::RecommendService for RecommendApi {
    async fn record_interactions(
        &self,
        request: Request<Streaming<pb::Interaction>>,
    ) -> Result<Response<pb::RecordSummary>, Status> {
        let mut stream = request.into_inner();
        // A reader task drains the stream while groups are written: interactions are tiny,
        // and h2 answers a client whose small DATA frames pile up unread (during an fsync)
        // with GOAWAY ENHANCE_YOUR_CALM ("too_many_data_frames").
        let (tx, mut rx) =
            tokio::sync::mpsc::channel::<Result<pb::Interaction, Status>>(READ_AHEAD);
        tokio::spawn(async move {
            loop {
                let next = match stream.message().await {
                    Ok(Some(m)) => Ok(m),
                    Ok(None) => return,
                    Err(e) => Err(e),
                };
                let failed = next.is_err();
                if tx.send(next).await.is_err() || failed {
                    return;
                }
            }
        });
        let mut summary = pb::RecordSummary::default();
        let mut position = 0u64;
        // Whatever has arrived is written and synced as one group.
        while let Some(first) = rx.recv().await {
            let mut group = vec![first.map_err(status::from_stream)?];
            let mut broken = None;
            while group.len() < GROUP_MAX {
                match rx.try_recv() {
                    Ok(Ok(m)) => group.push(m),
                    Ok(Err(e)) => {
                        broken = Some(e);
                        break;
                    }
                    Err(_) => break,
                }
            }
            self.write(group, &mut position, &mut summary).await?;
            if let Some(e) = broken {
                return Err(status::from_stream(e));
            }
        }
        Ok(Response::new(summary))
    }

    async fn record_interaction_batch(
        &self,
        request: Request<pb::InteractionBatch>,
    ) -> Result<Response<pb::RecordSummary>, Status> {
        let mut interactions = request.into_inner().interactions;
        let mut summary = pb::RecordSummary::default();
        let mut position = 0u64;
        // Groups as large as a stream's, so one batch is at most a few synced writes.
        while !interactions.is_empty() {
            let rest = interactions.split_off(interactions.len().min(GROUP_MAX));
            let group = std::mem::replace(&mut interactions, rest);
            self.write(group, &mut position, &mut summary).await?;
        }
        Ok(Response::new(summary))
    }

    async fn recommend(
        &self,
        request: Request<pb::RecommendRequest>,
    ) -> Result<Response<pb::RecommendResponse>, Status> {
        let (metadata, extensions, body) = request.into_parts();
        let limit = Deadline::of(&metadata, &extensions, self.deadline_cap);
        let req = convert::examples_request(body).map_err(Status::invalid_argument)?;
        limit
            .run(async {
                let (hits, version) = self
                    .engine
                    .recommender()
                    .by_examples(req)
                    .await
                    .map_err(status::from_pipeline)?;
                Ok(Response::new(convert::recommend_response(hits, version)))
            })
            .await
    }

    async fn recommend_for_user(
        &self,
        request: Request<pb::RecommendForUserRequest>,
    ) -> Result<Response<pb::RecommendResponse>, Status> {
        let (metadata, extensions, body) = request.into_parts();
        let limit = Deadline::of(&metadata, &extensions, self.deadline_cap);
        let req = convert::for_user_request(body);
        limit
            .run(async {
                let (hits, version) = self
                    .engine
                    .recommender()
                    .for_user(req)
                    .await
                    .map_err(status::from_pipeline)?;
                Ok(Response::new(convert::recommend_response(hits, version)))
            })
            .await
    }
}

impl RecommendApi {
    async fn write(
        &self,
        group: Vec<pb::Interaction>,
        position: &mut u64,
        summary: &mut pb::RecordSummary,
    ) -> Result<(), Status> {
        let base = *position;
        *position += group.len() as u64;
        let mut rejected = Vec::new();
        let mut batch = Vec::with_capacity(group.len());
        let mut at = Vec::with_capacity(group.len());
        for (i, m) in group.into_iter().enumerate() {
            let item_id = m.item_id.clone();
            match convert::interaction(m) {
                Ok(x) => {
                    batch.push(x);
                    at.push((i, item_id));
                }
                Err(reason) => rejected.push(pb::Rejected {
                    index: base + i as u64,
                    id: item_id,
                    reason,
                }),
            }
        }
        let outcomes = self
            .engine
            .recommender()
            .record(batch)
            .await
            .map_err(status::from_pipeline)?;
        for ((i, id), o) in at.into_iter().zip(outcomes) {
            match o {
                Ok(Recorded::Stored) => summary.accepted += 1,
                Ok(Recorded::Duplicate) => {
                    summary.accepted += 1;
                    summary.duplicates += 1;
                }
                Err(reason) => rejected.push(pb::Rejected {
                    index: base + i as u64,
                    id,
                    reason,
                }),
            }
        }
        rejected.sort_by_key(|r| r.index);
        summary.rejected.extend(rejected);
        Ok(())
    }
}

pub async fn delete_user_data(
    engine: &Engine,
    req: pb::UserDataRequest,
) -> Result<pb::DeleteUserDataResponse, Status> {
    let deleted = engine
        .recommender()
        .erase(req.user_id)
        .await
        .map_err(status::from_pipeline)?;
    Ok(pb::DeleteUserDataResponse { deleted })
}

pub async fn export_user_data(
    engine: &Engine,
    req: pb::UserDataRequest,
) -> Result<pb::ExportUserDataResponse, Status> {
    let user_id = req.user_id.clone();
    let list = engine
        .recommender()
        .export(req.user_id)
        .await
        .map_err(status::from_pipeline)?;
    Ok(pb::ExportUserDataResponse {
        user_id,
        interactions: list.into_iter().map(convert::interaction_out).collect(),
    })
}

pub type TrainStream =
    Pin<Box<dyn futures::Stream<Item = Result<pb::TrainProgress, Status>> + Send>>;

/// Runs a training on the blocking pool; its progress goes to the stream (a client that goes
/// away does not stop it).
pub fn train(engine: Arc<Engine>) -> TrainStream {
    let (tx, rx) = tokio::sync::mpsc::channel(64);
    let started = std::time::Instant::now();
    tokio::task::spawn_blocking(move || {
        let mut last = std::time::Instant::now() - Duration::from_secs(1);
        let outcome = engine.recommender().train(|p| {
            // Progress is fast during training; a few updates a second are plenty.
            let message = Ok(convert::train_progress(&p, started.elapsed().as_secs_f64()));
            if p.phase != "training" {
                let _ = tx.blocking_send(message);
            } else if last.elapsed() >= Duration::from_millis(200) {
                last = std::time::Instant::now();
                let _ = tx.try_send(message);
            }
        });
        if let Err(e) = outcome {
            let _ = tx.blocking_send(Err(status::from_pipeline(e)));
        }
    });
    Box::pin(tokio_stream::wrappers::ReceiverStream::new(rx))
}
