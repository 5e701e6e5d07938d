//! A small Chrome DevTools Protocol client over one WebSocket: enough to open a page in
//! headless Chromium, send it real keyboard events (`Input.dispatchKeyEvent`, the same
//! trusted events a keyboard makes), read values out of it and take a screenshot.
#![allow(dead_code)]

use serde_json::{json, Value};
use std::io::Write;
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tungstenite::{Message, WebSocket};

pub struct Browser {
    child: Child,
    ws: WebSocket<TcpStream>,
    next: u64,
    session: String,
    _profile: tempfile::TempDir,
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The Chromium binary, or `None` (the caller skips, loudly) unless
/// `FLYWHEEL_REQUIRE_CHROMIUM` is set, when a missing one fails the test.
pub fn chromium() -> Option<&'static str> {
    let found = ["chromium", "chromium-browser", "google-chrome"]
        .into_iter()
        .find(|c| {
            Command::new(c)
                .arg("--version")
                .output()
                .is_ok_and(|o| o.status.success())
        });
    if found.is_none() {
        assert!(
            std::env::var_os("FLYWHEEL_REQUIRE_CHROMIUM").is_none(),
            "FLYWHEEL_REQUIRE_CHROMIUM is set but no chromium was found"
        );
    }
    found
}

/// A key as `Input.dispatchKeyEvent` names it: (key, code, virtual key code, text).
fn key_fields(key: &str) -> (String, String, u32, Option<String>) {
    match key {
        "Enter" => ("Enter".into(), "Enter".into(), 13, Some("\r".into())),
        "Escape" => ("Escape".into(), "Escape".into(), 27, None),
        "Backspace" => ("Backspace".into(), "Backspace".into(), 8, None),
        "/" => ("/".into(), "Slash".into(), 191, Some("/".into())),
        " " => (" ".into(), "Space".into(), 32, Some(" ".into())),
        k if k.chars().count() == 1 => {
            let c = k.chars().next().unwrap();
            let (code, vk) = if c.is_ascii_alphabetic() {
                (
                    format!("Key{}", c.to_ascii_uppercase()),
                    c.to_ascii_uppercase() as u32,
                )
            } else if c.is_ascii_digit() {
                (format!("Digit{c}"), c as u32)
            } else {
                (String::new(), 0)
            };
            (k.into(), code, vk, Some(k.into()))
        }
        other => panic!("no key {other:?} in this client"),
    }
}

