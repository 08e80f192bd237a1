//! Open WebUI as its users and its administrator meet it, for the serving
//! tests: its HTTP API through `curl` (with the node's CA and name when the
//! way in is the image's nginx), and a real browser
//! (tests/browser/chat.py: headless Chromium over WebDriver).

use std::fs;
use std::path::Path;
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::image::repo;

/// An Open WebUI reached at `base`, with `curl` options that say how (the
/// CA to check the server with, the name to resolve to loopback).
pub struct OpenWebUi {
    pub base: String,
    curl: Vec<String>,
    /// The server's name, which the browser resolves to loopback too.
    name: Option<String>,
}

/// One answer: the status code and the body.
pub struct Answer {
    pub code: u16,
    pub body: String,
}

impl Answer {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {} {}", self.code, self.body))
    }

    /// The body as JSON, after checking the code is 200.
    pub fn ok(self, what: &str) -> Value {
        assert_eq!(self.code, 200, "{what}: {}", self.body);
        self.json()
    }
}

impl OpenWebUi {
    /// Plain HTTP on loopback (the container itself).
    pub fn plain(base: &str) -> OpenWebUi {
        OpenWebUi {
            base: base.trim_end_matches('/').to_string(),
            curl: Vec::new(),
            name: None,
        }
    }

    /// HTTPS to `https://NAME:PORT` with NAME resolved to 127.0.0.1 and
    /// the server's certificate checked against `ca` (the node's).
    pub fn tls(name: &str, port: u16, ca: &Path) -> OpenWebUi {
        OpenWebUi {
            base: format!("https://{name}:{port}"),
            curl: vec![
                "--resolve".into(),
                format!("{name}:{port}:127.0.0.1"),
                "--cacert".into(),
                ca.display().to_string(),
            ],
            name: Some(name.to_string()),
        }
    }

    /// `curl` for one request, with a JSON body if any.
    pub fn request(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<&Value>,
    ) -> Answer {
        self.send(method, path, token, body, None)
    }

    /// [`OpenWebUi::request`], or a multipart upload of `upload`.
    fn send(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<&Value>,
        upload: Option<&Path>,
    ) -> Answer {
        let mut c = Command::new("curl");
        c.args(["-sS", "-m", "600", "-X", method, "-w", "\n%{http_code}"])
            .args(&self.curl)
            .arg(format!("{}{path}", self.base));
        if let Some(t) = token {
            c.args(["-H", &format!("Authorization: Bearer {t}")]);
        }
        if let Some(b) = body {
            c.args(["-H", "Content-Type: application/json", "--data-binary"])
                .arg(b.to_string());
        }
        if let Some(file) = upload {
            c.arg("-F").arg(format!("file=@{}", file.display()));
        }
        let out = c.output().expect("curl");
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
        Answer {
            code: code.trim().parse().unwrap_or(0),
            body: format!("{body}{}", String::from_utf8_lossy(&out.stderr)),
        }
    }

