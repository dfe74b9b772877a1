//! `bridgectl console` in a real browser (headless Chromium over chromedriver), against
//! the local stack: the flow shows what the stack holds, the dead-letter filter, the
//! dry run and the redrive that sends each record once, and the guard beyond loopback.

use std::time::Duration;

use e2e_tests::browser::Browser;
use e2e_tests::console_proc::{Console, raw_get};
use e2e_tests::pipeline::Pipeline;
use fantoccini::Locator;
use serde_json::Value;
use testkit::{StackEnv, kafka};

const BIN: &str = env!("CARGO_BIN_EXE_bridgectl-under-test");

/// The sample replay through the pipeline: (documents stored, dead letters).
async fn replayed(p: &Pipeline) -> (u64, i64) {
    let sent = p.replay_sample("events/iot/devices-20-seed-1.jsonl", Some(5));
    p.bridgectl(&["esm", "--until-empty", "--wait-time", "1", "--json"], &[]);
    let (docs, dead) = (
        sent["unique_keys"].as_u64().unwrap(),
        sent["invalid"].as_i64().unwrap(),
    );
    p.settled(docs, dead).await;
    (docs, dead)
}

fn high(p: &Pipeline, topic_var: &str) -> i64 {
    kafka::committed_and_high(
        p.var("KAFKA_BOOTSTRAP_SERVERS"),
        p.var("KAFKA_GROUP_ID"),
        p.var(topic_var),
    )
    .1
}

