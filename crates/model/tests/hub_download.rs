//! Downloading a model from a hub: a local HTTP server serves a tiny model in the hub's layout
//! (`/{repo}/resolve/main/{file}`, the headers huggingface.co sends), and the download shows
//! progress, resumes after a dropped connection, refuses a corrupted file, and says plainly
//! when the hub cannot be reached; it also honours the hub's conventions: a revision
//! (`repo@v1`), `HF_TOKEN`, and `HF_HUB_OFFLINE`. One test: the hub's address, cache and token
//! are process-wide.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::sync::{Arc, Mutex};

use clawdesk_model::source::{LoadEvent, resolve};
use clawdesk_model::{ModelError, tiny};
use sha2::Digest;

const REPO: &str = "clawdesk/tiny-hub";
const COMMIT: &str = "0123456789abcdef0123456789abcdef01234567";
/// The commit the tag `v1` names (the same files, another snapshot).
const COMMIT_V1: &str = "89abcdef0123456789abcdef0123456789abcdef";
const WEIGHTS: &str = "model.safetensors";

/// What the server does to a file's body.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Fault {
    None,
    /// The first full-body request sends half the bytes, then closes the connection.
    DropOnce,
    /// Every body has one byte flipped (the ETag still names the true SHA-256).
    Corrupt,
}

struct Hub {
    files: HashMap<String, Vec<u8>>,
    fault: Mutex<Fault>,
    /// (file, Range header) of every request.
    log: Mutex<Vec<(String, String)>>,
    /// (revision, Authorization header) of every request.
    asked: Mutex<Vec<(String, String)>>,
}

impl Hub {
    fn etag(&self, name: &str, bytes: &[u8]) -> String {
        let sha = format!("{:x}", sha2::Sha256::digest(bytes));
        if name == WEIGHTS {
            sha // an LFS file: named by its SHA-256
        } else {
            sha[..40].to_owned() // a git file: a 40-hex object id
        }
    }

    fn answer(&self, stream: &mut TcpStream) -> std::io::Result<()> {
        let mut reader = BufReader::new(stream.try_clone()?);
        let mut first = String::new();
        reader.read_line(&mut first)?;
        let mut range = String::new();
        let mut authorization = String::new();
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line)? == 0 || line == "\r\n" {
                break;
            }
            if let Some((k, v)) = line.split_once(':') {
                if k.eq_ignore_ascii_case("range") {
                    range = v.trim().to_owned();
                } else if k.eq_ignore_ascii_case("authorization") {
                    authorization = v.trim().to_owned();
                }
            }
        }
        let path = first.split_whitespace().nth(1).unwrap_or_default();
        let prefix = format!("/{REPO}/resolve/");
        let (revision, name) = path
            .strip_prefix(&prefix)
            .and_then(|rest| rest.split_once('/'))
            .unwrap_or_default();
        let (revision, name) = (revision.to_owned(), name.to_owned());
        self.log.lock().unwrap().push((name.clone(), range.clone()));
        self.asked
            .lock()
            .unwrap()
            .push((revision.clone(), authorization));
        let commit = match revision.as_str() {
            "main" => COMMIT,
            "v1" => COMMIT_V1,
            _ => "",
        };
        let Some(bytes) = self.files.get(&name).filter(|_| !commit.is_empty()) else {
            return stream.write_all(
                b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            );
        };
        let size = bytes.len();
        let from: usize = range
            .strip_prefix("bytes=")
            .and_then(|r| r.split('-').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or(0);
        let to = if range.ends_with("-0") && from == 0 {
            0 // the metadata probe: one byte
        } else {
            size - 1
        };
        let mut body = bytes[from..=to].to_vec();
        let fault = *self.fault.lock().unwrap();
        if name == WEIGHTS && to > 0 && fault == Fault::Corrupt {
            let middle = body.len() / 2;
            body[middle] ^= 0xFF;
        }
        let head = format!(
            "HTTP/1.1 206 Partial Content\r\nETag: \"{}\"\r\nX-Repo-Commit: {commit}\r\n\
             Content-Range: bytes {from}-{to}/{size}\r\nContent-Length: {}\r\n\
             Connection: close\r\n\r\n",
            self.etag(&name, bytes),
            body.len()
        );
        stream.write_all(head.as_bytes())?;
        if name == WEIGHTS && to > 0 && from == 0 && fault == Fault::DropOnce {
            *self.fault.lock().unwrap() = Fault::None;
            stream.write_all(&body[..body.len() / 2])?;
            stream.flush()?;
            return stream.shutdown(std::net::Shutdown::Both);
        }
        stream.write_all(&body)
    }
}