    /// Waits until `path` answers 200, up to `limit`; `Err` with the last
    /// answer.
    pub fn wait_ok(&self, path: &str, limit: Duration) -> Result<(), String> {
        let deadline = Instant::now() + limit;
        loop {
            let a = self.request("GET", path, None, None);
            if a.code == 200 {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "{}{path}: last answer {} {}",
                    self.base, a.code, a.body
                ));
            }
            thread::sleep(Duration::from_secs(1));
        }
    }

    pub fn sign_in(&self, email: &str, password: &str) -> Answer {
        self.request(
            "POST",
            "/api/v1/auths/signin",
            None,
            Some(&json!({"email": email, "password": password})),
        )
    }

    /// Signs in and returns the session token, checking the account is
    /// an administrator.
    pub fn admin_token(&self, email: &str, password: &str) -> String {
        let signed_in = self
            .sign_in(email, password)
            .ok("the administrator's sign-in");
        assert_eq!(signed_in["role"], "admin", "{signed_in}");
        signed_in["token"].as_str().unwrap().to_string()
    }

    /// What the administrator does once per model (Workspace, Models): the
    /// image holds administrators to access control too.
    pub fn register_model(&self, token: &str, id: &str) {
        self.request(
            "POST",
            "/api/v1/models/create",
            Some(token),
            Some(&json!({"id": id, "name": id, "meta": {}, "params": {}})),
        )
        .ok("registering the model");
    }

    /// What the administrator does in Admin Settings, Documents: `model`
    /// (a bundle model the backend at `url` serves) embeds uploads.
    pub fn embed_with(&self, token: &str, model: &str, url: &str) {
        self.request(
            "POST",
            "/api/v1/retrieval/embedding/update",
            Some(token),
            Some(&json!({
                "RAG_EMBEDDING_ENGINE": "openai",
                "RAG_EMBEDDING_MODEL": model,
                "openai_config": {"url": url, "key": ""},
            })),
        )
        .ok("choosing the embedding model");
    }

    /// Uploads `file` and waits until it is searchable; returns its id.
    pub fn upload(&self, token: &str, file: &Path, limit: Duration) -> String {
        let uploaded = self
            .send(
                "POST",
                "/api/v1/files/?process=true",
                Some(token),
                None,
                Some(file),
            )
            .ok("uploading a document");
        let id = uploaded["id"].as_str().unwrap().to_string();
        let deadline = Instant::now() + limit;
        loop {
            let status = self
                .request(
                    "GET",
                    &format!("/api/v1/files/{id}/process/status"),
                    Some(token),
                    None,
                )
                .ok("the upload's processing");
            match status["status"].as_str() {
                Some("completed") => return id,
                Some("failed") => panic!("the upload was not processed: {status}"),
                _ if Instant::now() > deadline => panic!("the upload is still {status}"),
                _ => thread::sleep(Duration::from_secs(1)),
            }
        }
    }

    /// A chat completion (`stream` false: one JSON answer) about `files`.
    pub fn complete(
        &self,
        token: &str,
        model: &str,
        prompt: &str,
        files: &[&str],
        stream: bool,
    ) -> Answer {
        let files: Vec<Value> = files
            .iter()
            .map(|id| json!({"type": "file", "id": id}))
            .collect();
        self.request(
            "POST",
            "/api/chat/completions",
            Some(token),
            Some(&json!({
                "model": model,
                "stream": stream,
                "max_tokens": 16,
                "messages": [{"role": "user", "content": prompt}],
                "files": files,
            })),
        )
    }

    /// Reads chat `id` back through the API and checks it holds `text`.
    pub fn assert_chat_holds(&self, token: &str, id: &str, text: &str) {
        let chat = self
            .request("GET", &format!("/api/v1/chats/{id}"), Some(token), None)
            .ok("reading the chat back");
        assert!(chat.to_string().contains(text), "{chat}");
    }

    /// A user's chat in the browser (tests/browser/chat.py): signs in,
    /// picks `model`, sends `prompt`, waits for the whole answer, saves
    /// `screenshot`; returns the chat's id.
    pub fn browser_chat(
        &self,
        email: &str,
        password: &str,
        model: &str,
        prompt: &str,
        screenshot: &Path,
    ) -> String {
        // Debian's python3, which has python3-selenium (the machine's
        // `python3` may be another).
        let mut c = Command::new("/usr/bin/python3");
        c.arg(repo().join("tests/browser/chat.py"));
        if let Some(name) = &self.name {
            c.args(["--resolve", name]);
        }
        let out = c
            .args([
                "--base",
                &self.base,
                "--email",
                email,
                "--password",
                password,
            ])
            .args([
                "--model",
                model,
                "--prompt",
                prompt,
                "--timeout",
                "300",
                "--screenshot",
            ])
            .arg(screenshot)
            .output()
            .expect("/usr/bin/python3 (with python3-selenium, chromium, chromium-driver)");
        assert!(
            out.status.success(),
            "the browser's chat: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let printed: Value = serde_json::from_slice(&out.stdout).expect("chat.py prints JSON");
        printed["chat_id"].as_str().unwrap().to_string()
    }
}

/// What a site's users and administrator do with Open WebUI serving a
/// bundle's model, each step asserted: sign-in as the administrator and
/// nobody else, the model listed and refused until registered, a streamed
/// chat, a chat in the browser, and an answer about an uploaded document
/// that retrieval found.
pub struct ServingProof<'a> {
    pub webui: &'a OpenWebUi,
    /// The first administrator's sign-in.
    pub email: &'a str,
    pub password: &'a str,
    /// The bundle's model as the inference server serves it.
    pub model: &'a str,
    /// The inference server's OpenAI API as Open WebUI reaches it.
    pub embeddings_url: &'a str,
    /// How long a step may take that loads a model or embeds a document
    /// (minutes in an emulated VM, seconds on a host).
    pub slow: Duration,
    /// The inference server's and Open WebUI's logs, for failure messages.
    pub logs: &'a dyn Fn() -> String,
}

