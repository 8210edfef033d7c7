use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use clawdesk_desk::session::LiveSession;
use clawdesk_store::Store;

/// What every command can reach: the handles of the window's back end.
pub struct AppState {
    pub store: Arc<Store>,
    /// The data folder (the store, adapters, thumbnails).
    pub data_dir: PathBuf,
    /// The folder the settings file lives in (XDG config).
    pub config_dir: PathBuf,
    /// The live session, while one runs (or has ended and not been replaced).
    pub session: Mutex<Option<LiveSession>>,
    /// Held-out gym tasks each published adapter is scored on.
    pub gym_tasks: usize,
}

impl AppState {
    pub fn new(store: Arc<Store>, config_dir: PathBuf) -> Self {
        let data_dir = store.root().to_path_buf();
        AppState {
            store,
            data_dir,
            config_dir,
            session: Mutex::new(None),
            gym_tasks: std::env::var("CLAWDESK_GYM_TASKS")
                .ok()
                .and_then(|n| n.parse().ok())
                .unwrap_or(24),
        }
    }
}