impl Browser {
    /// Starts headless Chromium with a fresh profile and attaches to a blank tab.
    pub fn launch(binary: &str) -> Browser {
        let profile = tempfile::tempdir().unwrap();
        let child = Command::new(binary)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--no-first-run",
                "--remote-debugging-port=0",
                "--window-size=1200,900",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg("about:blank")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromium");
        // Chromium writes its port and browser endpoint here once it listens.
        let port_file = profile.path().join("DevToolsActivePort");
        let t0 = Instant::now();
        let text = loop {
            if let Ok(t) = std::fs::read_to_string(&port_file) {
                if t.lines().count() >= 2 {
                    break t;
                }
            }
            assert!(
                t0.elapsed() < Duration::from_secs(60),
                "chromium did not open its debugging port"
            );
            std::thread::sleep(Duration::from_millis(100));
        };
        let mut l = text.lines();
        let port: u16 = l.next().unwrap().trim().parse().unwrap();
        let path = l.next().unwrap().trim().to_string();
        let stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(60)))
            .unwrap();
        let (ws, _) = tungstenite::client(format!("ws://127.0.0.1:{port}{path}"), stream)
            .expect("devtools websocket");
        let mut b = Browser {
            child,
            ws,
            next: 0,
            session: String::new(),
            _profile: profile,
        };
        let target = b.call("Target.createTarget", json!({"url": "about:blank"}));
        let id = target["targetId"].as_str().unwrap().to_string();
        let s = b.call(
            "Target.attachToTarget",
            json!({"targetId": id, "flatten": true}),
        );
        b.session = s["sessionId"].as_str().unwrap().to_string();
        b.call("Page.enable", json!({}));
        b.call("Runtime.enable", json!({}));
        b
    }

    /// Sends a command (to the attached page once attached) and returns its result.
    pub fn call(&mut self, method: &str, params: Value) -> Value {
        self.next += 1;
        let id = self.next;
        let mut msg = json!({"id": id, "method": method, "params": params});
        if !self.session.is_empty() {
            msg["sessionId"] = self.session.clone().into();
        }
        self.ws.send(Message::text(msg.to_string())).unwrap();
        loop {
            let m = self.ws.read().expect("devtools message");
            let Message::Text(t) = m else { continue };
            let v: Value = serde_json::from_str(t.as_str()).unwrap();
            if v["id"].as_u64() == Some(id) {
                assert!(v["error"].is_null(), "{method}: {}", v["error"]);
                return v["result"].clone();
            }
        }
    }

    /// Navigates and waits until the new document is the one in the tab (a mark left
    /// on the old window is gone), so a later `wait` never reads the old page.
    pub fn goto(&mut self, url: &str) {
        self.eval("window.__old_page = 1");
        self.call("Page.navigate", json!({"url": url}));
        self.wait(
            "window.__old_page === undefined && document.readyState !== 'loading'",
            "the new page",
        );
    }

    /// Evaluates `expr` in the page (promises awaited) and returns its value.
    pub fn eval(&mut self, expr: &str) -> Value {
        let r = self.call(
            "Runtime.evaluate",
            json!({"expression": expr, "returnByValue": true, "awaitPromise": true}),
        );
        assert!(
            r["exceptionDetails"].is_null(),
            "{expr}: {}",
            r["exceptionDetails"]
        );
        r["result"]["value"].clone()
    }

    /// Polls `expr` until it is true.
    pub fn wait(&mut self, expr: &str, what: &str) {
        let t0 = Instant::now();
        loop {
            // Mid-navigation the document may not be there yet: that is "not yet".
            let probe = format!(
                "(() => {{ try {{ return !!({expr}); }} catch (e) {{ return false; }} }})()"
            );
            if self.eval(&probe) == json!(true) {
                return;
            }
            if t0.elapsed() > Duration::from_secs(30) {
                let state = self.eval("document.body ? document.body.dataset.state + ' ' + document.getElementById('status').textContent : 'no body'");
                panic!("timed out waiting for {what} ({expr}); page: {state}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// One key press: keyDown (with its text, so it types where typing goes), keyUp.
    /// `modifiers`: 2 = Ctrl.
    pub fn key_with(&mut self, key: &str, modifiers: u32) {
        let (k, code, vk, text) = key_fields(key);
        // A key that types nothing is a "rawKeyDown" to Chromium (Backspace, Escape…).
        let kind = if text.is_some() && modifiers == 0 {
            "keyDown"
        } else {
            "rawKeyDown"
        };
        let mut down = json!({"type": kind, "key": k, "code": code,
                              "windowsVirtualKeyCode": vk, "modifiers": modifiers});
        if let (Some(t), 0) = (&text, modifiers) {
            down["text"] = t.clone().into();
        }
        self.call("Input.dispatchKeyEvent", down);
        self.call(
            "Input.dispatchKeyEvent",
            json!({"type": "keyUp", "key": k, "code": code, "windowsVirtualKeyCode": vk, "modifiers": modifiers}),
        );
    }

    pub fn key(&mut self, key: &str) {
        self.key_with(key, 0);
    }

    /// Types `text` one key at a time.
    pub fn type_text(&mut self, text: &str) {
        for c in text.chars() {
            self.key(&c.to_string());
        }
    }

    pub fn screenshot(&mut self, path: &Path) {
        let r = self.call("Page.captureScreenshot", json!({"format": "png"}));
        let b64 = r["data"].as_str().unwrap();
        let bytes = decode_base64(b64);
        std::fs::File::create(path)
            .unwrap()
            .write_all(&bytes)
            .unwrap();
    }
}

fn decode_base64(s: &str) -> Vec<u8> {
    let val = |c: u8| -> u32 {
        match c {
            b'A'..=b'Z' => (c - b'A') as u32,
            b'a'..=b'z' => (c - b'a' + 26) as u32,
            b'0'..=b'9' => (c - b'0' + 52) as u32,
            b'+' => 62,
            b'/' => 63,
            _ => 0,
        }
    };
    let clean: Vec<u8> = s.bytes().filter(|&c| c != b'=' && c != b'\n').collect();
    let mut out = Vec::with_capacity(clean.len() * 3 / 4);
    for chunk in clean.chunks(4) {
        let mut n = 0u32;
        for (i, &c) in chunk.iter().enumerate() {
            n |= val(c) << (18 - 6 * i);
        }
        out.push((n >> 16) as u8);
        if chunk.len() > 2 {
            out.push((n >> 8) as u8);
        }
        if chunk.len() > 3 {
            out.push(n as u8);
        }
    }
    out
}
