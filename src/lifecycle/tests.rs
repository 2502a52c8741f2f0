use super::*;
use std::time::UNIX_EPOCH;

const T0: SystemTime = UNIX_EPOCH;

fn at(ms: u64) -> SystemTime {
    T0 + Duration::from_millis(ms)
}

fn file(stage: Stage) -> FileState {
    let mut state = FileState::claimed(Payload::File, 10, at(0), at(5));
    state.stage = stage;
    state
}

/// One event of each kind.
fn every_event() -> Vec<Event> {
    let s = String::new;
    vec![
        Event::Hashed {
            sha256: "ab".into(),
            size: 10,
            members: None,
        },
        Event::Preflight { refused: None },
        Event::Submitting { request: s() },
        Event::Document {
            document_id: "D1".into(),
            sha256: "ab".into(),
            request: s(),
        },
        Event::Superseded {
            document_id: "D1".into(),
            why: s(),
        },
        Event::NotSent { reason: s() },
        Event::Submitted {
            document_id: "D1".into(),
        },
        Event::AnsweredFrom {
            document_id: "D0".into(),
            request: s(),
        },
        Event::Asked {
            asked: Duration::ZERO,
            still_processing: true,
        },
        Event::ReadyAfter {
            pending: None,
            ready: Duration::ZERO,
        },
        Event::Finishing {
            final_path: "/done/a.jpg".into(),
            sidecar_path: "/done/a.jpg.json".into(),
            sidecar: "{}".into(),
        },
        Event::Finished {
            stage: Stage::Done,
            label: "done".into(),
            delivery: None,
        },
        Event::Finished {
            stage: Stage::Failed,
            label: "rejected".into(),
            delivery: None,
        },
        Event::Lost,
    ]
}

const STAGES: [Stage; 8] = [
    Stage::Claimed,
    Stage::Submitting,
    Stage::Submitted,
    Stage::Finishing,
    Stage::Done,
    Stage::Review,
    Stage::Failed,
    Stage::Lost,
];

/// The whole table, stage by event: where each legal event leads; anything else is an
/// error naming the stage and the event.
#[test]
fn every_stage_accepts_exactly_its_events_and_refuses_the_rest() {
    use Stage::*;
    let expected: &[(Stage, &str, Stage)] = &[
        (Claimed, "hashed", Claimed),
        (Claimed, "preflight", Claimed),
        (Claimed, "submitting", Submitting),
        (Claimed, "superseded", Claimed),
        (Claimed, "submitted", Submitted),
        (Claimed, "answered_from", Submitted),
        (Claimed, "finishing", Finishing),
        (Claimed, "lost", Lost),
        (Submitting, "hashed", Submitting),
        (Submitting, "preflight", Submitting),
        (Submitting, "submitting", Submitting),
        (Submitting, "document", Submitting),
        (Submitting, "superseded", Submitting),
        (Submitting, "not_sent", Claimed),
        (Submitting, "submitted", Submitted),
        (Submitting, "answered_from", Submitted),
        (Submitting, "finishing", Finishing),
        (Submitting, "lost", Lost),
        (Submitted, "asked", Submitted),
        (Submitted, "ready_after", Submitted),
        (Submitted, "finishing", Finishing),
        (Submitted, "lost", Lost),
        (Finishing, "finishing", Finishing),
        (Finishing, "finished", Done),
        (Finishing, "finished", Failed),
        (Finishing, "lost", Lost),
    ];
    let mut legal = 0;
    for stage in STAGES {
        for event in every_event() {
            let name = event.name();
            let target = match &event {
                Event::Finished { stage, .. } => Some(*stage),
                _ => None,
            };
            let want = expected.iter().find(|(from, e, to)| {
                *from == stage && *e == name && target.is_none_or(|t| t == *to)
            });
            match (step(&file(stage), event, at(100)), want) {
                (Ok((next, _)), Some((_, _, to))) => {
                    assert_eq!(next.stage, *to, "{stage} --{name}-->");
                    legal += 1;
                }
                (Err(e), None) => {
                    assert_eq!(e, Illegal { stage, event: name });
                    assert!(e.to_string().contains(stage.as_str()), "{e}");
                }
                (got, want) => panic!("{stage} --{name}-->: got {got:?}, the table says {want:?}"),
            }
        }
    }
    assert_eq!(legal, expected.len());
}

