//! `flywheel review`'s server: loopback only, one random token checked on every request
//! (the page and the API alike), and a fixed set of routes. No route reads or writes a
//! file by a name from the request: records are found by id in the index, and the only
//! file written is the run's `review.jsonl`.
//!
//! The page (`page.html`) is embedded in the binary and loads nothing else: no script,
//! font or style from the network, and its Content-Security-Policy forbids it.

use super::log::{append, check_reviewer, Action, Decision, Log};
use super::queue::{Filter, Index, Order, ReviewState};
use crate::error::{Error, Result};
use crate::store::RunDir;
use serde_json::{json, Value};
use std::io::Read;
use std::path::PathBuf;

/// The page, with `__NONCE__` replaced per server.
const PAGE: &str = include_str!("page.html");

/// The largest request body read (an edited response).
const MAX_BODY: u64 = 1 << 20;

/// What a review session serves.
pub struct Options {
    pub run_dir: PathBuf,
    pub reviewer: String,
    pub reasons: Vec<String>,
    pub sample: Option<usize>,
    pub seed: u64,
    /// 0: a free port.
    pub port: u16,
    /// The queue order the page starts with.
    pub order: Order,
}

/// A running review server (before `serve` is called it only holds the socket).
pub struct Server {
    http: tiny_http::Server,
    state: State,
    pub port: u16,
    pub token: String,
}

/// What a cached queue was computed from: order, filter text, log version, index size.
type QueueKey = (Order, String, u64, usize);

struct State {
    dir: RunDir,
    index: Index,
    log: Log,
    reviewer: String,
    reasons: Vec<String>,
    token: String,
    nonce: String,
    hosts: [String; 2],
    sample: Option<usize>,
    seed: u64,
    order: Order,
    /// (order, filter text, log version, index length) → the queue, so paging through
    /// 100,000 records does not filter and sort them on every key press.
    cache: Option<(QueueKey, Vec<usize>)>,
}

fn random_hex(bytes: usize) -> String {
    (0..bytes)
        .map(|_| format!("{:02x}", rand::random::<u8>()))
        .collect()
}

impl Server {
    /// Indexes the run's candidates and binds 127.0.0.1.
    pub fn bind(o: Options) -> Result<Server> {
        check_reviewer(&o.reviewer).map_err(Error::Review)?;
        let dir = RunDir::new(&o.run_dir);
        let input = dir.audited();
        if !input.exists() {
            return Err(Error::MissingInput {
                path: input,
                run_first: "flywheel run SPEC".into(),
                or: " (review shows the audit's survivors, the records blend takes)",
            });
        }
        let index = Index::build(&input, &dir.rejected(), o.sample, o.seed)?;
        let log = Log::load(&dir.review())?;
        let http = tiny_http::Server::http(("127.0.0.1", o.port))
            .map_err(|e| Error::Review(format!("cannot listen on 127.0.0.1:{}: {e}", o.port)))?;
        let port = http
            .server_addr()
            .to_ip()
            .map(|a| a.port())
            .ok_or_else(|| Error::Internal("the server has no IP address".into()))?;
        let token = random_hex(24);
        Ok(Server {
            http,
            port,
            token: token.clone(),
            state: State {
                dir,
                index,
                log,
                reviewer: o.reviewer,
                reasons: o.reasons,
                token,
                nonce: random_hex(16),
                hosts: [format!("127.0.0.1:{port}"), format!("localhost:{port}")],
                sample: o.sample,
                seed: o.seed,
                order: o.order,
                cache: None,
            },
        })
    }

    /// The URL to open (with the token).
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/?token={}", self.port, self.token)
    }

    /// Records in the queue, and those this reviewer has decided.
    pub fn progress(&self) -> (usize, usize) {
        self.state.progress()
    }

    /// Serves until the process is stopped.
    pub fn serve(mut self) -> Result<()> {
        for mut req in self.http.incoming_requests() {
            let resp = self.state.handle(&mut req);
            let _ = req.respond(resp);
        }
        Ok(())
    }
}

type Resp = tiny_http::Response<std::io::Cursor<Vec<u8>>>;

fn header(k: &str, v: &str) -> tiny_http::Header {
    tiny_http::Header::from_bytes(k.as_bytes(), v.as_bytes())
        .unwrap_or_else(|_| tiny_http::Header::from_bytes(&b"X-Invalid"[..], &b"1"[..]).unwrap())
}

fn respond(status: u16, content_type: &str, body: Vec<u8>) -> Resp {
    tiny_http::Response::from_data(body)
        .with_status_code(status)
        .with_header(header("Content-Type", content_type))
        .with_header(header("Cache-Control", "no-store"))
        .with_header(header("X-Content-Type-Options", "nosniff"))
        .with_header(header("Referrer-Policy", "no-referrer"))
        .with_header(header("X-Frame-Options", "DENY"))
}

fn json_resp(status: u16, v: &Value) -> Resp {
    respond(
        status,
        "application/json; charset=utf-8",
        serde_json::to_vec(v).unwrap_or_default(),
    )
}

fn error(status: u16, msg: impl Into<String>) -> Resp {
    json_resp(status, &json!({"error": msg.into()}))
}