#[tokio::test(flavor = "multi_thread")]
async fn the_console_shows_the_flow_filters_dead_letters_and_redrives_each_once() {
    let p = Pipeline::new(BIN, StackEnv::get().kafka_bootstrap(), 5).await;
    let _writer = p.start_writer();
    let (docs, _) = replayed(&p).await;
    let console = p.console();
    let b = Browser::start().await;

    // Flow: the counts the stack really holds.
    b.client.goto(&console.page("/")).await.unwrap();
    let figure = |stage: &str, name: &str| format!("#stage-{stage} dd[data-figure=\"{name}\"]");
    let want_docs = docs.to_string();
    b.wait_text(
        &figure("mongo", "documents"),
        Duration::from_secs(30),
        |t| t == want_docs,
    )
    .await;
    assert_eq!(b.text(&figure("mongo", "devices")).await, "20");
    let dead = high(&p, "KAFKA_DLQ_TOPIC");
    assert_eq!(
        b.text(&figure("kafka-dlq", "records")).await,
        dead.to_string()
    );
    let topic_end = high(&p, "KAFKA_TOPIC");
    assert_eq!(
        b.text(&figure("topic", "records (high watermarks)")).await,
        topic_end.to_string()
    );
    assert_eq!(b.text(&figure("writer", "lag (messages)")).await, "0");
    // Dead letters arrived within 5 minutes: the box is red, as the alarm would be.
    let level = b
        .client
        .find(Locator::Css("#stage-kafka-dlq"))
        .await
        .unwrap()
        .attr("data-level")
        .await
        .unwrap();
    assert_eq!(level.as_deref(), Some("red"));

    // Dead letters filtered by reason: only matching records, as many as the topic holds.
    let records = kafka::read_n(p.var("KAFKA_DLQ_TOPIC"), dead as usize).await;
    let reason_of = |m: &rdkafka::message::OwnedMessage| {
        testkit::kafka::header(m, telemetry::envelope::header::DLQ_REASON).unwrap_or_default()
    };
    let finite: Vec<_> = records
        .iter()
        .filter(|m| reason_of(m).to_lowercase().contains("finite number"))
        .collect();
    assert!(!finite.is_empty(), "the replay holds non-finite readings");
    b.client.goto(&console.page("/dead-letters")).await.unwrap();
    b.client
        .find(Locator::Css("form.filters input[name=reason]"))
        .await
        .unwrap()
        .send_keys("Finite Number")
        .await
        .unwrap();
    b.client
        .find(Locator::Css("form.filters button[type=submit]"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    b.wait_text("#matched", Duration::from_secs(30), |t| {
        t == finite.len().to_string()
    })
    .await;
    let shown = b
        .client
        .find_all(Locator::Css("article.letter"))
        .await
        .unwrap();
    assert_eq!(shown.len(), finite.len());
    for a in &shown {
        let r = a.attr("data-reason").await.unwrap().unwrap_or_default();
        assert!(r.to_lowercase().contains("finite number"), "{r}");
    }
    let violations = b.text("article.letter table.violations td").await;
    assert!(violations.contains("/readings/"), "{violations}");

    // Dry run: lists them, sends nothing.
    b.client
        .find(Locator::LinkText(&format!(
            "Redrive these {} (dry run first)",
            finite.len()
        )))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    b.wait_text("#would-send", Duration::from_secs(60), |t| {
        t == finite.len().to_string()
    })
    .await;
    let listed = b
        .client
        .find_all(Locator::Css("ol.would li"))
        .await
        .unwrap();
    assert_eq!(listed.len(), finite.len());
    assert_eq!(
        high(&p, "KAFKA_TOPIC"),
        topic_end,
        "a dry run sends nothing"
    );
    let dry_run_page = b.client.current_url().await.unwrap();
    let csrf = csrf_token(&b).await;
    assert!(!csrf.is_empty());

    // Confirmed: each sent once.
    b.client
        .find(Locator::Css("form.confirm input[name=confirm]"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    b.client
        .find(Locator::Css("form.confirm button[type=submit]"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    b.wait_text("#sent", Duration::from_secs(60), |t| {
        t == finite.len().to_string()
    })
    .await;
    assert_eq!(high(&p, "KAFKA_TOPIC"), topic_end + finite.len() as i64);

    // The same confirmed redrive again (the stale dry-run page's form): nothing is sent.
    b.client.goto(dry_run_page.as_str()).await.unwrap();
    b.wait_text("#would-send", Duration::from_secs(60), |t| t == "0")
        .await;
    let again = b
        .client
        .execute(
            r#"const f = new FormData(); f.set('csrf', arguments[0]); f.set('confirm', 'yes');
               return fetch(location.href, {method: 'POST', body: new URLSearchParams(f)})
                 .then(r => r.text()).then(t => new DOMParser().parseFromString(t, 'text/html').querySelector('#sent').textContent);"#,
            vec![Value::String(csrf)],
        )
        .await
        .unwrap();
    assert_eq!(
        again,
        Value::String("0".into()),
        "a second confirmed redrive sends none"
    );
    assert_eq!(high(&p, "KAFKA_TOPIC"), topic_end + finite.len() as i64);
    b.close().await;
}

/// The CSRF token of the page's confirmation form.
async fn csrf_token(b: &Browser) -> String {
    b.client
        .execute(
            "const i = document.querySelector('form.confirm input[name=csrf]'); return i ? i.value : '';",
            vec![],
        )
        .await
        .unwrap()
        .as_str()
        .unwrap()
        .to_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn beyond_loopback_every_request_needs_the_token() {
    let p = Pipeline::new(BIN, StackEnv::get().kafka_bootstrap(), 5).await;
    // Without a token, a non-loopback address is refused at start.
    let out = std::process::Command::new(BIN)
        .args(["console", "--listen", "0.0.0.0:0"])
        .env_clear()
        .envs(&p.env)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--token"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let token = "a-console-token-for-tests";
    let console = Console::start(BIN, &p.env, &["--listen", "0.0.0.0:0", "--token", token]);
    let port = console.port();
    let host = format!("127.0.0.1:{port}");
    for path in [
        "/",
        "/events",
        "/api/flow",
        "/dead-letters",
        "/devices?id=x",
    ] {
        let (status, _) = raw_get(port, path, &[("Host", &host)]);
        assert_eq!(status, 401, "{path} without the token");
    }
    let (status, _) = raw_get(
        port,
        "/api/flow",
        &[
            ("Host", &host),
            ("Authorization", &format!("Bearer {token}")),
        ],
    );
    assert_eq!(status, 200);
    let (status, _) = raw_get(
        port,
        "/api/flow",
        &[
            ("Host", &host),
            ("Authorization", "Bearer wrong-token-wrong-token"),
        ],
    );
    assert_eq!(status, 401);
    // DNS rebinding: the right token under a foreign Host name is still refused.
    let (status, _) = raw_get(
        port,
        "/",
        &[
            ("Host", "evil.example"),
            ("Authorization", &format!("Bearer {token}")),
        ],
    );
    assert_eq!(status, 403);

    // In a browser: the sign-in form, then the console; the live stream carries the cookie.
    let b = Browser::start().await;
    b.client
        .goto(&format!("http://127.0.0.1:{port}/"))
        .await
        .unwrap();
    let field = b
        .client
        .find(Locator::Css("input[name=token]"))
        .await
        .unwrap();
    field.send_keys(token).await.unwrap();
    b.client
        .find(Locator::Css("form button[type=submit]"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    b.wait_text("#stage-mongo h2", Duration::from_secs(30), |t| {
        t.starts_with("MongoDB")
    })
    .await;
    // A read-only console offers no redrive.
    b.client
        .goto(&format!("http://127.0.0.1:{port}/redrive"))
        .await
        .unwrap();
    assert!(b.client.source().await.unwrap().contains("Redrive is off"));
    b.close().await;
}
