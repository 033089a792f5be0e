//! Recommendation through a real server (#11): interactions recorded durably (kill -9), bad
//! input reported per event, training and the model swap, "for you" with reasons, popularity
//! for a new user, recommendations by examples, personalised search whose explanation adds
//! up, export, and an erasure that leaves nothing of the user in the store's live files.

mod common;

use common::*;
use mmsearch::pb;
use pb::recommend_service_client::RecommendServiceClient;
use std::time::Duration;
use tonic::transport::Channel;
use tonic::Code;

const DIM: usize = 8;

fn unit(i: usize) -> Vec<f32> {
    let mut v = vec![0.05f32; DIM];
    v[i % DIM] = 1.0;
    normalise(v)
}

async fn rec(server: &Server) -> RecommendServiceClient<Channel> {
    RecommendServiceClient::new(server.channel().await)
}

fn ev(user: &str, item: &str, kind: pb::InteractionKind, ts: i64) -> pb::Interaction {
    pb::Interaction {
        user_id: user.into(),
        item_id: item.into(),
        kind: kind as i32,
        timestamp_ms: ts,
        ..Default::default()
    }
}

async fn record(server: &Server, events: Vec<pb::Interaction>) -> pb::RecordSummary {
    rec(server)
        .await
        .record_interactions(tokio_stream::iter(events))
        .await
        .expect("record")
        .into_inner()
}

async fn user_data(server: &Server, user: &str) -> pb::ExportUserDataResponse {
    server
        .admin()
        .await
        .export_user_data(pb::UserDataRequest {
            user_id: user.into(),
        })
        .await
        .expect("export")
        .into_inner()
}

async fn train(server: &Server) -> pb::TrainProgress {
    let mut stream = server
        .admin()
        .await
        .train(pb::TrainRequest {})
        .await
        .expect("train")
        .into_inner();
    let mut last = None;
    while let Some(p) = stream.message().await.expect("progress") {
        last = Some(p);
    }
    let last = last.expect("some progress");
    assert_eq!(last.phase, "done");
    last
}

/// Bytes of every file under `dir` (recursively) that contain `needle`.
fn files_containing(dir: &std::path::Path, needle: &[u8]) -> Vec<String> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(files_containing(&p, needle));
        } else if let Ok(bytes) = std::fs::read(&p) {
            if bytes.windows(needle.len()).any(|w| w == needle) {
                out.push(p.display().to_string());
            }
        }
    }
    out
}