/// `a=b&c=d` decoded (`+` is a space).
fn query(q: &str) -> Vec<(String, String)> {
    q.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            let dec = |s: &str| {
                percent_encoding::percent_decode_str(&s.replace('+', " "))
                    .decode_utf8_lossy()
                    .into_owned()
            };
            (dec(k), dec(v))
        })
        .collect()
}

/// Equal without an early exit, so the time taken says nothing about the token.
fn same(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.bytes().zip(b.bytes()).fold(0u8, |d, (x, y)| d | (x ^ y)) == 0
}

impl State {
    fn progress(&self) -> (usize, usize) {
        let states = ReviewState::of(&self.index, &self.log);
        let mut scope = 0;
        let mut done = 0;
        for (i, it) in self.index.items.iter().enumerate() {
            if self.index.in_scope(it) {
                scope += 1;
                done += usize::from(states.reviewed_by(i, &self.reviewer));
            }
        }
        (scope, done)
    }

    fn handle(&mut self, req: &mut tiny_http::Request) -> Resp {
        let url = req.url().to_string();
        let (path, q) = url.split_once('?').unwrap_or((&url, ""));
        let params = query(q);
        let param = |k: &str| {
            params
                .iter()
                .find(|(n, _)| n == k)
                .map(|(_, v)| v.to_string())
        };
        // The Host header: a page on another site that resolves its own name to
        // 127.0.0.1 (DNS rebinding) sends its own name here.
        let host = req
            .headers()
            .iter()
            .find(|h| h.field.equiv("Host"))
            .map(|h| h.value.as_str().to_string())
            .unwrap_or_default();
        if !self.hosts.contains(&host) {
            return error(403, "wrong Host: open the URL flywheel review printed");
        }
        let token = req
            .headers()
            .iter()
            .find(|h| h.field.equiv("X-Flywheel-Token"))
            .map(|h| h.value.as_str().to_string())
            .or_else(|| param("token"))
            .unwrap_or_default();
        if !same(&token, &self.token) {
            return error(
                403,
                "missing or wrong token: open the URL flywheel review printed",
            );
        }
        // A stage rewrote the candidates: index them again (old decisions stay bound to
        // the content they were made on).
        if self.index.is_stale() {
            match Index::build(
                &self.index.path,
                &self.dir.rejected(),
                self.sample,
                self.seed,
            ) {
                Ok(ix) => {
                    self.index = ix;
                    self.cache = None;
                }
                Err(e) => return error(500, e.to_string()),
            }
        }
        if let Err(e) = self.log.refresh(&self.dir.review()) {
            return error(500, e.to_string());
        }
        let method = req.method().as_str().to_string();
        match (method.as_str(), path) {
            ("GET", "/") => self.page(),
            ("GET", "/api/state") => json_resp(200, &self.meta()),
            ("GET", "/api/item") => self.item(
                param("order").as_deref(),
                param("q").as_deref(),
                param("pos").as_deref(),
                param("id").as_deref(),
            ),
            ("POST", "/api/decide") | ("POST", "/api/undo") => {
                let is_json = req.headers().iter().any(|h| {
                    h.field.equiv("Content-Type")
                        && h.value.as_str().starts_with("application/json")
                });
                if !is_json {
                    return error(415, "send application/json");
                }
                if path == "/api/undo" {
                    return self.undo();
                }
                let mut body = Vec::new();
                if req
                    .as_reader()
                    .take(MAX_BODY + 1)
                    .read_to_end(&mut body)
                    .is_err()
                {
                    return error(400, "cannot read the request body");
                }
                if body.len() as u64 > MAX_BODY {
                    return error(413, "the request is larger than 1 MiB");
                }
                match serde_json::from_slice::<Value>(&body) {
                    Ok(v) => self.decide(&v),
                    Err(e) => error(400, format!("the body is not JSON: {e}")),
                }
            }
            _ => error(404, "no such page"),
        }
    }

    fn page(&self) -> Resp {
        let csp = format!(
            "default-src 'none'; script-src 'nonce-{n}'; style-src 'nonce-{n}'; connect-src 'self'; img-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
            n = self.nonce
        );
        respond(
            200,
            "text/html; charset=utf-8",
            PAGE.replace("__NONCE__", &self.nonce).into_bytes(),
        )
        .with_header(header("Content-Security-Policy", &csp))
    }

    fn meta(&self) -> Value {
        let (scope, done) = self.progress();
        json!({
            "run": self.dir.path().file_name().map(|f| f.to_string_lossy().into_owned()),
            "reviewer": self.reviewer,
            "reasons": self.reasons,
            "tasks": self.index.tasks,
            "scope": scope,
            "reviewed": done,
            "total": self.index.items.len(),
            "sample": self.sample,
            "order": self.order.name(),
            "reviewers": self.log.reviewers(),
        })
    }

