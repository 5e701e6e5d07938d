//! `flywheel review` end to end: a real run reviewed in headless Chromium with real
//! keyboard events (accept, reject with a reason, edit, undo, filter), the journal, then
//! blend, the DPO and label exports and the report; a second reviewer and agreement;
//! and the server's defences (token, Host, path traversal, XSS, CSRF, body size) and
//! its paging over 100,000 records.

#[path = "common/cdp.rs"]
mod cdp;
mod common;

use common::{flywheel, model_file, run, stderr, stdout};
use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::Instant;

/// A running `flywheel review`.
struct Review {
    child: Child,
    port: u16,
    token: String,
    url: String,
}

impl Drop for Review {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_review(run_or_spec: &Path, args: &[&str]) -> Review {
    let mut child = flywheel()
        .arg("review")
        .arg(run_or_spec)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start flywheel review");
    let out = child.stdout.take().unwrap();
    let mut lines = BufReader::new(out).lines();
    let url = loop {
        let l = lines
            .next()
            .expect("review printed its URL")
            .expect("stdout");
        if let Some(u) = l.strip_prefix("open ") {
            break u.trim().to_string();
        }
    };
    // Keep reading stdout so the server never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    let port: u16 = url
        .split("127.0.0.1:")
        .nth(1)
        .unwrap()
        .split('/')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let token = url.split("token=").nth(1).unwrap().to_string();
    Review {
        child,
        port,
        token,
        url,
    }
}

/// One raw HTTP/1.1 request: (status, headers, body).
fn http(
    port: u16,
    method: &str,
    target: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> (u16, String, String) {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    let mut req = format!(
        "{method} {target} HTTP/1.1\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("host")) {
        req.push_str(&format!("Host: 127.0.0.1:{port}\r\n"));
    }
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).unwrap();
    let _ = s.write_all(body);
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf);
    let text = String::from_utf8_lossy(&buf).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (status, head.to_string(), body.to_string())
}

