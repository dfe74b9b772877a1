//! The fault sequence of one chaos run, on a private broker and MongoDB, each fault
//! while a slice of the records is in flight, then the audit.

use std::time::{Duration, Instant};

use testkit::process::{Server, TempDir};
use testkit::writer::{Setup, Writer};

use super::audit::audit;
use super::workload::{produce, workload};
use super::{Outcome, Plan};

struct Run {
    s: Setup,
    mongo: Server,
    broker: Server,
    recoveries: Vec<(String, f64)>,
    stalls: usize,
}

impl Run {
    /// Waits until the stored count grows past `from` (progress after a fault).
    async fn recovered(&mut self, fault: &str, from: u64, since: Instant, total: u64) {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let n = self.s.count().await;
            if n > from || n >= total {
                self.recoveries
                    .push((fault.to_owned(), since.elapsed().as_secs_f64()));
                return;
            }
            if Instant::now() > deadline {
                eprintln!("chaos: no progress within 120 s after {fault}");
                self.stalls += 1;
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

fn writer(s: &Setup, plan: &Plan, name: &str) -> Writer {
    writer_with(s, plan, name, &[])
}

fn writer_with(s: &Setup, plan: &Plan, name: &str, extra: &[(&str, &str)]) -> Writer {
    let mut env = vec![
        ("MONGODB_COLLECTION_TYPE", plan.mode.as_str()),
        ("SHUTDOWN_GRACE_MS", "1000"),
        ("MONGODB_TIMEOUT_MS", "3000"),
        ("DLQ_TIMEOUT_MS", "2000"),
        ("KAFKA_SESSION_TIMEOUT_MS", "6000"),
    ];
    env.extend_from_slice(extra);
    Writer::start(s, name, &env)
}

/// Runs `plan` and prints its `RESULT mode=... chaos_ok=...` line. Panics when the
/// run cannot go on (a writer that never gets partitions, a server that will not
/// start); a clean audit is [`Outcome::ok`].
pub async fn run(plan: &Plan) -> Outcome {
    let kind = plan.mode.as_str();
    let started = Instant::now();
    let dir = TempDir::new("chaos");
    let mut broker = Server::nisshi(dir.path());
    broker.start();
    let mut mongo = Server::secantus(dir.path());
    mongo.start();
    let uri = format!("mongodb://{}/?directConnection=true", mongo.address());
    let s = Setup::on(&plan.writer_bin, &broker.address(), &uri).await;
    let (records, expected) = workload(plan.messages, plan.devices);
    let unique_valid = expected.unique_valid();
    eprintln!(
        "chaos: {} records ({} valid, {} invalid, {} redelivered; {unique_valid} unique valid)",
        records.len(),
        expected.valid_records,
        expected.invalid,
        expected.redelivered,
    );
    // Produced in slices, one before each fault, so every fault hits batches in flight.
    let phases = plan.kills + plan.joins + 4;
    let mut slices = records.chunks(records.len().div_ceil(phases));
    let mut run = Run {
        s,
        mongo,
        broker,
        recoveries: Vec::new(),
        stalls: 0,
    };
    macro_rules! next_slice {
        () => {
            if let Some(slice) = slices.next() {
                produce(&run.s.bootstrap, &run.s.topic, slice).await;
            }
        };
    }

    // The first writer cannot write dead letters (the broker creates missing topics,
    // so "unwritable" is a name it refuses): it stores what it can and commits nothing
    // past an invalid message; its successor has a working dead-letter topic.
    let mut a = writer_with(
        &run.s,
        plan,
        "a0",
        &[("KAFKA_DLQ_TOPIC", "not a valid topic!")],
    );
    a.wait_ready().await;
    next_slice!();
    a.wait_metric("DeadLetterFailures", 1.0).await;

    for k in 0..plan.kills {
        next_slice!();
        let from = run.s.count().await;
        a.sigkill();
        let t = Instant::now();
        a = writer(&run.s, plan, &format!("a{}", k + 1));
        let fault = if k == 0 {
            "writer SIGKILL (and the DLQ writable again)"
        } else {
            "writer SIGKILL"
        };
        run.recovered(fault, from, t, unique_valid).await;
    }
    for j in 0..plan.joins {
        let mut b = writer(&run.s, plan, &format!("b{j}"));
        assigned(&b).await;
        next_slice!();
        let from = run.s.count().await;
        assert!(b.sigterm().success(), "{}", b.log_text());
        let t = Instant::now();
        run.recovered("second writer left", from, t, unique_valid)
            .await;
    }

    // MongoDB hangs past the grace while a rebalance revokes every partition.
    let mut b = writer(&run.s, plan, "b-before-stop");
    assigned(&b).await;
    let cancelled = a.log_count("worker cancelled");
    let from = run.s.count().await;
    run.mongo.pause();
    next_slice!();
    assert!(b.sigterm().success(), "{}", b.log_text());
    testkit::wait_for(
        "a's workers cancelled at the grace",
        Duration::from_secs(60),
        || async { (a.log_count("worker cancelled") > cancelled).then_some(()) },
    )
    .await;
    run.mongo.resume();
    let t = Instant::now();
    run.recovered(
        "MongoDB SIGSTOP past the grace during a rebalance",
        from,
        t,
        unique_valid,
    )
    .await;

    next_slice!();
    let from = run.s.count().await;
    run.mongo.restart();
    let t = Instant::now();
    run.recovered("MongoDB restart", from, t, unique_valid)
        .await;

    next_slice!();
    let from = run.s.count().await;
    run.broker.restart();
    let t = Instant::now();
    run.recovered("broker restart", from, t, unique_valid).await;
    for slice in slices {
        produce(&run.s.bootstrap, &run.s.topic, slice).await;
    }

    testkit::wait_for(
        "every offset committed",
        Duration::from_secs(600),
        || async {
            let (c, high) = run.s.committed_and_high();
            (c == high).then_some(())
        },
    )
    .await;
    let audit = audit(&run.s, &expected).await;
    let ok = audit.clean() && run.stalls == 0;
    for (fault, s) in &run.recoveries {
        eprintln!("chaos: recovered from {fault} in {s:.2} s");
    }
    let worst = run.recoveries.iter().map(|r| r.1).fold(0.0, f64::max);
    let result = format!(
        "RESULT mode={kind} chaos_ok={} lost={} duplicated={} extra={} dlq_missing={} device_errors={} stalls={} messages={} unique_valid={unique_valid} invalid={} faults={} worst_recovery_s={worst:.2} duration_s={:.0}",
        u8::from(ok),
        audit.lost,
        audit.duplicated,
        audit.extra,
        audit.dlq_missing,
        audit.device_errors,
        run.stalls,
        records.len(),
        expected.invalid,
        run.recoveries.len(),
        started.elapsed().as_secs_f64()
    );
    println!("{result}");
    drop(a);
    Outcome { ok, result }
}

/// Waits until `w` holds partitions (the group rebalanced onto it).
async fn assigned(w: &Writer) {
    testkit::wait_for(
        &format!("{} assigned", w.name),
        Duration::from_secs(60),
        || async { w.last_assigned().filter(|p| !p.is_empty()) },
    )
    .await;
}