    fn queue(&mut self, order: Order, q: &str) -> std::result::Result<Vec<usize>, String> {
        let key = (
            order,
            q.to_string(),
            self.log.version,
            self.index.items.len(),
        );
        if let Some((k, v)) = &self.cache {
            if *k == key {
                return Ok(v.clone());
            }
        }
        let filter = Filter::parse(q)?;
        let v = self.index.queue(order, &filter, &self.log, &self.reviewer);
        self.cache = Some((key, v.clone()));
        Ok(v)
    }

    fn item(
        &mut self,
        order: Option<&str>,
        q: Option<&str>,
        pos: Option<&str>,
        id: Option<&str>,
    ) -> Resp {
        let order = match order.map(Order::parse) {
            None => self.order,
            Some(Some(o)) => o,
            Some(None) => return error(400, "order is score, random or file"),
        };
        let q = q.unwrap_or("");
        let queue = match self.queue(order, q) {
            Ok(v) => v,
            Err(e) => return error(400, e),
        };
        let states = ReviewState::of(&self.index, &self.log);
        let mut all_reviewed = false;
        let pos = match (pos, id) {
            (_, Some(id)) => match self.index.by_id.get(id) {
                Some(&i) => queue.iter().position(|&x| x == i).unwrap_or(0),
                None => return error(404, "no record with that id in this run"),
            },
            (Some("resume"), None) => match queue
                .iter()
                .position(|&i| !states.reviewed_by(i, &self.reviewer))
            {
                Some(p) => p,
                None => {
                    all_reviewed = true;
                    0
                }
            },
            (Some(p), None) => match p.parse::<usize>() {
                Ok(p) => p.min(queue.len().saturating_sub(1)),
                Err(_) => return error(400, "pos is a number or resume"),
            },
            (None, None) => 0,
        };
        let (scope, done) = self.progress();
        let mut out = json!({
            "pos": pos, "count": queue.len(), "scope": scope, "reviewed": done,
            "order": order.name(), "q": q, "all_reviewed": all_reviewed, "item": null,
        });
        if let Some(&i) = queue.get(pos) {
            let it = &self.index.items[i];
            let record = match self.index.record(i) {
                Ok(r) => r,
                Err(e) => return error(409, e.to_string()),
            };
            let decided: Vec<Value> = states.per_item[i]
                .iter()
                .map(|a| json!({"reviewer": a.reviewer, "decision": a.decision, "reason": a.reason, "edited": a.edited, "at": a.at}))
                .collect();
            out["item"] = json!({
                "id": it.id, "task": it.task, "score": it.score, "flags": it.flags(),
                "sha": it.sha, "editable": super::editable_text(&record),
                "decisions": decided, "record": record,
            });
        }
        json_resp(200, &out)
    }

    fn decide(&mut self, v: &Value) -> Resp {
        let s = |k: &str| v.get(k).and_then(Value::as_str);
        let Some(id) = s("id") else {
            return error(400, "id is missing");
        };
        let Some(&i) = self.index.by_id.get(id) else {
            return error(404, "no record with that id in this run");
        };
        let it = &self.index.items[i];
        if s("sha") != Some(it.sha.as_str()) {
            return error(
                409,
                "the record changed since it was shown (a stage rewrote it): reload",
            );
        }
        let decision = match s("decision") {
            Some("accept") => Decision::Accept,
            Some("reject") => Decision::Reject,
            Some("edit") => Decision::Edit,
            _ => return error(400, "decision is accept, reject or edit"),
        };
        let mut a = Action::new(&self.reviewer, id, decision, &it.sha);
        match decision {
            Decision::Reject => match s("reason") {
                Some(r) if self.reasons.iter().any(|x| x == r) => a.reason = Some(r.into()),
                _ => return error(400, format!("reason is one of {:?}", self.reasons)),
            },
            Decision::Edit => {
                let Some(text) = s("edited").filter(|t| !t.trim().is_empty()) else {
                    return error(400, "an edit needs the corrected text (edited)");
                };
                let record = match self.index.record(i) {
                    Ok(r) => r,
                    Err(e) => return error(409, e.to_string()),
                };
                match super::editable_text(&record) {
                    None => return error(400, "this record has no response to edit"),
                    Some(old) if old == text => {
                        return error(400, "the text is unchanged: accept it instead (a)")
                    }
                    Some(_) => a.edited = Some(text.into()),
                }
            }
            _ => {}
        }
        self.record(a)
    }

    fn undo(&mut self) -> Resp {
        let Some(last) = self.log.last_of(&self.reviewer) else {
            return error(409, "nothing to undo");
        };
        let mut a = Action::new(
            &self.reviewer,
            &last.id,
            Decision::Undo,
            &last.content_sha256,
        );
        a.undoes = Some(last.action.clone());
        let (id, was) = (last.id.clone(), last.decision);
        match self.record(a) {
            r if r.status_code().0 == 200 => json_resp(200, &json!({"id": id, "undone": was})),
            r => r,
        }
    }

    fn record(&mut self, a: Action) -> Resp {
        let path = self.dir.review();
        if let Err(e) = append(&path, &a).and_then(|_| self.log.refresh(&path)) {
            return error(500, e.to_string());
        }
        let (scope, done) = self.progress();
        json_resp(200, &json!({"ok": true, "scope": scope, "reviewed": done}))
    }
}