/// What the browser asks, and the chat holds afterwards.
pub const BROWSER_PROMPT: &str = "Say hello.";
/// What the uploaded document says, and retrieval must find.
const SECRET_FACT: &str = "The appliance's launch code is PELICAN-4471; it is kept in the vault.";

impl ServingProof<'_> {
    /// Every step, asserted; returns the id of the browser's chat. `work`
    /// takes the screenshot and the uploaded document.
    pub fn prove(&self, work: &Path) -> String {
        let (webui, model) = (self.webui, self.model);
        let token = webui.admin_token(self.email, self.password);
        let wrong = webui.sign_in(self.email, "wrong");
        assert!(
            (400..500).contains(&wrong.code),
            "a wrong password: {} {}",
            wrong.code,
            wrong.body
        );
        let signup = webui.request(
            "POST",
            "/api/v1/auths/signup",
            None,
            Some(&json!({"name": "x", "email": "first@example.org", "password": "whatever-it-is"})),
        );
        assert!(
            (400..500).contains(&signup.code),
            "sign-up is closed: {} {}",
            signup.code,
            signup.body
        );

        // The bundle's model, through Open WebUI from llama-server.
        let listed = webui
            .request("GET", "/api/models", Some(&token), None)
            .ok("the model list");
        let ids: Vec<&str> = listed["data"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|m| m["id"].as_str())
            .collect();
        assert!(
            ids.contains(&model),
            "models listed: {ids:?}\n{}",
            (self.logs)()
        );

        // The image's settings hold administrators to model access control
        // too (BYPASS_ADMIN_ACCESS_CONTROL=False): a model nobody registered
        // is refused, even to the administrator, until one registers it (in
        // the UI: Workspace, Models) and grants it to whoever may use it.
        let refused = webui.complete(&token, model, "Say hello.", &[], true);
        assert!(
            refused.code == 400 && refused.body.contains("Model not found"),
            "an unregistered model: {} {}",
            refused.code,
            refused.body
        );
        webui.register_model(&token, model);

        // A streamed chat completion: chunks, then the end. The tiny model's
        // words are noise, so the test reads the stream's shape, not its text.
        let streamed = webui.complete(&token, model, "Say hello.", &[], true);
        assert_eq!(streamed.code, 200, "{}", streamed.body);
        assert!(streamed.body.contains("data: [DONE]"), "{}", streamed.body);
        let finished = streamed
            .body
            .lines()
            .filter_map(|l| l.strip_prefix("data: "))
            .filter_map(|d| serde_json::from_str::<serde_json::Value>(d).ok())
            .any(|c| c["choices"][0]["finish_reason"].is_string());
        assert!(finished, "no chunk finished the answer: {}", streamed.body);

        // The same in a browser, as a user does it.
        let chat_id = webui.browser_chat(
            self.email,
            self.password,
            model,
            BROWSER_PROMPT,
            &work.join("chat.png"),
        );
        webui.assert_chat_holds(&token, &chat_id, BROWSER_PROMPT);

        // A document uploaded, embedded by llama-server, and found again:
        // the answer's sources hold its text.
        webui.embed_with(&token, model, self.embeddings_url);
        let doc = work.join("launch-codes.txt");
        fs::write(&doc, format!("{SECRET_FACT}\n")).unwrap();
        let file = webui.upload(&token, &doc, self.slow);
        // Asked up to 5 times: one answer in about ten runs came back with
        // no sources at all although the upload was processed (seen in CI;
        // cause not found, see the closing note of the cluster session).
        // A retrieval that never works still fails here.
        let found = |answer: &Value| {
            answer["sources"][0]["document"]
                .to_string()
                .contains("PELICAN-4471")
        };
        let mut answer = Value::Null;
        for attempt in 0..5 {
            answer = webui
                .complete(&token, model, "What is the launch code?", &[&file], false)
                .ok("a question about the document");
            if found(&answer) {
                break;
            }
            eprintln!("retrieval attempt {attempt}: no sources in {answer}");
            thread::sleep(Duration::from_secs(3));
        }
        assert!(
            found(&answer),
            "retrieval did not find the document: {answer}\n{}",
            (self.logs)()
        );
        assert!(
            answer["choices"][0]["finish_reason"].is_string(),
            "{answer}"
        );
        chat_id
    }
}