fn serve(hub: Arc<Hub>) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("a port");
    let port = listener.local_addr().expect("address").port();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let hub = hub.clone();
            std::thread::spawn(move || {
                let _ = hub.answer(&mut stream);
            });
        }
    });
    port
}

fn use_cache(dir: &Path) {
    // SAFETY: this test binary holds this one test; nothing else reads the environment.
    unsafe { std::env::set_var("HF_HUB_CACHE", dir) };
}

fn weights_requests(hub: &Hub) -> Vec<String> {
    hub.log
        .lock()
        .unwrap()
        .iter()
        .filter(|(f, r)| f == WEIGHTS && r != "bytes=0-0")
        .map(|(_, r)| r.clone())
        .collect()
}

#[test]
fn a_hub_download_shows_progress_resumes_and_refuses_corruption() {
    let origin = tempfile::tempdir().expect("tempdir");
    tiny::write_tiny_model(origin.path(), &tiny::default_config(), 5).expect("tiny model");
    let files: HashMap<String, Vec<u8>> = std::fs::read_dir(origin.path())
        .expect("origin")
        .map(|e| {
            let e = e.expect("entry");
            (
                e.file_name().to_string_lossy().into_owned(),
                std::fs::read(e.path()).expect("read"),
            )
        })
        .collect();
    assert!(files[WEIGHTS].len() > 10_000, "weights large enough to cut");
    let hub = Arc::new(Hub {
        files,
        fault: Mutex::new(Fault::DropOnce),
        log: Mutex::new(Vec::new()),
        asked: Mutex::new(Vec::new()),
    });
    let port = serve(hub.clone());
    // SAFETY: as in `use_cache`.
    unsafe { std::env::set_var("HF_ENDPOINT", format!("http://127.0.0.1:{port}")) };

    // A connection dropped halfway through the weights: resumed from where it stopped.
    let cache = tempfile::tempdir().expect("tempdir");
    use_cache(cache.path());
    let mut events = Vec::new();
    let dir = resolve(REPO, &mut |e| events.push(e)).expect("downloaded despite the drop");
    for (name, bytes) in &hub.files {
        assert_eq!(&std::fs::read(dir.join(name)).expect(name), bytes, "{name}");
    }
    let requests = weights_requests(&hub);
    let half = hub.files[WEIGHTS].len() / 2;
    assert_eq!(
        requests,
        vec!["bytes=0-".to_owned(), format!("bytes={half}-")],
        "the second request resumes at the byte the first one stopped"
    );
    let progress: Vec<(usize, usize)> = events
        .iter()
        .filter_map(|e| match e {
            LoadEvent::Downloading { file, done, total } if file == WEIGHTS => {
                Some((*done, *total))
            }
            _ => None,
        })
        .collect();
    let total = hub.files[WEIGHTS].len();
    assert!(progress.len() > 2, "progress as it went: {progress:?}");
    assert_eq!(progress.last(), Some(&(total, total)));
    assert!(progress.iter().all(|&(d, t)| d <= t && t == total));

    // A corrupted body: refused, removed, and fetched again (alone) once the hub is right.
    let cache = tempfile::tempdir().expect("tempdir");
    use_cache(cache.path());
    *hub.fault.lock().unwrap() = Fault::Corrupt;
    hub.log.lock().unwrap().clear();
    let err = resolve(REPO, &mut |_| {}).expect_err("a corrupted download is refused");
    let text = err.to_string();
    assert!(matches!(err, ModelError::NotFound { .. }), "{text}");
    assert!(
        text.contains("corrupted") && text.contains(WEIGHTS),
        "{text}"
    );
    let blob = hub.etag(WEIGHTS, &hub.files[WEIGHTS]);
    let leftovers: Vec<_> = walk(cache.path())
        .into_iter()
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n == WEIGHTS || n.to_string_lossy() == blob)
        })
        .collect();
    assert!(leftovers.is_empty(), "the bad file is gone: {leftovers:?}");
    *hub.fault.lock().unwrap() = Fault::None;
    hub.log.lock().unwrap().clear();
    let dir = resolve(REPO, &mut |_| {}).expect("downloaded once the hub is right");
    assert_eq!(
        std::fs::read(dir.join(WEIGHTS)).expect("weights"),
        hub.files[WEIGHTS]
    );
    let fetched: Vec<String> = hub
        .log
        .lock()
        .unwrap()
        .iter()
        .map(|(f, _)| f.clone())
        .filter(|f| hub.files.contains_key(f))
        .collect();
    assert!(
        fetched.iter().all(|f| f == WEIGHTS),
        "only the weights were fetched again: {fetched:?}"
    );

    // A revision, with a token: every request names both, and the snapshot is the tag's.
    let cache = tempfile::tempdir().expect("tempdir");
    use_cache(cache.path());
    // SAFETY: as in `use_cache`.
    unsafe { std::env::set_var("HF_TOKEN", "hf_secret") };
    hub.asked.lock().unwrap().clear();
    let dir = resolve(&format!("{REPO}@v1"), &mut |_| {}).expect("the tag downloads");
    assert!(
        dir.ends_with(COMMIT_V1),
        "the tag's snapshot: {}",
        dir.display()
    );
    assert_eq!(
        std::fs::read(dir.join(WEIGHTS)).expect("weights"),
        hub.files[WEIGHTS]
    );
    let asked = hub.asked.lock().unwrap().clone();
    assert!(
        !asked.is_empty()
            && asked
                .iter()
                .all(|(rev, auth)| rev == "v1" && auth == "Bearer hf_secret"),
        "{asked:?}"
    );
    let unknown = resolve(&format!("{REPO}@v2"), &mut |_| {}).expect_err("no such tag");
    assert!(matches!(unknown, ModelError::NotFound { .. }), "{unknown}");
    let malformed = resolve(&format!("{REPO}@"), &mut |_| {}).expect_err("an empty revision");
    assert!(
        !matches!(malformed, ModelError::NotFound { .. }),
        "{malformed}"
    );

    // Offline: what the cache holds loads without a request; what it lacks is named.
    // SAFETY: as in `use_cache`.
    unsafe { std::env::set_var("HF_HUB_OFFLINE", "1") };
    hub.asked.lock().unwrap().clear();
    let again = resolve(&format!("{REPO}@v1"), &mut |_| {}).expect("cached, offline");
    assert_eq!(again, dir);
    let text = resolve(REPO, &mut |_| {})
        .expect_err("main is not cached here")
        .to_string();
    assert!(text.contains("HF_HUB_OFFLINE"), "{text}");
    assert!(
        hub.asked.lock().unwrap().is_empty(),
        "offline asked the hub"
    );
    // SAFETY: as in `use_cache`.
    unsafe {
        std::env::remove_var("HF_HUB_OFFLINE");
        std::env::remove_var("HF_TOKEN");
    }

    // No hub at all: the message says what to do.
    let cache = tempfile::tempdir().expect("tempdir");
    use_cache(cache.path());
    // SAFETY: as in `use_cache`.
    unsafe { std::env::set_var("HF_ENDPOINT", "http://127.0.0.1:9") };
    let text = resolve(REPO, &mut |_| {}).expect_err("no hub").to_string();
    assert!(
        text.contains("cannot reach http://127.0.0.1:9") && text.contains("practice mode"),
        "{text}"
    );
}

/// Every file under `dir` (symlinks included, not followed).
fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() && !path.is_symlink() {
            out.extend(walk(&path));
        } else {
            out.push(path);
        }
    }
    out
}