#[test]
fn a_final_stage_takes_no_event() {
    for stage in [Stage::Done, Stage::Review, Stage::Failed, Stage::Lost] {
        for event in every_event() {
            assert!(step(&file(stage), event, at(1)).is_err(), "{stage}");
        }
    }
}

fn stored(effects: &[Effect]) -> &Change {
    match effects.first() {
        Some(Effect::Store(change)) => change,
        other => panic!("the first effect must store the change: {other:?}"),
    }
}

fn transitions(change: &Change) -> Vec<&'static str> {
    change
        .lines
        .iter()
        .map(|line| match line {
            Line::Of { transition, .. } => *transition,
            Line::PollsSummary => transition::POLLED,
        })
        .collect()
}

/// The happy path, event by event: the state each leads to, the lines it stores, the time
/// it carries.
#[test]
fn a_file_from_claim_to_done_carries_its_values_and_lines() {
    let mut state = file(Stage::Claimed);
    let mut lines = Vec::new();
    let events = [
        Event::Hashed {
            sha256: "ab".into(),
            size: 12,
            members: None,
        },
        Event::Preflight { refused: None },
        Event::Submitting {
            request: "R".into(),
        },
        Event::Document {
            document_id: "D1".into(),
            sha256: "ab".into(),
            request: "R".into(),
        },
        Event::Submitted {
            document_id: "D1".into(),
        },
        Event::Asked {
            asked: Duration::from_secs(1),
            still_processing: true,
        },
        Event::Finishing {
            final_path: "/done/a.jpg".into(),
            sidecar_path: "/done/a.jpg.json".into(),
            sidecar: r#"{"status":"done"}"#.into(),
        },
        Event::Finished {
            stage: Stage::Done,
            label: "done".into(),
            delivery: None,
        },
    ];
    for (i, event) in events.into_iter().enumerate() {
        let now = at(1000 + i as u64);
        let (next, effects) = step(&state, event, now).unwrap();
        let change = stored(&effects);
        assert_eq!(change.at, now);
        assert_eq!(change.stage, next.stage);
        lines.extend(transitions(change));
        state = next;
    }
    assert_eq!(
        lines,
        [
            "hashed",
            "preflight",
            "submitting",
            "document",
            "submitted",
            "polled",
            "finishing",
            "finished"
        ]
    );
    assert_eq!(state.stage, Stage::Done);
    assert_eq!(state.sha256.as_deref(), Some("ab"));
    assert_eq!(state.size, 12);
    assert_eq!(state.submit_attempts, 1);
    assert_eq!(state.document_id.as_deref(), Some("D1"));
    assert_eq!(state.submitted_at, Some(at(1004)));
    assert_eq!(state.final_path, Some(PathBuf::from("/done/a.jpg")));
}

#[test]
fn an_answer_from_an_earlier_document_names_it_as_the_duplicate() {
    let event = Event::AnsweredFrom {
        document_id: "D0".into(),
        request: "R".into(),
    };
    let (next, _) = step(&file(Stage::Claimed), event, at(7)).unwrap();
    assert_eq!(next.document_id.as_deref(), Some("D0"));
    assert_eq!(next.duplicate_of.as_deref(), Some("D0"));
    assert_eq!(next.submitted_at, Some(at(7)));
}