/// Six items in two groups; shoppers who buy one of a group buy the others.
async fn shop(server: &Server) {
    let items = (0..6)
        .map(|i| {
            item(
                &format!("i{i}"),
                &format!("Item {i}"),
                if i < 3 { "a" } else { "b" },
                10.0 * i as f64,
                unit(i),
            )
        })
        .collect();
    assert_eq!(upsert(server, items).await.accepted, 6);
    use pb::InteractionKind::*;
    let mut events = Vec::new();
    for u in 0..12 {
        let group = if u % 2 == 0 { [0, 1, 2] } else { [3, 4, 5] };
        for (t, i) in group.iter().enumerate() {
            // Every shopper skips one item of the group, so each item has co-buyers.
            if (u / 2) % 3 != t {
                events.push(ev(
                    &format!("shopper-{u}"),
                    &format!("i{i}"),
                    Purchase,
                    1_000 + t as i64,
                ));
            }
        }
    }
    let s = record(server, events.clone()).await;
    assert_eq!(s.accepted as usize, events.len(), "{:?}", s.rejected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn record_train_recommend_explain_export_erase() {
    use pb::InteractionKind::*;
    let tmp = tempfile::tempdir().unwrap();
    let server = Server::start(&tmp.path().join("d"), &config_with_space(DIM, ""));
    shop(&server).await;

    // Bad events are rejected with a reason; the good ones around them are stored.
    let mut dup = ev("alice", "i0", Click, 5_000);
    dup.idempotency_key = "click-1".into();
    let batch = vec![
        ev("alice", "i0", View, 4_000),
        ev("alice", "nope", View, 4_000),
        ev("", "i0", View, 4_000),
        pb::Interaction {
            kind: 0,
            ..ev("alice", "i1", View, 4_000)
        },
        pb::Interaction {
            dwell_ms: 0,
            ..ev("alice", "i1", Dwell, 4_000)
        },
        dup.clone(),
        dup.clone(),
    ];
    let s = record(&server, batch).await;
    assert_eq!((s.accepted, s.duplicates), (3, 1), "{s:?}");
    let rejected: Vec<u64> = s.rejected.iter().map(|r| r.index).collect();
    assert_eq!(rejected, vec![1, 2, 3, 4]);
    assert!(
        s.rejected[0].reason.contains("unknown item"),
        "{:?}",
        s.rejected[0]
    );
    // The same key later is still a duplicate.
    assert_eq!(record(&server, vec![dup]).await.duplicates, 1);

    // Before any training: no collaborative model.
    let status = server
        .admin()
        .await
        .status(pb::StatusRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(status.model_version, 0);
    let p = train(&server).await;
    assert_eq!(
        (p.model_version, p.algorithm.as_str(), p.items),
        (1, "ease", 6)
    );
    let status = server
        .admin()
        .await
        .status(pb::StatusRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(status.model_version, 1);
    assert!(status.model_trained_at > 0);
    assert_eq!(status.interactions, 24 + 2);

    // "For you": a shopper who bought i3 gets i4 and i5, because of i3.
    record(&server, vec![ev("bob", "i3", Purchase, 9_000)]).await;
    let req = pb::RecommendForUserRequest {
        user_id: "bob".into(),
        top_k: 2,
        ..Default::default()
    };
    let r = rec(&server)
        .await
        .recommend_for_user(req)
        .await
        .unwrap()
        .into_inner();
    let got: std::collections::BTreeSet<&str> = r.hits.iter().map(|h| h.id.as_str()).collect();
    assert_eq!(got, ["i4", "i5"].into_iter().collect(), "{r:?}");
    assert_eq!(r.model_version, 1);
    let top = &r.hits[0];
    let cf = top
        .reasons
        .iter()
        .find(|x| x.source == "collaborative")
        .expect("a collaborative reason");
    assert_eq!(
        (cf.because[0].item_id.as_str(), cf.because[0].kind.as_str()),
        ("i3", "purchase")
    );
    let sum: f32 = top.reasons.iter().map(|x| x.contribution).sum();
    assert!(
        (sum - top.score).abs() < 1e-5,
        "reasons add up to the score: {top:?}"
    );
    // With seen items allowed, "buy again" brings i3 back.
    let req = pb::RecommendForUserRequest {
        user_id: "bob".into(),
        top_k: 3,
        exclude_seen: Some(false),
        ..Default::default()
    };
    let r = rec(&server)
        .await
        .recommend_for_user(req)
        .await
        .unwrap()
        .into_inner();
    let i3 = r.hits.iter().find(|h| h.id == "i3").expect("buy again");
    assert!(i3.reasons.iter().any(|x| x.source == "buy_again"), "{i3:?}");
    // A filter holds.
    let req = pb::RecommendForUserRequest {
        user_id: "bob".into(),
        top_k: 5,
        filter: Some(pb::Filter {
            categories: vec!["a".into()],
            ..Default::default()
        }),
        ..Default::default()
    };
    let r = rec(&server)
        .await
        .recommend_for_user(req)
        .await
        .unwrap()
        .into_inner();
    assert!(
        !r.hits.is_empty()
            && r.hits
                .iter()
                .all(|h| h.item.as_ref().unwrap().category == "a"),
        "{r:?}"
    );

    // No history: popularity.
    let req = pb::RecommendForUserRequest {
        user_id: "newcomer".into(),
        top_k: 3,
        ..Default::default()
    };
    let r = rec(&server)
        .await
        .recommend_for_user(req)
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.hits.len(), 3);
    assert!(
        r.hits
            .iter()
            .all(|h| h.reasons.len() == 1 && h.reasons[0].source == "popularity"),
        "{r:?}"
    );

    // By examples.
    let like = |id: &str| pb::Example {
        example: Some(pb::example::Example::ItemId(id.into())),
        weight: None,
    };
    for strategy in [
        pb::RecommendStrategy::AverageVector,
        pb::RecommendStrategy::BestScore,
        pb::RecommendStrategy::Collaborative,
    ] {
        let req = pb::RecommendRequest {
            positive: vec![like("i0")],
            strategy: strategy as i32,
            top_k: 2,
            ..Default::default()
        };
        let r = rec(&server)
            .await
            .recommend(req)
            .await
            .unwrap()
            .into_inner();
        assert!(
            !r.hits.is_empty() && r.hits.iter().all(|h| h.id != "i0"),
            "{strategy:?}: {r:?}"
        );
        assert!(
            r.hits
                .iter()
                .all(|h| h.reasons.iter().any(|x| x.source == "positive")),
            "{strategy:?}: {r:?}"
        );
    }
    let req = pb::RecommendRequest {
        positive: vec![like("i0"), like("ghost")],
        top_k: 2,
        ..Default::default()
    };
    let e = rec(&server).await.recommend(req.clone()).await.unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
    assert!(e.message().contains("ghost"), "{}", e.message());
    let r = rec(&server)
        .await
        .recommend(pb::RecommendRequest {
            ignore_missing_ids: true,
            ..req
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.hits.len(), 2);
    // A negative example pushes its neighbours down.
    let req = pb::RecommendRequest {
        positive: vec![like("i0")],
        negative: vec![like("i1")],
        top_k: 5,
        ..Default::default()
    };
    let r = rec(&server)
        .await
        .recommend(req)
        .await
        .unwrap()
        .into_inner();
    assert_ne!(r.hits[0].id, "i1");

    // Bad input: INVALID_ARGUMENT, and the server keeps serving.
    let bad = rec(&server)
        .await
        .recommend_for_user(pb::RecommendForUserRequest {
            user_id: String::new(),
            top_k: 3,
            ..Default::default()
        })
        .await;
    assert_eq!(bad.unwrap_err().code(), Code::InvalidArgument);
    let bad = rec(&server)
        .await
        .recommend_for_user(pb::RecommendForUserRequest {
            user_id: "bob".into(),
            top_k: 0,
            ..Default::default()
        })
        .await;
    assert_eq!(bad.unwrap_err().code(), Code::InvalidArgument);
    let bad = rec(&server)
        .await
        .recommend(pb::RecommendRequest {
            top_k: 3,
            ..Default::default()
        })
        .await;
    assert_eq!(bad.unwrap_err().code(), Code::InvalidArgument);
    let bad = rec(&server)
        .await
        .recommend(pb::RecommendRequest {
            positive: vec![pb::Example::default()],
            top_k: 3,
            ..Default::default()
        })
        .await;
    assert_eq!(bad.unwrap_err().code(), Code::InvalidArgument);

    // Personalised search: the same candidates, re-ranked; the explanation adds up.
    let mut q = vector_query(normalise(vec![1.0, 1.0, 0.2, 0.2, 0.2, 0.2, 0.2, 0.2]), 6);
    q.explain = true;
    let plain = server
        .search()
        .await
        .search(q.clone())
        .await
        .unwrap()
        .into_inner();
    record(
        &server,
        (0..5)
            .map(|t| ev("carol", "i1", Purchase, 10_000 + t))
            .collect(),
    )
    .await;
    q.user_id = "carol".into();
    q.personalization = 0.9;
    let personal = server
        .search()
        .await
        .search(q.clone())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(personal.hits[0].id, "i1");
    let mut a = ids(&plain);
    let mut b = ids(&personal);
    a.sort();
    b.sort();
    assert_eq!(a, b, "personalisation only re-ranks the query's candidates");
    for h in &personal.hits {
        let e = h.explanation.as_ref().expect("explained");
        let total: f32 = e.offset + e.parts.iter().map(|p| p.contribution).sum::<f32>();
        assert!((total - h.score).abs() < 1e-5, "{h:?}");
        assert!(e
            .parts
            .iter()
            .all(|p| (p.weight * p.value - p.contribution).abs() < 1e-6));
    }
    q.personalization = 1.5;
    assert_eq!(
        server.search().await.search(q).await.unwrap_err().code(),
        Code::InvalidArgument
    );

    // Export, snapshot, then erasure.
    let who = "erase-me-7f3a9c";
    let mut events: Vec<pb::Interaction> = (0..50)
        .map(|t| ev(who, &format!("i{}", t % 6), View, 20_000 + t))
        .collect();
    events[0].idempotency_key = "erase-me-key".into();
    assert_eq!(record(&server, events).await.accepted, 50);
    let export = user_data(&server, who).await;
    assert_eq!(export.interactions.len(), 50);
    let snap = server
        .admin()
        .await
        .snapshot(pb::SnapshotRequest {
            name: "before-erase".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let store = server.data_dir.join("store");
    assert!(
        !files_containing(&store, who.as_bytes()).is_empty()
            || !files_containing(std::path::Path::new(&snap.directory), who.as_bytes()).is_empty()
    );
    let d = server
        .admin()
        .await
        .delete_user_data(pb::UserDataRequest {
            user_id: who.into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(d.deleted, 50);
    let export = user_data(&server, who).await;
    assert!(export.interactions.is_empty());
    // Obsolete files are removed by RocksDB in the background; give it a moment.
    let mut left = Vec::new();
    for _ in 0..50 {
        left = files_containing(&store, who.as_bytes());
        left.extend(files_containing(&store, b"erase-me-key"));
        if left.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(left.is_empty(), "the erased user is still in {left:?}");
    // Other users are untouched; the snapshot taken before keeps the data (README says so).
    let bob = user_data(&server, "bob").await;
    assert_eq!(bob.interactions.len(), 1);
    assert!(!files_containing(std::path::Path::new(&snap.directory), who.as_bytes()).is_empty());
    let status = server
        .admin()
        .await
        .status(pb::StatusRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(status.interactions, 24 + 2 + 1 + 5);
}

/// One message with many interactions is written like a stream of them: rejects keep their
/// index across the server's write groups, duplicates are counted, everything else is stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_records_like_a_stream() {
    use pb::InteractionKind::*;
    let tmp = tempfile::tempdir().unwrap();
    let server = Server::start(&tmp.path().join("d"), &config_with_space(DIM, ""));
    shop(&server).await;
    let mut events: Vec<pb::Interaction> = (0..10_000)
        .map(|i| ev("batcher", "i2", View, 1_000 + i))
        .collect();
    // Past the first write group (8,192): the index counts from the batch's start.
    events[9_000].item_id = "nope".into();
    events[9_001].idempotency_key = "once".into();
    events[9_002].idempotency_key = "once".into();
    let mut client = rec(&server).await;
    let s = client
        .record_interaction_batch(pb::InteractionBatch {
            interactions: events,
        })
        .await
        .expect("batch")
        .into_inner();
    assert_eq!((s.accepted, s.duplicates), (9_999, 1), "{s:?}");
    assert_eq!(s.rejected.len(), 1);
    assert_eq!(s.rejected[0].index, 9_000);
    assert!(s.rejected[0].reason.contains("unknown item"), "{s:?}");
    let export = user_data(&server, "batcher").await;
    assert_eq!(export.interactions.len(), 9_998);
    // An empty batch is a no-op, not an error.
    let s = client
        .record_interaction_batch(pb::InteractionBatch::default())
        .await
        .expect("empty batch")
        .into_inner();
    assert_eq!((s.accepted, s.rejected.len()), (0, 0));
}

/// kill -9 while interactions stream in: every acknowledged one is there after a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_interactions_survive_kill_9() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("d");
    let mut server = Server::start(&data, &config_with_space(DIM, ""));
    assert_eq!(
        upsert(&server, vec![item("x", "X", "c", 1.0, unit(0))])
            .await
            .accepted,
        1
    );
    let addr = server.addr.clone();
    let writer = tokio::spawn(async move {
        let channel = Channel::from_shared(addr).unwrap().connect().await.unwrap();
        let mut client = RecommendServiceClient::new(channel);
        let mut acked = 0u64;
        for batch in 0i64.. {
            let events: Vec<pb::Interaction> = (0..100)
                .map(|i| ev("k9", "x", pb::InteractionKind::Click, 1 + batch * 100 + i))
                .collect();
            // Streamed and batched calls alternate: both acknowledge only durable writes.
            let answer = if batch % 2 == 0 {
                client.record_interactions(tokio_stream::iter(events)).await
            } else {
                client
                    .record_interaction_batch(pb::InteractionBatch {
                        interactions: events,
                    })
                    .await
            };
            match answer {
                Ok(s) if s.get_ref().accepted == 100 => acked += 100,
                _ => break,
            }
        }
        acked
    });
    tokio::time::sleep(Duration::from_millis(1500)).await;
    server.kill9();
    let acked = writer.await.unwrap();
    assert!(
        acked >= 100,
        "too few acknowledged interactions to test ({acked})"
    );
    let server = Server::start_with(&data, &server.config.clone(), &["--no-models"]);
    let export = user_data(&server, "k9").await;
    assert!(
        export.interactions.len() as u64 >= acked,
        "{} of {acked} acknowledged interactions survived",
        export.interactions.len()
    );
    println!(
        "kill -9: {acked} acknowledged interactions, {} present after restart",
        export.interactions.len()
    );
}