fn lines(p: &Path) -> Vec<Value> {
    std::fs::read_to_string(p)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn json_file(p: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap()
}

/// Text that would run script if it were ever put into the page as markup.
const XSS: &str = "<script>window.__xss=1</script><img src=x onerror=window.__xss=2> [link](javascript:window.__xss=3) <a href=javascript:window.__xss=4>x</a>";

fn spec(dir: &Path) -> PathBuf {
    let text = format!(
        r#"[run]
name = "rv"
seed = 5
out_dir = "{out}"

[teacher]
model = "smollm2-135m-instruct"
max_new_tokens = 24
batch_size = 6

[seeds]
topic = ["tides", "magnets", "{XSS}"]
audience = ["a child", "a student"]

[[task]]
name = "explain"
template = "Explain {{{{topic}}}} to {{{{audience}}}}."

[[judge]]
name = "quality"
model = "smollm2-135m-instruct"
criteria = "The answer is correct and clear."

[filter]
require = []
allow_truncated = true

[review]
reasons = ["wrong", "unsafe", "style"]
"#,
        out = dir.join("runs").display(),
    );
    let p = dir.join("spec.toml");
    std::fs::write(&p, text).unwrap();
    p
}

/// The page's XSS canaries: nothing ran, no element came from record text.
fn assert_no_markup_from_records(b: &mut cdp::Browser) {
    let v = b.eval(
        "JSON.stringify({xss: window.__xss === undefined, imgs: document.querySelectorAll('img').length, \
         scripts: document.scripts.length, js: document.querySelectorAll('a[href^=\"javascript\"]').length})",
    );
    assert_eq!(
        v.as_str().unwrap(),
        r#"{"xss":true,"imgs":0,"scripts":1,"js":0}"#
    );
}

#[test]
fn review_in_chromium_then_blend_export_and_report() {
    model_file("smollm2-135m-instruct");
    let Some(chromium) = cdp::chromium() else {
        let _ = writeln!(
            std::io::stderr(),
            "SKIPPED the review browser test: no chromium on PATH (apt-get install chromium; .ci/run installs it and sets FLYWHEEL_REQUIRE_CHROMIUM=1)"
        );
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let spec = spec(tmp.path());
    let o = run(flywheel().args(["run", "-q", "--device", "cpu"]).arg(&spec));
    assert!(o.status.success(), "{}", stderr(&o));
    let rd = tmp.path().join("runs/rv");
    let audited = lines(&rd.join("audited.jsonl"));
    assert_eq!(audited.len(), 6, "every record should reach review");
    let xss_ids: Vec<&str> = audited
        .iter()
        .filter(|r| r.to_string().contains("__xss"))
        .map(|r| r["id"].as_str().unwrap())
        .collect();
    assert_eq!(xss_ids.len(), 2, "the XSS seed is in two records");

    let rv = start_review(&spec, &["--reviewer", "ann", "--order", "file"]);
    let mut b = cdp::Browser::launch(chromium);
    b.goto(&rv.url);
    b.wait(
        "document.body.dataset.state === 'ready'",
        "the first record",
    );
    let ids: Vec<String> = audited
        .iter()
        .map(|r| r["id"].as_str().unwrap().to_string())
        .collect();
    let shown = |b: &mut cdp::Browser| {
        b.eval("window.__review.item.id")
            .as_str()
            .unwrap()
            .to_string()
    };
    assert_eq!(
        shown(&mut b),
        ids[0],
        "file order starts at the first record"
    );
    assert_eq!(
        b.eval("document.getElementById('progress').textContent"),
        json!("0 / 6 reviewed")
    );
    assert_no_markup_from_records(&mut b);

    // a: accept, and the next record shows.
    b.key("a");
    b.wait(
        "window.__review.pos === 1 && document.body.dataset.state === 'ready'",
        "record 2 after accept",
    );
    // r, then 2: reject as "unsafe".
    b.key("r");
    b.wait(
        "document.body.dataset.state === 'reason'",
        "the reasons panel",
    );
    b.key("2");
    b.wait(
        "window.__review.pos === 2 && document.body.dataset.state === 'ready'",
        "record 3 after reject",
    );
    // e: edit in place, type, Ctrl+Enter saves.
    let original = audited[2]["messages"].as_array().unwrap().last().unwrap()["content"]
        .as_str()
        .unwrap()
        .to_string();
    b.key("e");
    b.wait(
        "document.body.dataset.state === 'editing' && document.activeElement.id === 'editor'",
        "the editor",
    );
    b.type_text(" Fixed by ann.");
    b.key_with("Enter", 2);
    b.wait(
        "window.__review.pos === 3 && document.body.dataset.state === 'ready'",
        "record 4 after edit",
    );
    // a then u: the accept is taken back and the page goes back to that record.
    b.key("a");
    b.wait(
        "window.__review.pos === 4 && document.body.dataset.state === 'ready'",
        "record 5",
    );
    b.key("u");
    b.wait(
        &format!(
            "window.__review.item.id === '{}' && document.body.dataset.state === 'ready'",
            ids[3]
        ),
        "the undone record",
    );
    assert_eq!(
        b.eval("document.getElementById('progress').textContent"),
        json!("3 / 6 reviewed")
    );
    // k and j move without deciding.
    b.key("k");
    b.wait(
        "window.__review.pos === 2 && document.body.dataset.state === 'ready'",
        "previous",
    );
    b.key("j");
    b.wait(
        "window.__review.pos === 3 && document.body.dataset.state === 'ready'",
        "next",
    );
    // Every record, walked with k then j: the XSS text is shown as text.
    while b.eval("window.__review.pos").as_u64().unwrap() > 0 {
        let p = b.eval("window.__review.pos").as_u64().unwrap();
        b.key("k");
        b.wait(
            &format!(
                "window.__review.pos === {} && document.body.dataset.state === 'ready'",
                p - 1
            ),
            "k",
        );
    }
    for i in 0..6 {
        if i > 0 {
            b.key("j");
            b.wait(
                &format!("window.__review.pos === {i} && document.body.dataset.state === 'ready'"),
                "j",
            );
        }
        assert_no_markup_from_records(&mut b);
        if xss_ids.contains(&shown(&mut b).as_str()) {
            let text = b
                .eval("document.getElementById('conv').textContent")
                .as_str()
                .unwrap()
                .to_string();
            assert!(
                text.contains("<script>window.__xss=1</script>"),
                "the payload is shown as text: {text}"
            );
        }
    }
    // Key press to the next record on screen, measured by the page itself.
    let mut lat: Vec<f64> = serde_json::from_value(b.eval("window.__review.latencies")).unwrap();
    // A reload resumes at the first record not yet reviewed (the undone one).
    b.goto(&rv.url);
    b.wait("document.body.dataset.state === 'ready'", "resume");
    assert_eq!(shown(&mut b), ids[3]);
    // /: filter to what is not yet reviewed.
    b.key("/");
    b.wait(
        "document.body.dataset.state === 'filter' && document.activeElement.id === 'filter'",
        "the filter box",
    );
    b.type_text("unreviewed");
    b.key("Enter");
    b.wait(
        "document.body.dataset.state === 'ready' && window.__review.q === 'unreviewed'",
        "filtered",
    );
    assert_eq!(b.eval("window.__review.count"), json!(3));
    // Accepting under "unreviewed" keeps the position: the queue shrank under it.
    b.key("a");
    b.wait(
        "document.body.dataset.state === 'ready' && window.__review.count === 2",
        "queue shrinks",
    );
    // A filter that matches nothing says so.
    b.key("/");
    b.wait(
        "document.body.dataset.state === 'filter' && document.activeElement.id === 'filter'",
        "filter box",
    );
    for _ in 0.."unreviewed".len() {
        b.key("Backspace");
    }
    b.type_text("task:nosuchtask");
    b.key("Enter");
    b.wait("document.body.dataset.state === 'empty'", "no match");
    if let Some(p) = std::env::var_os("FLYWHEEL_REVIEW_SCREENSHOT") {
        b.key("/");
        b.wait(
            "document.body.dataset.state === 'filter' && document.activeElement.id === 'filter'",
            "filter box",
        );
        for _ in 0.."task:nosuchtask".len() {
            b.key("Backspace");
        }
        b.key("Enter");
        b.wait("document.body.dataset.state === 'ready'", "all");
        b.screenshot(Path::new(&p));
    }
    lat.extend(serde_json::from_value::<Vec<f64>>(b.eval("window.__review.latencies")).unwrap());
    let mut sorted = lat.clone();
    sorted.sort_by(f64::total_cmp);
    let _ = writeln!(
        std::io::stderr(),
        "review page latency, key press to next record shown: median {:.1} ms, max {:.1} ms over {} actions (accept 1 key, reject 2 keys, edit e + text + Ctrl+Enter)",
        sorted[sorted.len() / 2],
        sorted[sorted.len() - 1],
        sorted.len()
    );

    // The journal: accept, reject(unsafe), edit, accept, undo, accept, by ann.
    let log = lines(&rd.join("review.jsonl"));
    let decisions: Vec<&str> = log
        .iter()
        .map(|a| a["decision"].as_str().unwrap())
        .collect();
    assert_eq!(
        decisions,
        ["accept", "reject", "edit", "accept", "undo", "accept"]
    );
    assert!(log
        .iter()
        .all(|a| a["reviewer"] == "ann" && a["content_sha256"].as_str().unwrap().len() == 64));
    assert_eq!(log[1]["id"], json!(ids[1]));
    assert_eq!(log[1]["reason"], "unsafe");
    assert_eq!(log[2]["edited"], json!(format!("{original} Fixed by ann.")));
    assert_eq!(log[4]["undoes"], log[3]["action"]);
    drop(b);
    drop(rv);

    // A second reviewer, through the API: rejects what ann accepted.
    let rv2 = start_review(
        &rd,
        &["--reviewer", "bob", "--spec", spec.to_str().unwrap()],
    );
    let tok = [
        ("X-Flywheel-Token", rv2.token.as_str()),
        ("Content-Type", "application/json"),
    ];
    let sha0 = {
        let (s, _, body) = http(
            rv2.port,
            "GET",
            &format!("/api/item?order=file&id={}", ids[0]),
            &tok,
            b"",
        );
        assert_eq!(s, 200, "{body}");
        let v: Value = serde_json::from_str(&body).unwrap();
        v["item"]["sha"].as_str().unwrap().to_string()
    };
    let body =
        json!({"id": ids[0], "sha": sha0, "decision": "reject", "reason": "wrong"}).to_string();
    let (s, _, b2) = http(rv2.port, "POST", "/api/decide", &tok, body.as_bytes());
    assert_eq!(s, 200, "{b2}");
    let (s, _, b2) = http(
        rv2.port,
        "GET",
        "/api/item?order=file&q=disagreed&pos=0",
        &tok,
        b"",
    );
    assert_eq!(s, 200);
    let v: Value = serde_json::from_str(&b2).unwrap();
    assert_eq!(v["count"], 1, "one record has differing decisions: {v}");
    assert_eq!(v["item"]["id"], json!(ids[0]));
    drop(rv2);

    // blend (through `flywheel run`: the review is an input, so only blend and report rerun).
    let o = run(flywheel().args(["run", "--device", "cpu"]).arg(&spec));
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o) + &stderr(&o);
    assert!(
        out.contains("generate") && out.contains("up to date"),
        "{out}"
    );
    let ds = lines(&rd.join("dataset.jsonl"));
    let by_id = |id: &str| ds.iter().find(|r| r["id"] == id);
    // Bob's later rejection is the last word on record 0; ann's "unsafe" on record 1.
    assert!(by_id(&ids[0]).is_none());
    assert!(by_id(&ids[1]).is_none());
    let rejected = lines(&rd.join("review_rejected.jsonl"));
    let reasons: Vec<&str> = rejected
        .iter()
        .map(|r| r["decision"]["reason"].as_str().unwrap())
        .collect();
    assert_eq!(rejected.len(), 2);
    assert!(
        reasons.contains(&"review:rejected:unsafe") && reasons.contains(&"review:rejected:wrong"),
        "{reasons:?}"
    );
    let edited = by_id(&ids[2]).expect("the edited record is in the dataset");
    let last = edited["messages"].as_array().unwrap().last().unwrap();
    assert_eq!(last["content"], json!(format!("{original} Fixed by ann.")));
    let p = &edited["provenance"]["review"];
    assert_eq!(p["decision"], "edited");
    assert_eq!(p["reviewer"], "ann");
    assert_eq!(p["original_sha256"], log[2]["content_sha256"]);
    assert_eq!(
        by_id(&ids[3]).unwrap()["provenance"]["review"]["decision"],
        "accepted"
    );
    assert!(
        by_id(&ids[4]).unwrap()["provenance"]
            .get("review")
            .is_none(),
        "unreviewed records pass unmarked"
    );
    assert_eq!(ds.len(), 4);

    // DPO: the edit is a pair, edited chosen over original.
    let dpo = tmp.path().join("dpo.jsonl");
    let o = run(flywheel()
        .args(["export", "--format", "dpo", "--output"])
        .arg(&dpo)
        .arg(&rd));
    assert!(o.status.success(), "{}", stderr(&o));
    let pairs = lines(&dpo);
    let pair = pairs
        .iter()
        .find(|p| p["source"] == "review:edit")
        .expect("a pair from the edit");
    assert_eq!(
        pair["chosen"][0]["content"],
        json!(format!("{original} Fixed by ann."))
    );
    assert_eq!(pair["rejected"][0]["content"], json!(original));
    assert_eq!(
        pair["prompt"].as_array().unwrap().last().unwrap()["role"],
        "user"
    );
    // Labels: one row per reviewed record.
    let labels = tmp.path().join("labels.jsonl");
    let o = run(flywheel()
        .args(["export", "--format", "labels", "--output"])
        .arg(&labels)
        .arg(&rd));
    assert!(o.status.success(), "{}", stderr(&o));
    let rows = lines(&labels);
    assert_eq!(
        rows.len(),
        4,
        "records 0, 1, 2 and the one accepted under the filter"
    );
    let row = |id: &str| rows.iter().find(|r| r["id"] == id).unwrap();
    assert_eq!(row(&ids[0])["label"], "reject");
    assert_eq!(row(&ids[0])["reviewers"].as_array().unwrap().len(), 2);
    assert_eq!(row(&ids[1])["reason"], "unsafe");
    assert_eq!(row(&ids[2])["label"], "edit");
    assert!(row(&ids[2])["judge_score"].is_number());

    // The report's review section.
    let rep = json_file(&rd.join("report.json"));
    let r = &rep["review"];
    assert_eq!(r["candidates"], 6);
    assert_eq!(r["reviewed"], 4);
    assert_eq!(r["disagreed"], 1);
    assert_eq!(r["agreement"][0]["both"], 1);
    assert!(r["judge"]["auroc"].is_number(), "{r}");
    assert!(rep["losses"]
        .as_array()
        .unwrap()
        .iter()
        .any(|l| l["stage"] == "review"));
    let html = std::fs::read_to_string(rd.join("report.html")).unwrap();
    assert!(html.contains("Human review"));
    let mut b = cdp::Browser::launch(chromium);
    b.goto(&format!("file://{}", rd.join("report.html").display()));
    b.wait(
        "document.documentElement.dataset.check",
        "the report's self-check",
    );
    let check = b.eval("document.documentElement.dataset.check");
    assert!(check.as_str().unwrap().starts_with("ok:"), "{check}");
}

/// A run directory with `n` hand-made candidates (no model): record 0's answer is the XSS
/// text; records with odd index are from task "b" and were cut off at max_new_tokens.
fn handmade_run(dir: &Path, n: usize) -> PathBuf {
    let rd = dir.join("runs/big");
    std::fs::create_dir_all(&rd).unwrap();
    let mut f = std::io::BufWriter::new(std::fs::File::create(rd.join("audited.jsonl")).unwrap());
    for i in 0..n {
        let answer = if i == 0 {
            XSS.to_string()
        } else {
            format!("answer number {i}")
        };
        let r = json!({
            "id": format!("r{i:06}"),
            "messages": [{"role": "user", "content": format!("question {i}")}, {"role": "assistant", "content": answer}],
            "meta": {"task": if i % 2 == 0 { "a" } else { "b" }},
            "provenance": {"finish_reason": if i % 2 == 0 { "eos" } else { "length" }},
            "scores": {"judge_combined": {"score": (i % 1000) as f64 / 1000.0}},
        });
        writeln!(f, "{r}").unwrap();
    }
    f.flush().unwrap();
    rd
}

#[test]
fn review_server_refuses_what_it_must_and_pages_100k_records() {
    let tmp = tempfile::tempdir().unwrap();
    let rd = handmade_run(tmp.path(), 100_000);
    let t0 = Instant::now();
    let rv = start_review(&rd, &["--reviewer", "eve", "--order", "file"]);
    let startup = t0.elapsed();
    let port = rv.port;
    let tok = rv.token.clone();
    let auth = [("X-Flywheel-Token", tok.as_str())];
    let post = [
        ("X-Flywheel-Token", tok.as_str()),
        ("Content-Type", "application/json"),
    ];

    // Token: every route, the page and the API, refuses a request without the right one.
    for target in [
        "/",
        "/api/state",
        "/api/item?pos=0",
        "/?token=wrong",
        "/api/item?pos=0&token=0000",
    ] {
        let (s, _, body) = http(port, "GET", target, &[], b"");
        assert_eq!(s, 403, "{target}: {body}");
        assert!(!body.contains("answer number"), "{target} leaked a record");
    }
    let (s, _, _) = http(
        port,
        "GET",
        "/api/state",
        &[("X-Flywheel-Token", "nope")],
        b"",
    );
    assert_eq!(s, 403);
    let (s, _, _) = http(
        port,
        "POST",
        "/api/decide",
        &[("Content-Type", "application/json")],
        json!({"id": "r000001", "decision": "accept"})
            .to_string()
            .as_bytes(),
    );
    assert_eq!(s, 403);
    assert!(
        !rd.join("review.jsonl").exists(),
        "a refused request wrote nothing"
    );
    // Host: another site's name resolving to 127.0.0.1 (DNS rebinding) is refused.
    let (s, _, _) = http(
        port,
        "GET",
        &format!("/api/state?token={tok}"),
        &[("Host", "evil.example")],
        b"",
    );
    assert_eq!(s, 403);
    // The page: loads with the token, under a CSP that forbids anything external.
    let (s, head, page) = http(port, "GET", &format!("/?token={tok}"), &[], b"");
    assert_eq!(s, 200);
    let csp = head
        .lines()
        .find(|l| {
            l.to_ascii_lowercase()
                .starts_with("content-security-policy")
        })
        .expect("a CSP");
    assert!(
        csp.contains("default-src 'none'") && csp.contains("connect-src 'self'"),
        "{csp}"
    );
    assert!(
        !page.contains("http://") && !page.contains("https://") && !page.contains("//cdn"),
        "the page loads nothing external"
    );

    // Path traversal: no route reads a file by a name from the request.
    let before: Vec<_> = std::fs::read_dir(&rd)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    for target in [
        "/../../../../etc/passwd".to_string(),
        "/%2e%2e/%2e%2e/%2e%2e/etc/passwd".to_string(),
        "/api/../../../../etc/passwd".to_string(),
        "/api/item?id=../../../../etc/passwd".to_string(),
        "/api/item?id=%2e%2e%2f%2e%2e%2fmanifest.json".to_string(),
        "/audited.jsonl".to_string(),
        "/review.jsonl".to_string(),
        "/api/item?pos=0&q=task:../../etc".to_string(),
    ] {
        let (s, _, body) = http(port, "GET", &target, &auth, b"");
        assert!(
            s == 404 || (s == 200 && target.contains("q=")),
            "{target}: {s}"
        );
        assert!(
            !body.contains("root:") && !body.contains("answer number 1\""),
            "{target}: {body}"
        );
    }
    for id in ["../../../../tmp/evil", "/etc/passwd", "r000001/../r000002"] {
        let (s, _, _) = http(
            port,
            "POST",
            "/api/decide",
            &post,
            json!({"id": id, "sha": "x", "decision": "accept"})
                .to_string()
                .as_bytes(),
        );
        assert_eq!(s, 404, "{id}");
    }
    let after: Vec<_> = std::fs::read_dir(&rd)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(before, after, "nothing was written in the run directory");
    assert!(!Path::new("/tmp/evil").exists());

    // CSRF: a form post (not JSON) is refused; so are an oversized body, a bad reason, a
    // stale content hash.
    let (s, _, _) = http(
        port,
        "POST",
        "/api/decide",
        &[
            ("X-Flywheel-Token", tok.as_str()),
            ("Content-Type", "text/plain"),
        ],
        b"{}",
    );
    assert_eq!(s, 415);
    let huge = vec![b'x'; 2 << 20];
    let (s, _, _) = http(port, "POST", "/api/decide", &post, &huge);
    assert!(s == 413 || s == 0, "{s}");
    let (_, _, item) = http(port, "GET", "/api/item?order=file&pos=0", &auth, b"");
    let item: Value = serde_json::from_str(&item).unwrap();
    let sha = item["item"]["sha"].as_str().unwrap().to_string();
    for (body, want) in [
        (
            json!({"id": "r000000", "sha": sha, "decision": "reject", "reason": "not-a-reason"}),
            400,
        ),
        (
            json!({"id": "r000000", "sha": "0".repeat(64), "decision": "accept"}),
            409,
        ),
        (
            json!({"id": "r000000", "sha": sha, "decision": "edit", "edited": XSS}),
            400,
        ),
        (
            json!({"id": "r000000", "sha": sha, "decision": "maybe"}),
            400,
        ),
    ] {
        let (s, _, b) = http(
            port,
            "POST",
            "/api/decide",
            &post,
            body.to_string().as_bytes(),
        );
        assert_eq!(s, want, "{body}: {b}");
    }
    assert!(
        !rd.join("review.jsonl").exists(),
        "refused decisions wrote nothing"
    );

    // 100,000 records: each page view is one record, however many there are.
    let mut times = Vec::new();
    let mut biggest = 0;
    for (i, q) in [
        (0usize, ""),
        (99_999, ""),
        (50_000, "flag:truncated"),
        (10, "task:a score:0.2-0.3"),
        (0, "unreviewed"),
    ]
    .into_iter()
    .cycle()
    .take(25)
    .enumerate()
    .map(|(k, (p, q))| ((p + k) % 1000, q))
    {
        let t = Instant::now();
        let (s, _, body) = http(
            port,
            "GET",
            &format!("/api/item?order=score&pos={i}&q={}", q.replace(' ', "+")),
            &auth,
            b"",
        );
        times.push(t.elapsed().as_secs_f64() * 1e3);
        assert_eq!(s, 200, "{body}");
        biggest = biggest.max(body.len());
        let v: Value = serde_json::from_str(&body).unwrap();
        if q == "flag:truncated" {
            assert_eq!(v["count"], 50_000);
            assert!(v["item"]["flags"]
                .as_array()
                .unwrap()
                .contains(&json!("truncated")));
        }
        if q.starts_with("task:a") {
            let sc = v["item"]["score"].as_f64().unwrap();
            assert!((0.2..=0.3).contains(&sc) && v["item"]["task"] == "a", "{v}");
        }
    }
    assert!(
        biggest < 16 * 1024,
        "an item response is one record, not the queue ({biggest} bytes)"
    );
    // Lowest judge score first.
    let (_, _, first) = http(port, "GET", "/api/item?order=score&pos=0", &auth, b"");
    let first: Value = serde_json::from_str(&first).unwrap();
    assert_eq!(first["item"]["score"], 0.0);
    times.sort_by(f64::total_cmp);
    let _ = writeln!(
        std::io::stderr(),
        "review over 100,000 records: server ready in {:.2} s; /api/item median {:.1} ms, max {:.1} ms (filtered and sorted queues, one record per response, {} bytes at most)",
        startup.as_secs_f64(),
        times[times.len() / 2],
        times[times.len() - 1],
        biggest
    );

    // The XSS record in the browser: shown as text.
    if let Some(chromium) = cdp::chromium() {
        let mut b = cdp::Browser::launch(chromium);
        b.goto(&rv.url);
        b.wait(
            "document.body.dataset.state === 'ready'",
            "the first record",
        );
        assert_eq!(b.eval("window.__review.item.id"), json!("r000000"));
        assert_no_markup_from_records(&mut b);
        let text = b.eval("document.getElementById('target').textContent");
        assert_eq!(text, json!(XSS));
        // Edit it into more markup: saved as text, still shown as text.
        b.key("e");
        b.wait("document.body.dataset.state === 'editing'", "editor");
        b.type_text("<img src=y onerror=window.__xss=9>");
        b.key_with("Enter", 2);
        b.wait(
            "window.__review.pos === 1 && document.body.dataset.state === 'ready'",
            "saved",
        );
        b.key("k");
        b.wait(
            "window.__review.pos === 0 && document.body.dataset.state === 'ready'",
            "back",
        );
        assert_no_markup_from_records(&mut b);
        let log = lines(&rd.join("review.jsonl"));
        assert_eq!(log.len(), 1);
        assert_eq!(
            log[0]["edited"],
            json!(format!("{XSS}<img src=y onerror=window.__xss=9>"))
        );
    } else {
        let _ = writeln!(
            std::io::stderr(),
            "SKIPPED the browser part of the review security test: no chromium on PATH"
        );
    }
}