/// A finish retried at another name updates where it goes but tells the decision once.
#[test]
fn a_retried_finish_stores_the_new_place_without_a_second_line() {
    let finishing = |to: &str| Event::Finishing {
        final_path: to.into(),
        sidecar_path: format!("{to}.json").into(),
        sidecar: "{}".into(),
    };
    let (first, effects) = step(&file(Stage::Submitted), finishing("/d/a.jpg"), at(1)).unwrap();
    assert_eq!(transitions(stored(&effects)), ["polled", "finishing"]);
    let (second, effects) = step(&first, finishing("/d/a (2).jpg"), at(2)).unwrap();
    assert!(stored(&effects).lines.is_empty());
    assert_eq!(second.final_path, Some(PathBuf::from("/d/a (2).jpg")));
}

/// A finish wakes the delivering task only when it queued a delivery, and counts the file
/// with its time since it was seen, after the change is stored.
#[test]
fn a_finish_counts_the_file_and_wakes_deliveries_only_when_some_were_queued() {
    let mut finishing = file(Stage::Finishing);
    finishing.final_path = Some("/d/a.jpg".into());
    let delivery = |kinds: Vec<DeliveryKind>| NewOutcome {
        message_id: "m".into(),
        inbox: "/in".into(),
        status: "done".into(),
        original: "/d/a.jpg".into(),
        sidecar: "/d/a.jpg.json".into(),
        body: "{}".into(),
        kinds,
        first_wait: Duration::ZERO,
    };
    for (delivery, wakes) in [
        (None, false),
        (Some(delivery(Vec::new())), false),
        (Some(delivery(vec![DeliveryKind::Ledger])), true),
    ] {
        let event = Event::Finished {
            stage: Stage::Done,
            label: "done".into(),
            delivery,
        };
        let (_, effects) = step(&finishing, event, at(2500)).unwrap();
        assert!(matches!(effects[0], Effect::Store(_)));
        let woke = effects.iter().any(|e| matches!(e, Effect::WakeDeliveries));
        assert_eq!(woke, wakes);
        let counted = effects.iter().find_map(|e| match e {
            Effect::CountFinished { label, latency } => Some((label.clone(), *latency)),
            _ => None,
        });
        assert_eq!(counted, Some(("done".into(), Duration::from_millis(2500))));
    }
}

#[test]
fn a_set_hashed_keeps_its_members_and_counts_them_in_its_line() {
    let mut set = file(Stage::Claimed);
    set.payload = Payload::new_set();
    let member = Member {
        name: "p1.png".into(),
        sha256: "cd".into(),
        size: 4,
        doc_type: "PASSPORT".into(),
        key: "PASSPORT1".into(),
        stages: Vec::new(),
        relation: Default::default(),
    };
    let event = Event::Hashed {
        sha256: "ab".into(),
        size: 4,
        members: Some(vec![member.clone()]),
    };
    let (next, effects) = step(&set, event, at(1)).unwrap();
    assert_eq!(next.payload.members(), [member]);
    match &stored(&effects).lines[0] {
        Line::Of { details, .. } => assert_eq!(details["files"], 1),
        other => panic!("{other:?}"),
    }
}

#[test]
fn only_failed_and_review_can_be_requeued() {
    for stage in STAGES {
        let allowed = matches!(stage, Stage::Failed | Stage::Review);
        assert_eq!(requeue(stage).is_ok(), allowed, "{stage}");
    }
}

#[test]
fn only_review_can_be_decided_and_only_to_done_or_failed() {
    for stage in STAGES {
        for to in STAGES {
            let allowed = stage == Stage::Review && matches!(to, Stage::Done | Stage::Failed);
            assert_eq!(review(stage, to).is_ok(), allowed, "{stage} -> {to}");
        }
    }
}

#[test]
fn stages_read_back_as_written_and_unknown_text_is_none() {
    for stage in STAGES {
        assert_eq!(Stage::parse(stage.as_str()), Some(stage));
    }
    assert_eq!(Stage::parse("sent"), None);
}
