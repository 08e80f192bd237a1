//! A small HTTP server on loopback that answers like the services a node
//! watches (Open WebUI, Ollama, vLLM), including wrong answers and hangs.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How one path answers.
#[derive(Debug, Clone)]
pub enum Answer {
    /// Status code and body.
    Reply(u16, String),
    /// Accepts the request and never answers.
    Hang,
}

pub struct FakeHttp {
    pub port: u16,
    routes: Arc<Mutex<HashMap<String, Answer>>>,
}

impl FakeHttp {
    pub fn start() -> FakeHttp {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind loopback");
        let port = listener.local_addr().expect("local addr").port();
        let routes: Arc<Mutex<HashMap<String, Answer>>> = Arc::default();
        let shared = routes.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let routes = shared.clone();
                std::thread::spawn(move || serve(stream, &routes));
            }
        });
        FakeHttp { port, routes }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn route(&self, path: &str, answer: Answer) {
        self.routes
            .lock()
            .expect("routes")
            .insert(path.to_string(), answer);
    }
}

fn serve(mut stream: TcpStream, routes: &Mutex<HashMap<String, Answer>>) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let mut buf = Vec::new();
    let mut chunk = [0u8; 1024];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") && buf.len() < 16384 {
        match stream.read(&mut chunk) {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
    let request = String::from_utf8_lossy(&buf);
    let path = request.split_whitespace().nth(1).unwrap_or("/").to_string();
    let answer = routes.lock().expect("routes").get(&path).cloned();
    match answer {
        Some(Answer::Hang) => std::thread::sleep(Duration::from_secs(60)),
        Some(Answer::Reply(code, body)) => reply(&mut stream, code, &body),
        None => reply(&mut stream, 404, "not found"),
    }
}

fn reply(stream: &mut TcpStream, code: u16, body: &str) {
    let _ = write!(
        stream,
        "HTTP/1.1 {code} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
}
